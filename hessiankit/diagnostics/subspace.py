r"""How much two subspaces share: principal angles and the overlap fraction.

For orthonormal bases ``U`` (n x p) and ``V`` (n x q) the cosines of the principal angles are the
singular values of ``U^T V``. The **overlap** of ``span V`` with ``span U`` is

.. math::

    \operatorname{overlap}(V \to U) = \|U^T V\|_F^2 / q = \tfrac1q \sum_j \cos^2\theta_j ,

the mean squared norm of V's basis vectors after projection onto ``span U``: 1 when
``span V`` lies inside ``span U``, 0 when they are orthogonal, ``q/n`` on average for random
subspaces (the chance level reported beside it).

Example:
    >>> from hessiankit.diagnostics.subspace import orthonormal_basis, overlap
    >>> e = torch.eye(3, dtype=torch.float64)
    >>> round(overlap(e[:, :2], orthonormal_basis(e[:, [0]] + e[:, [2]])), 6)
    0.5
"""

from __future__ import annotations

import numpy as np
import torch

from hessiankit.errors import OperatorError

__all__ = ["orthonormal_basis", "overlap", "principal_cosines"]


def orthonormal_basis(A: torch.Tensor, *, rtol: float = 1e-10) -> torch.Tensor:
    """An orthonormal basis of the column span of ``A`` (float64), by an SVD.

    Columns whose singular value is at most ``rtol * sigma_max`` are dropped, so a rank-
    deficient ``A`` (C class means that sum to a multiple of the gradient) gives its true rank.
    """
    if A.ndim != 2:
        raise OperatorError(f"expected a matrix, got shape {tuple(A.shape)}")
    U, s, _ = torch.linalg.svd(A.to(torch.float64), full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        empty: torch.Tensor = U[:, :0]
        return empty
    basis: torch.Tensor = U[:, s > rtol * s[0]]
    return basis


def principal_cosines(U: torch.Tensor, V: torch.Tensor) -> np.ndarray:
    """Cosines of the principal angles between ``span U`` and ``span V`` (orthonormal columns),
    descending, ``min(p, q)`` of them."""
    if U.shape[0] != V.shape[0]:
        raise OperatorError(f"bases of different spaces: {U.shape[0]} and {V.shape[0]} rows")
    if U.shape[1] == 0 or V.shape[1] == 0:
        return np.zeros(0)
    M = U.to(torch.float64).T @ V.to(torch.float64).to(U.device)
    s = torch.linalg.svdvals(M).clamp(max=1.0)
    return np.asarray(s.cpu().numpy(), dtype=np.float64)


def overlap(U: torch.Tensor, V: torch.Tensor) -> float:
    """``||U^T V||_F^2 / q``: the share of ``span V`` (q orthonormal columns) inside ``span U``."""
    if V.shape[1] == 0:
        return float("nan")
    c = principal_cosines(U, V)
    return float(np.sum(c**2) / V.shape[1])
