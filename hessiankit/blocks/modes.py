"""Batch-norm mode and the functional state every analysis runs on.

Analysis never changes the model. Two mechanisms make that so:

* every forward pass hessiankit runs goes through :func:`torch.func.functional_call` with a
  :class:`FunctionalState`: the parameters (cast to the analysis dtype) and *clones* of the
  buffers, so batch norm in ``train`` mode updates the clones, never the model's
  ``running_mean``, ``running_var`` or ``num_batches_tracked``;
* :func:`analysis_mode` sets the ``training`` flags for the duration of a forward pass (batch
  norm as asked, every other module in eval mode so dropout is off and results are
  deterministic) and restores the flags afterwards.

Batch norm modes:

``"eval"``
    running statistics; samples do not couple; the local Hessian w.r.t. the input is
    block-diagonal over samples.
``"train"``
    batch statistics, as during training; samples couple through the mean and variance, so the
    input local Hessian is a full ``(m n) x (m n)`` matrix (paper digest, section 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from hessiankit.errors import OperatorError

__all__ = ["BNMode", "FunctionalState", "analysis_mode", "check_bn_mode", "is_batchnorm"]

BNMode = Literal["eval", "train"]

_BN_TYPES = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


def is_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` normalises with batch statistics in train mode."""
    return isinstance(module, _BN_TYPES)


def check_bn_mode(bn: str) -> BNMode:
    """Validate a batch-norm mode string."""
    if bn not in ("eval", "train"):
        raise OperatorError(f"unknown batch-norm mode {bn!r}; use 'eval' or 'train'")
    return bn  # type: ignore[return-value]


@contextlib.contextmanager
def analysis_mode(modules: Iterable[nn.Module], bn: BNMode) -> Iterator[None]:
    """Set batch norm to ``bn`` and everything else to eval mode; restore the flags on exit.

    Args:
        modules: the modules whose flags to set (their submodules included).
        bn: ``"train"`` (batch statistics) or ``"eval"`` (running statistics).
    """
    saved: list[tuple[nn.Module, bool]] = []
    seen: set[int] = set()
    for root in modules:
        for module in root.modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            saved.append((module, module.training))
            module.training = bn == "train" if is_batchnorm(module) else False
    try:
        yield
    finally:
        for module, flag in saved:
            module.training = flag


@dataclass(frozen=True)
class FunctionalState:
    """Parameter and buffer tensors that stand in for a model's own during analysis.

    Parameters are detached (and cast to ``dtype`` when it differs); floating buffers are
    cloned so that batch norm in train mode cannot touch the model's running statistics.
    Non-floating buffers (``num_batches_tracked``) are cloned as they are.
    """

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    dtype: torch.dtype

    @classmethod
    def of(cls, model: nn.Module, dtype: torch.dtype | None = None) -> FunctionalState:
        """Snapshot ``model``'s parameters and buffers, optionally cast to ``dtype``."""
        if dtype is None:
            dtype = _model_dtype(model)
        params = {name: p.detach().to(dtype) for name, p in model.named_parameters()}
        buffers = {
            name: (b.detach().to(dtype) if b.is_floating_point() else b.detach()).clone()
            for name, b in model.named_buffers()
        }
        return cls(params=params, buffers=buffers, dtype=dtype)

    @classmethod
    def live(cls, model: nn.Module) -> FunctionalState:
        """``model``'s own parameters and buffers, not copies (for a trainer that updates them).

        Passes through :func:`~hessiankit.blocks.capture.run_block` still clone the buffers.
        """
        return cls(
            params=dict(model.named_parameters()),
            buffers=dict(model.named_buffers()),
            dtype=_model_dtype(model),
        )

    def fresh_buffers(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Clones of the named buffers, so one forward's running-stat update is thrown away."""
        return {name: self.buffers[name].clone() for name in names if name in self.buffers}


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.dtype
    return torch.get_default_dtype()
