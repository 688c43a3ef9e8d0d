r"""Skip connections ``F(W, z) = z + phi(W, z)`` (paper digest 4.5).

Per sample ``J_z = I + A`` with ``A = d phi / dz`` (the residual branch's Jacobian), so the input
local Hessian is ``(I + A)^T (I + A)`` exactly; the weight local Hessian is the branch's own (the
identity path does not touch W). The plain block with the same branch has ``A^T A``.

The paper's assumption [M]: A behaves like a random matrix with i.i.d. zero-mean entries of
small variance. For square ``A = s X`` with X Ginibre (entry variance ``1/n``), the limit support
``[lambda_-, lambda_+]`` of ``(I + A)^T (I + A)`` is the set of values of

.. math::

    w(u) = \frac{u (1 - s^2) - 1}{u^2 (u - 1)}

at the real roots of ``2 (1 - s^2) u^2 - (4 - s^2) u + 2 = 0`` (derived in the digest; checked by
simulation there and in the tests). It gives a **width-independent** kappa only for ``s < 1``
(``lambda_- = 0`` at ``s = 1``), while the plain block's ``A^T A`` has support ``[0, 4 s^2]``
(unbounded kappa for every s). Expected failure: a He-initialised 2-layer ReLU branch has
``s^2 ~ 2`` (claim 8).

Example:
    >>> from hessiankit.analytic.residual import residual_support
    >>> [round(v, 3) for v in residual_support(0.5)]
    [0.136, 3.098]
"""

from __future__ import annotations

import math

import torch

from hessiankit.analytic._util import as64, check_matrix
from hessiankit.errors import OperatorError

__all__ = [
    "branch_scale",
    "plain_input_hessian",
    "plain_support",
    "residual_condition_limit",
    "residual_input_hessian",
    "residual_support",
]


def residual_input_hessian(branch_jacobian: torch.Tensor) -> torch.Tensor:
    """``(I + A)^T (I + A)`` for one sample's branch Jacobian ``A`` (square)."""
    check_matrix("branch_jacobian", branch_jacobian)
    A = as64(branch_jacobian)
    assert A is not None
    if A.shape[0] != A.shape[1]:
        raise OperatorError(
            f"a skip connection needs a square branch Jacobian, got {tuple(A.shape)}"
        )
    M = torch.eye(A.shape[0], dtype=A.dtype) + A
    return M.T @ M


def plain_input_hessian(branch_jacobian: torch.Tensor) -> torch.Tensor:
    """``A^T A``: the same branch without the skip connection."""
    check_matrix("branch_jacobian", branch_jacobian)
    A = as64(branch_jacobian)
    assert A is not None
    return A.T @ A


def residual_support(s: float) -> tuple[float, float]:
    """Limit support ``(lambda_-, lambda_+)`` of ``(I + sX)^T (I + sX)``, X square Ginibre.

    ``s = 0`` gives ``(1, 1)``; ``s >= 1`` gives ``lambda_- = 0``.
    """
    if not (s >= 0 and math.isfinite(s)):
        raise OperatorError(f"branch scale s must be finite and >= 0, got {s}")
    if s == 0:
        return 1.0, 1.0
    a, b, c = 2 * (1 - s * s), -(4 - s * s), 2.0
    if abs(a) < 1e-14:
        roots = [-c / b]
    else:
        disc = b * b - 4 * a * c  # = s^2 (s^2 + 8) > 0
        r = math.sqrt(disc)
        roots = [(-b - r) / (2 * a), (-b + r) / (2 * a)]

    def w(u: float) -> float:
        return (u * (1 - s * s) - 1) / (u * u * (u - 1))

    vals = [w(u) for u in roots]
    hi = max(vals)
    lo = min(vals) if len(vals) == 2 and s < 1 else 0.0
    return max(lo, 0.0), hi


def plain_support(s: float) -> tuple[float, float]:
    """Limit support ``(0, 4 s^2)`` of ``A^T A`` for square ``A = s X`` (Marchenko-Pastur, ratio 1)."""
    return 0.0, 4.0 * s * s


def residual_condition_limit(s: float) -> float:
    """``lambda_+ / lambda_-`` of :func:`residual_support` (``inf`` for ``s >= 1``)."""
    lo, hi = residual_support(s)
    return math.inf if lo <= 0 else hi / lo


def branch_scale(branch_jacobian: torch.Tensor) -> float:
    """``s = ||A||_F / sqrt(n)``: the entry scale the limit law assumes (``A = s X``)."""
    A = as64(branch_jacobian)
    assert A is not None
    return float(torch.linalg.matrix_norm(A) / math.sqrt(A.shape[0]))
