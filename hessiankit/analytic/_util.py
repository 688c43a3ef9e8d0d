"""Small shared helpers of the closed forms (checks and float64 casts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch

from hessiankit.errors import OperatorError


def block_diag(blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`torch.block_diag` with a type (torch's is untyped)."""
    return cast(torch.Tensor, torch.block_diag(*blocks))  # type: ignore[no-untyped-call]


def as64(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` detached, in float64 (``None`` stays ``None``)."""
    return None if t is None else t.detach().to(torch.float64)


def check_matrix(name: str, t: torch.Tensor, ndim: int = 2) -> None:
    if not torch.is_tensor(t) or t.ndim != ndim:
        got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise OperatorError(f"{name} must be a {ndim}-D tensor, got {got}; reshape it")


def with_ones(z: torch.Tensor) -> torch.Tensor:
    """``[z, 1]``: the input a bias sees (digest 4.1: append a row of ones to Z)."""
    return torch.cat([z, torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)], dim=1)


def bias_layout(S_hat: torch.Tensor, n_out: int) -> torch.Tensor:
    """``I_{n_out} kron S_hat`` reordered to the core's layout ``[vec_row(W), b]``.

    ``S_hat`` is the ``(n+1) x (n+1)`` second moment of ``[z, 1]``; the core flattens the weight
    row-major and puts the bias after it, so the weight-weight block is ``I kron S``, the
    weight-bias block ``I kron s`` and the bias-bias block ``S_hat[n, n] I``.
    """
    n = S_hat.shape[0] - 1
    eye = torch.eye(n_out, dtype=S_hat.dtype, device=S_hat.device)
    ww = torch.kron(eye, S_hat[:n, :n])
    wb = torch.kron(eye, S_hat[:n, n:])
    bb = S_hat[n, n] * eye
    return torch.cat([torch.cat([ww, wb], 1), torch.cat([wb.T, bb], 1)], 0)
