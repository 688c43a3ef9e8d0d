r"""Orthogonal versus Gaussian initialisation: the input local Hessian ``W^T W`` (digest 4.4).

For a linear block the per-sample input local Hessian is ``W^T W`` (``W`` is ``n_out x n_in``),
see :mod:`~hessiankit.analytic.linear`.

* **Orthogonal** W with ``n_out >= n_in`` (orthonormal columns): ``W^T W = I``, every eigenvalue
  1, kappa = 1 (claim 5). Exact for any width.
* **Gaussian** i.i.d. ``N(0, s^2/n_out)`` entries, aspect ratio ``lambda = n_in / n_out``: as the
  width grows, the eigenvalues of ``W^T W`` follow the Marchenko-Pastur law with support
  ``[s^2 (1 - sqrt(lambda))^2, s^2 (1 + sqrt(lambda))^2]`` (plus a mass ``1 - 1/lambda`` at 0 when
  ``lambda > 1``), so kappa on the range tends to ``((1 + sqrt(lambda)) / (1 - sqrt(lambda)))^2``
  (claim 6). **Square** layers (``lambda = 1``): the lower edge is 0; the smallest squared
  singular value is of order ``1/n^2`` (Edelman 1988: ``n^2 s_min^2 -> X`` with
  ``P(X <= x) = 1 - exp(-x/2 - sqrt(x))``), so kappa ~ ``4 n^2 / X`` grows like ``n^2`` and is
  heavy-tailed: compare medians and quantiles, not means.

Assumptions: i.i.d. Gaussian entries, large width (the law is a limit; at width 64 the edges
are blurred by ``O(n^{-2/3})`` fluctuations), a linear block (a nonlinearity multiplies in the
factor of :mod:`~hessiankit.analytic.nonlinear`).

Example:
    >>> from hessiankit.analytic.orthogonal import marchenko_pastur_condition
    >>> round(marchenko_pastur_condition(0.25), 6), round(marchenko_pastur_condition(0.5), 2)
    (9.0, 33.97)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hessiankit.analytic._util import as64, check_matrix
from hessiankit.errors import OperatorError

__all__ = [
    "marchenko_pastur_condition",
    "marchenko_pastur_density",
    "marchenko_pastur_support",
    "orthogonality_defect",
    "square_gaussian_condition_quantile",
]


def _check_ratio(ratio: float) -> float:
    if not ratio > 0 or not math.isfinite(ratio):
        raise OperatorError(f"aspect ratio n_in/n_out must be positive and finite, got {ratio}")
    return float(ratio)


def marchenko_pastur_support(ratio: float, scale: float = 1.0) -> tuple[float, float]:
    """``(s^2 (1 - sqrt(lambda))^2, s^2 (1 + sqrt(lambda))^2)``: the limit support of the nonzero
    eigenvalues of ``W^T W``, ``lambda = n_in / n_out``, entry variance ``s^2 / n_out``."""
    r = math.sqrt(_check_ratio(ratio))
    return scale**2 * (1 - r) ** 2, scale**2 * (1 + r) ** 2


def marchenko_pastur_density(x: np.ndarray, ratio: float, scale: float = 1.0) -> np.ndarray:
    """Limit density of the **nonzero** eigenvalues of ``W^T W`` (integrates to 1).

    ``lambda <= 1``: ``sqrt((b - x)(x - a)) / (2 pi s^2 lambda x)``; ``lambda > 1``: the nonzero
    eigenvalues are those of ``W W^T``, the same law with ratio ``1/lambda`` scaled by ``lambda``.
    """
    lam = _check_ratio(ratio)
    x = np.asarray(x, dtype=np.float64)
    a, b = marchenko_pastur_support(lam, scale)
    out = np.zeros_like(x)
    inside = (x > a) & (x < b)
    xi = x[inside]
    if lam <= 1:
        out[inside] = np.sqrt((b - xi) * (xi - a)) / (2 * np.pi * scale**2 * lam * xi)
    else:  # law of W W^T: ratio 1/lam, variance lam s^2 (entries s^2/n_out = lam s^2/n_in)
        out[inside] = np.sqrt((b - xi) * (xi - a)) / (2 * np.pi * scale**2 * xi)
    return out


def marchenko_pastur_condition(ratio: float) -> float:
    """Limit condition number on the range, ``((1 + sqrt(lambda)) / (1 - sqrt(lambda)))^2``;
    ``inf`` for square layers (``lambda = 1``)."""
    r = math.sqrt(_check_ratio(ratio))
    if r == 1:
        return math.inf
    return ((1 + r) / (1 - r)) ** 2


def square_gaussian_condition_quantile(n: int, q: float) -> float:
    """Quantile ``q`` of kappa(W^T W) for a square ``n x n`` Gaussian W, from Edelman's law:
    ``kappa ~ 4 n^2 / X``, ``P(X <= x) = 1 - exp(-x/2 - sqrt(x))``.

    The median (``q = 0.5``) is about ``13.4 n^2``. Large-n approximation (edge fluctuations of
    relative order ``n^{-2/3}`` are ignored).
    """
    if not 0 < q < 1:
        raise OperatorError(f"quantile q must lie in (0, 1), got {q}")
    if n < 1:
        raise OperatorError(f"width n must be positive, got {n}")
    t = -math.log(q)  # kappa <= k  <=>  X >= 4n^2/k, so P(X >= x_q') = q with x/2 + sqrt x = t
    x = (-1 + math.sqrt(1 + 2 * t)) ** 2
    return 4 * n * n / x


def orthogonality_defect(weight: torch.Tensor) -> float:
    """``||W^T W - I||_2``: 0 for orthonormal columns (then the input local Hessian is ``I``)."""
    check_matrix("weight", weight)
    W = as64(weight)
    assert W is not None
    return float(torch.linalg.matrix_norm(W.T @ W - torch.eye(W.shape[1], dtype=W.dtype), ord=2))
