"""Which solver ``spectrum(method="auto")`` runs: the cheapest route to an exact answer.

Routes, in the order they are considered:

1. *structured* (not here yet): a solver that exploits a known structure of the operator
   (e.g. channel-separable blocks, :mod:`hessiankit.solvers.separable`) is tried by the caller
   before :func:`choose_method`; add its rule at the top of :func:`choose_method` and a name to
   :data:`Route`.
2. ``"dense"``: materialise with ``n`` products and ``eigh``: every eigenvalue, rank and nullity,
   exact to the arithmetic. Possible when the ``n x n`` float64 matrix fits ``max_dense_bytes``.
3. ``"lanczos"``: block Lanczos; its cost is its products plus Rayleigh-Ritz.

The cost rule compares seconds. A product's cost is measured (one product with one column);
``eigh`` of an ``m x m`` matrix is costed at :data:`EIGH_SECONDS_PER_CUBE` ``m^3`` (a
conservative CPU figure; it only decides near the boundary). The expected Krylov run:

* with ``bottom > 0``: the smallest eigenvalue on the range of an ill-conditioned local Hessian
  converges last and commonly spends the whole default budget ``min(n, cap) + p`` (the
  README's 2,048-dim operator stopped unconverged at 1,205 products), so the run is priced at
  twice that budget, at most the whole space ``n + p``, plus its scheduled Rayleigh-Ritz
  (about 7 eighs of the final basis);
* top only: ``min(n, 40 + 20 (top + p))`` products, what a top-k run typically needs.

Dense is chosen when it fits and costs no more than that: a 1,200- or 2,048-dim operator with
``bottom >= 1`` is dense territory on any machine, since Lanczos would build a basis of a similar
size and pay its eighs anyway. ``dense_threshold`` overrides the rule (dense up to that
dimension when it fits, Lanczos above).

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> op = MatrixOperator(torch.eye(300, dtype=torch.float64), is_psd=True)
    >>> c = choose_method(op, top=5, bottom=1)
    >>> c.method, c.reason.split(":")[0]
    ('dense', 'dense')
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch

from hessiankit.operators.base import SymmetricOperator, dense_memory_bytes
from hessiankit.solvers.options import default_block_size

__all__ = ["EIGH_SECONDS_PER_CUBE", "MethodChoice", "Route", "choose_method", "krylov_budget"]

#: The routes ``method="auto"`` can take (a structured solver adds its name here).
Route = Literal["dense", "lanczos"]

#: Seconds per ``m^3`` of a float64 ``eigh`` with eigenvectors (about 2 s for m = 2048 on one
#: CPU core); a conservative constant, used only to compare routes.
EIGH_SECONDS_PER_CUBE = 2.5e-10

#: Rayleigh-Ritz runs every step up to this basis size, then on a geometric schedule whose
#: eighs add up to about ``RITZ_FACTOR`` eighs of the final basis.
_EVERY_STEP, RITZ_FACTOR = 192, 7.0


@dataclass(frozen=True)
class MethodChoice:
    """The route ``method="auto"`` takes and why, in words (kept in the result)."""

    method: Route
    reason: str


def krylov_budget(n: int, top: int, bottom: int, p: int, range_start: bool) -> int:
    """Lanczos' default product budget: ``min(n, max(300, 40 (top + bottom) p))`` plus the
    p products of a range start (so that ``n <= cap`` always reaches an exhausted space)."""
    return min(n, max(300, 40 * (top + bottom) * p)) + (p if range_start else 0)


def _eigh_seconds(m: int) -> float:
    return EIGH_SECONDS_PER_CUBE * float(m) ** 3


def _ritz_seconds(m: int, p: int) -> float:
    if m <= _EVERY_STEP:
        return sum(_eigh_seconds(k) for k in range(p, m + 1, p))
    return _eigh_seconds(_EVERY_STEP) * _EVERY_STEP / p + RITZ_FACTOR * _eigh_seconds(m)


def _product_seconds(op: SymmetricOperator) -> float:
    """Wall time of one product with one column (one product of the operator's budget)."""
    v = torch.randn((op.dim, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = v.to(op.device)
    t = time.perf_counter()
    op.matmat(v)
    return time.perf_counter() - t


def choose_method(
    op: SymmetricOperator,
    *,
    top: int,
    bottom: int,
    block_size: int | None = None,
    max_dense_bytes: int = 4 * 2**30,
    dense_threshold: int | None = None,
    product_seconds: float | None = None,
) -> MethodChoice:
    """The cheapest exact route for ``top`` largest and ``bottom`` smallest eigenvalues.

    Args:
        op: the operator.
        top: largest eigenvalues asked for.
        bottom: smallest eigenvalues asked for.
        block_size: Lanczos block size (default as :func:`~hessiankit.solvers.spectrum`).
        max_dense_bytes: memory the dense matrix may take.
        dense_threshold: override: dense up to this dimension (when it fits), Lanczos above.
        product_seconds: the cost of one product, when known; else measured with one
            product (counted by the operator) where the rule needs it.
    """
    n = op.dim
    p = default_block_size(top, bottom, block_size)
    mem = dense_memory_bytes(n)
    if mem > max_dense_bytes:
        return MethodChoice(
            "lanczos",
            f"lanczos: a dense matrix of dimension {n} needs {mem / 2**30:.2f} GiB, over "
            f"max_dense_bytes ({max_dense_bytes / 2**30:.2f} GiB)",
        )
    if dense_threshold is not None:
        if n <= dense_threshold:
            return MethodChoice("dense", f"dense: dimension {n} <= dense_threshold")
        return MethodChoice("lanczos", f"lanczos: dimension {n} > dense_threshold")
    range_start = op.is_psd is True
    if bottom:
        k = min(n + p, 2 * krylov_budget(n, top, bottom, p, range_start))
    else:
        k = min(n, 40 + 20 * (top + p))
    if k >= n:
        return MethodChoice(
            "dense",
            f"dense: the expected Krylov run ({k} products) is no shorter than materialising "
            f"({n} products), and dense gives every eigenvalue",
        )
    t = _product_seconds(op) if product_seconds is None else product_seconds
    dense_s = n * t + _eigh_seconds(n)
    krylov_s = k * t + _ritz_seconds(k, p)
    costs = f"about {dense_s:.3g} s dense against {krylov_s:.3g} s for {k} Krylov products"
    if dense_s <= krylov_s:
        return MethodChoice("dense", f"dense: {costs} ({t * 1e3:.3g} ms per product)")
    return MethodChoice("lanczos", f"lanczos: {costs} ({t * 1e3:.3g} ms per product)")
