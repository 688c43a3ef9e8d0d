"""Ritz selection: the wanted Ritz pairs at each end of the spectrum, their error bounds
(residual, or Parlett's refined ``residual^2 / gap``) and the convergence test."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from hessiankit.solvers.krylov_basis import KrylovBasis
from hessiankit.solvers.results import Eigenpairs

__all__ = ["Selected", "ritz_pairs", "select_ritz"]

Selected = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def select_ritz(
    theta: np.ndarray,
    S: np.ndarray,
    res: np.ndarray,
    top: int,
    bottom: int,
    tol: float,
    precision: float,
    null_thr: float,
    range_start: bool,
) -> tuple[Selected, Selected, bool]:
    """Pick the wanted Ritz pairs at each end, bound their errors, test convergence."""
    s = theta.shape[0]
    # Gap to the nearest other eigenvalue, made conservative: a neighbour's eigenvalue is only
    # known to lie within its own residual. With no neighbour the gap is unknown (zero).
    gaps = np.zeros(s)
    if s > 1:
        d = np.abs(theta[:, None] - theta[None, :]) - res[None, :]
        np.fill_diagonal(d, np.inf)
        gaps = np.maximum(d.min(axis=1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        refined = np.where(gaps > res, res**2 / np.where(gaps > 0, gaps, 1.0), res)
    bounds = np.maximum(np.minimum(res, refined), precision)
    conv = bounds <= np.maximum(tol * np.abs(theta), precision)
    top_idx = np.arange(s - 1, max(s - 1 - top, -1), -1)
    candidates = np.arange(s)
    if range_start:
        candidates = candidates[theta > null_thr]
    bot_idx = candidates[:bottom]

    def pack(idx: np.ndarray) -> Selected:
        return theta[idx], res[idx], bounds[idx], conv[idx], S[:, idx]

    done = (
        len(top_idx) == top
        and len(bot_idx) == bottom
        and bool(conv[top_idx].all())
        and bool(conv[bot_idx].all())
    )
    return pack(top_idx), pack(bot_idx), done


def ritz_pairs(
    which: Literal["top", "bottom"], sel: Selected | None, basis: KrylovBasis | None
) -> Eigenpairs:
    if sel is None:
        return Eigenpairs.empty(which)
    values, res, bounds, conv, coeffs = sel
    vectors = None
    if basis is not None and len(values):
        vectors = basis.combine(torch.as_tensor(coeffs, dtype=torch.float64, device=basis.Q.device))
    return Eigenpairs.build(which, values, res, bounds, conv, vectors)
