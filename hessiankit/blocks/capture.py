"""One forward and one backward pass that record every block's ``z_{b-1}``, ``z_b`` and ``g_b``.

Conventions (paper digest sections 1-3; fixed here and used by every operator):

* the training loss is a **mean over the batch** of m samples, ``L = (1/m) sum_i ell(z_B^i, y^i)``;
  a custom ``loss_fn`` must reduce the same way;
* ``g_b = m * dL/dz_b`` is the **per-sample** back-propagated gradient: for a network whose
  samples do not couple, row i is the gradient of sample i's own loss w.r.t. its ``z_b``. With
  it, the back-matching target ``z_b - eta * g_b`` does not depend on the batch size, and one
  unit gradient step on every block's back-matching loss is exactly one SGD step of rate eta
  (Proposition 1).

The chain is run block by block through each block's own function (never the model's
``forward``), on a :class:`~hessiankit.blocks.modes.FunctionalState`, so the model's buffers and
parameters are never touched. Only the activations at block boundaries and the gradients w.r.t.
them are kept; the autograd graph is freed.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from hessiankit._precision import full_precision
from hessiankit.blocks.modes import BNMode, FunctionalState, analysis_mode, check_bn_mode
from hessiankit.blocks.split import Block, BlockSplit, split_blocks
from hessiankit.errors import DataError, NumericalError

__all__ = ["BlockCapture", "LossFn", "capture", "resolve_loss", "run_block"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target, reduction="mean")


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # (1/m) sum_i 1/2 ||out_i - y_i||^2: a mean over samples, a sum over output coordinates.
    return 0.5 * (output - target).pow(2).sum() / output.shape[0]


_LOSSES: dict[str, LossFn] = {"cross-entropy": _cross_entropy, "mse": _mse}


def resolve_loss(loss_fn: str | LossFn) -> LossFn:
    """A loss callable from a name (``"cross-entropy"``, ``"mse"``) or the callable itself."""
    if callable(loss_fn):
        return loss_fn
    try:
        return _LOSSES[loss_fn]
    except KeyError:
        raise DataError(
            f"unknown loss {loss_fn!r}; use one of {sorted(_LOSSES)} or pass a callable"
        ) from None


def run_block(
    block: Block,
    state: FunctionalState,
    bn: BNMode | None,
    z: torch.Tensor,
    params: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``F_b(W_b, z)``: the one way every part of hessiankit evaluates a block.

    Runs on ``state``'s tensors, with clones of the block's buffers so that batch norm in train
    mode never moves the running statistics.

    Args:
        block: the block.
        state: its parameters and buffers (:class:`FunctionalState`).
        bn: batch-norm mode of the pass, every other module in eval mode
            (:func:`~hessiankit.blocks.modes.analysis_mode`); ``None`` keeps the modules'
            own training flags (the trainer's passes, as its forward ran).
        z: the block input ``z_{b-1}``.
        params: tensors that replace some of ``W_b`` (by the names in ``block.param_names``;
            a tied tensor's value replaces it under each of its names).
    """
    values = {n: state.params[n] for n in block.param_names}
    if params:
        values.update(params)
    values.update(state.fresh_buffers(block.buffer_names))
    # a tied tensor, keyed by its first name, goes to every name the function reads it under
    tensors = {local: values[n] for local, n in block.uses if n in values} if block.uses else values
    if bn is None:
        out: torch.Tensor = functional_call(block.function, tensors, (z,))
        return out
    with analysis_mode([block.function], bn):
        out = functional_call(block.function, tensors, (z,))
    return out


@dataclass(frozen=True, eq=False)
class BlockCapture:
    """Activations and back-propagated gradients of every block on one batch.

    Attributes:
        split: the block chain.
        state: parameters and buffers the analysis runs on (cast to ``dtype``).
        bn: batch-norm mode used for every forward pass.
        activations: ``(z_0, z_1, ..., z_B)``, detached; ``z_0`` is the network input.
        grad_outputs: ``(dL/dz_1, ..., dL/dz_B)`` for the mean loss, or ``None`` without labels.
        targets: the labels ``y`` (``None`` when not given).
        loss_fn: the mean-reduced loss (``None`` without labels).
        loss: the loss value on this batch (``None`` without labels).
    """

    split: BlockSplit
    state: FunctionalState
    bn: BNMode
    activations: tuple[torch.Tensor, ...]
    grad_outputs: tuple[torch.Tensor, ...] | None
    targets: torch.Tensor | None
    loss_fn: LossFn | None
    loss: float | None

    @property
    def batch_size(self) -> int:
        """Number of samples m."""
        return int(self.activations[0].shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.state.dtype

    def block_input(self, block: Block) -> torch.Tensor:
        """``z_{b-1}`` (the network input for the whole-model block)."""
        return self.activations[max(block.index - 1, 0)]

    def block_output(self, block: Block) -> torch.Tensor:
        """``z_b`` (the network output for the whole-model block)."""
        return self.activations[block.index if block.index > 0 else len(self.activations) - 1]

    def per_sample_grad(self, block: Block) -> torch.Tensor:
        """``g_b = m * dL/dz_b``, the per-sample back-propagated gradient.

        Raises:
            DataError: the capture was made without labels.
        """
        if self.grad_outputs is None:
            if self.targets is not None:
                raise DataError(
                    "this capture was made with gradients=False; capture again with "
                    "gradients=True to get the back-propagated gradient"
                )
            raise DataError(
                "this quantity needs labels (the back-propagated gradient); pass y / use data "
                "with labels, or use kind='gauss-newton'"
            )
        k = block.index if block.index > 0 else len(self.grad_outputs)
        return self.grad_outputs[k - 1] * self.batch_size


@full_precision()  # recorded activations in float32 proper, not TF32 (see hessiankit._precision)
def capture(
    model: nn.Module | BlockSplit,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    loss_fn: str | LossFn = "cross-entropy",
    bn: BNMode = "eval",
    dtype: torch.dtype | None = None,
    gradients: bool = True,
) -> BlockCapture:
    """Run the block chain on one batch and record ``z_b`` and ``dL/dz_b`` for every block.

    One forward pass (block by block) and, when labels are given, one backward pass w.r.t. the
    activations only (no parameter gradients are formed).

    Args:
        model: the network, or its :class:`BlockSplit`.
        x: input batch, samples along the first dimension.
        y: labels for ``loss_fn``; optional (the Gauss-Newton local Hessian needs none).
        loss_fn: ``"cross-entropy"``, ``"mse"`` or a callable reducing by the batch mean.
        bn: ``"eval"`` (running statistics) or ``"train"`` (batch statistics).
        dtype: analysis dtype (default: the model's); parameters and data are cast to it.
        gradients: record ``dL/dz_b`` (with labels). ``False`` skips that backward pass and
            its memory (as much again as the activations): enough for the loss Hessian
            (:class:`~hessiankit.operators.loss.LossHessian`) and the Gauss-Newton local
            Hessians, which never read it.

    Raises:
        DataError: the batch does not fit the model.
        NumericalError: NaN or Inf in the weights, the activations or the loss.
    """
    split = model if isinstance(model, BlockSplit) else split_blocks(model)
    bn = check_bn_mode(bn)
    state = FunctionalState.of(split.model, dtype)
    _check_finite_weights(state)
    device = next((p.device for p in state.params.values()), x.device)
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise DataError("inputs x must be a floating-point tensor; convert the data to float")
    x = x.detach().to(device=device, dtype=state.dtype)
    if x.ndim == 0 or x.shape[0] < 1:
        raise DataError("inputs x need a batch dimension with at least one sample")
    if bn == "train" and x.shape[0] < 2 and any(b.has_bn for b in split):
        raise DataError("batch norm in train mode needs at least 2 samples; use a larger batch")
    with_labels = y is not None
    loss = resolve_loss(loss_fn) if with_labels else None
    backward = with_labels and gradients
    zs = [x.requires_grad_(backward)]
    with torch.set_grad_enabled(backward):
        for block in split:
            fx_noise = io.StringIO()  # torch.fx prints a traceback before re-raising
            try:
                with contextlib.redirect_stderr(fx_noise):
                    z = run_block(block, state, bn, zs[-1])
            except (RuntimeError, ValueError, IndexError) as exc:
                raise DataError(
                    f"data of shape {tuple(x.shape)} does not fit block {block.index} "
                    f"({block.name}): {str(exc).splitlines()[0]}; check input_shape= / the data"
                ) from None
            sys.stderr.write(fx_noise.getvalue())  # warnings of a pass that worked
            if not torch.is_tensor(z) or not z.is_floating_point():
                raise DataError(
                    f"block {block.index} ({block.name}) does not return a float tensor"
                )
            if not bool(torch.isfinite(z).all()):
                raise NumericalError(
                    f"block {block.index} ({block.name}) produces NaN/Inf activations; check the "
                    "weights and the input scale"
                )
            zs.append(z)
    grads = None
    value = None
    if with_labels:
        assert loss is not None and y is not None  # for type checkers; checked above
        y = y.to(device)
        try:
            out = loss(zs[-1], y)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise DataError(
                f"labels of shape {tuple(y.shape)} do not fit the loss: {str(exc).splitlines()[0]}"
            ) from None
        if out.ndim != 0:
            raise DataError("loss_fn must return a scalar (the mean over the batch)")
        if not bool(torch.isfinite(out)):
            raise NumericalError("the loss is NaN/Inf on this batch; check labels and weights")
        if backward:
            needs = [z for z in zs[1:] if z.requires_grad]
            if len(needs) != len(zs) - 1:
                raise DataError(
                    "a block output does not depend on the input; the model is not differentiable"
                )
            grads = tuple(g.detach() for g in torch.autograd.grad(out, needs))
        value = float(out.detach())
    acts = tuple(z.detach() for z in zs)
    return BlockCapture(
        split=split,
        state=state,
        bn=bn,
        activations=acts,
        grad_outputs=grads,
        targets=None if y is None else y.detach(),
        loss_fn=loss,
        loss=value,
    )


def _check_finite_weights(state: FunctionalState) -> None:
    for name, p in state.params.items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise NumericalError(f"parameter {name!r} holds NaN/Inf; the model file is damaged")
