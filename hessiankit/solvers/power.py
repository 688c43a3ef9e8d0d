"""Power iteration with deflation (for comparison, and for users who ask for it).

For each wanted eigenvalue: a fresh random start, iterate ``v <- B v / ||B v||`` while
projecting out the eigenvectors already found (deflation by projection, exact for symmetric
matrices), with Rayleigh quotient ``theta = v^T B v`` and residual ``||B v - theta v||``.
``B`` is ``A`` (``which="LM"``, largest magnitude), ``A + sigma I`` (``"LA"``, largest algebraic;
sigma = an estimate of ``||A||`` unless A is known to be PSD) or ``sigma I - A`` (``"SA"``,
smallest algebraic). Convergence is linear in the eigenvalue ratio, so unlike Lanczos it can
be very slow: unconverged estimates are reported as such, never silently.

Power iteration cannot skip the null space of a singular operator, so it does not give the
smallest *nonzero* eigenvalue; :func:`hessiankit.spectrum` reports that as unknown.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers import power_iteration
    >>> A = MatrixOperator(torch.diag(torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64)))
    >>> r = power_iteration(A, k=1, which="LM", seed=0)
    >>> round(float(r.pairs.eigenvalues[0]), 6), bool(r.pairs.converged[0])
    (10.0, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.condition import iterative_floor
from hessiankit.solvers.results import Eigenpairs, PowerResult

__all__ = ["PowerResult", "power_iteration"]

Which = Literal["LM", "LA", "SA"]


def power_iteration(
    op: SymmetricOperator,
    *,
    k: int = 1,
    which: Which = "LA",
    tol: float = 1e-6,
    max_iter: int = 1000,
    seed: int = 0,
    shift: float | None = None,
    keep_vectors: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PowerResult:
    """The k extreme eigenvalues at one end by power iteration with deflation.

    Args:
        op: the operator.
        k: number of eigenvalues.
        which: ``"LM"`` largest magnitude, ``"LA"`` largest, ``"SA"`` smallest.
        tol: relative residual tolerance ``||A v - theta v|| <= tol |theta|`` (or the
            precision floor).
        max_iter: iterations per eigenvalue.
        seed: seed of the start vectors (drawn on the CPU).
        shift: sigma for ``"LA"``/``"SA"``; default: an estimate of ``||A||`` from a ``"LM"``
            run (none for ``"LA"`` on a PSD operator).
        keep_vectors: return the eigenvectors.
        progress: called as ``progress(products_used, budget)``.

    Raises:
        OperatorError: k out of range or ``which`` unknown.
    """
    n = op.dim
    if which not in ("LM", "LA", "SA"):
        raise OperatorError(f"unknown which {which!r}; use 'LM', 'LA' or 'SA'")
    if not 1 <= k <= n:
        raise OperatorError(f"asked for {k} eigenvalues of an operator of dimension {n}")
    gen = torch.Generator().manual_seed(seed)
    products = 0
    budget = k * max_iter
    anorm = 0.0
    sign = -1.0 if which == "SA" else 1.0
    if shift is None:
        shift = 0.0
        if which == "SA" or (which == "LA" and op.is_psd is not True):
            est = power_iteration(op, k=1, which="LM", tol=1e-2, max_iter=50, seed=seed + 7919)
            products += est.num_products
            anorm = abs(float(est.pairs.eigenvalues[0]))
            shift = 1.01 * anorm
    found: list[torch.Tensor] = []
    values, residuals, conv = [], [], []

    def apply(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # B v with B = sign A + shift I; returns (B v, A v).
        Av = op.matmat(v[:, None]).to(torch.float64)[:, 0]
        return sign * Av + shift * v, Av

    for i in range(k):
        v = torch.randn(n, generator=gen, dtype=torch.float64).to(op.device)
        v = _deflate(v, found)
        v /= v.norm()
        theta_a = 0.0
        res = float("inf")
        ok = False
        for _ in range(max_iter):
            Bv, Av = apply(v)
            products += 1
            theta_a = float(v @ Av)
            r = Av - theta_a * v
            res = float(r.norm())
            anorm = max(anorm, abs(theta_a))
            floor = iterative_floor(anorm, op.dtype)
            ok = res <= max(tol * abs(theta_a), floor)
            # Later eigenvectors are deflated against this one, so its error caps their
            # accuracy: iterate a little past tol while that is cheap.
            if ok and (i == k - 1 or res <= max(0.1 * tol * abs(theta_a), floor)):
                break
            w = _deflate(Bv, found)
            nrm = w.norm()
            if float(nrm) == 0.0:
                ok = True  # v spans an invariant direction of B
                break
            v = w / nrm
            if progress is not None and products % 10 == 0:
                progress(products, budget)
        found.append(v)
        values.append(theta_a)
        residuals.append(res)
        conv.append(ok)
    precision = iterative_floor(anorm, op.dtype)
    bounds = [max(r, precision) for r in residuals]
    pairs = Eigenpairs.build(
        "bottom" if which == "SA" else "top",
        values,
        residuals,
        bounds,
        conv,
        torch.stack(found, dim=1) if keep_vectors else None,
    )
    return PowerResult(
        pairs=pairs, num_products=products, shift=shift, anorm=anorm, precision=precision
    )


def _deflate(v: torch.Tensor, found: list[torch.Tensor]) -> torch.Tensor:
    for u in found:
        v = v - (u @ v) * u
    return v
