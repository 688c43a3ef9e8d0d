"""Measured dense local Hessians from the core's operator, and a relative-error helper."""

from __future__ import annotations

import torch
from torch import nn

import hessiankit as hk


def measured(
    net: nn.Module,
    x: torch.Tensor,
    block: int,
    wrt: str,
    *,
    bn: str = "eval",
    kind: str = "gauss-newton",
    y: torch.Tensor | None = None,
    eta: float = 1.0,
) -> torch.Tensor:
    """Dense float64 local Hessian of ``block`` from :class:`hessiankit.LocalHessian`."""
    cap = hk.capture(net, x, y, bn=bn, dtype=torch.float64)
    return hk.LocalHessian(cap, block, wrt=wrt, kind=kind, eta=eta).to_dense()  # type: ignore[arg-type]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b||_F / ||b||_F``."""
    return float(torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b))
