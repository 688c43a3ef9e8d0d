"""Batch norm with running statistics as the per-channel affine map it is, for kept graphs.

With running statistics, ``batch_norm(x) = x s + t`` per channel, ``s = w / sqrt(var + eps)``
and ``t = b - mean s``: the same function of ``x``, ``w`` and ``b``, with the same first and
second derivatives. PyTorch's batch-norm double backward does not know the statistics are
constants and spends elementwise passes over the activations as for batch statistics: in a
Hessian-vector product through a conv net with BN in eval mode that was 37% of the product's
time (the issue-16 CNN, batch 128, one CPU thread). Written as ``mul`` and ``add`` it costs a
few multiplies.

Example:
    >>> bn = torch.nn.BatchNorm2d(3).eval()
    >>> _ = bn.running_var.fill_(2.0)
    >>> x = torch.randn(4, 3, 5, 5)
    >>> with EvalBatchNormAsAffine():
    ...     y = bn(x)
    >>> bool(torch.allclose(y, bn(x), atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["EvalBatchNormAsAffine", "eval_bn_as_affine"]

_BATCH_NORM = torch.nn.functional.batch_norm


class EvalBatchNormAsAffine(TorchFunctionMode):
    """Within it, ``F.batch_norm(..., training=False)`` with running statistics runs as
    ``x * s + t`` per channel; everything else is unchanged."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is _BATCH_NORM:
            affine = _affine(*args, **kwargs)
            if affine is not None:
                return affine
        return func(*args, **kwargs)


def _affine(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor | None:
    if training or running_mean is None or running_var is None or x.dim() < 2:
        return None
    shape = (1, -1) + (1,) * (x.dim() - 2)
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = weight * scale
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return x * scale.reshape(shape) + shift.reshape(shape)


def eval_bn_as_affine(f: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``f`` run inside :class:`EvalBatchNormAsAffine`."""

    def g(*args: torch.Tensor) -> torch.Tensor:
        with EvalBatchNormAsAffine():
            return f(*args)

    return g
