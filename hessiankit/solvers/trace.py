r"""Trace estimation: Hutchinson (1989) and Hutch++ (Meyer, Musco, Musco, Woodruff 2021).

Hutchinson: ``tr(A) ~ (1/k) sum_i v_i^T A v_i`` with Rademacher probes ``v_i``; unbiased, with
variance ``2 (||A||_F^2 - sum_i A_ii^2)`` per probe. The standard error reported is the sample
standard deviation of the ``k`` quadratic forms over ``sqrt(k)``.

Hutch++: spend a third of the products on a sketch ``Q = orth(A S)`` that captures the top of
the spectrum, take ``tr(Q^T A Q)`` exactly and Hutchinson on the deflated remainder
``(I - Q Q^T) A (I - Q Q^T)``; the variance then falls like ``1/k^2`` instead of ``1/k`` for
matrices with decaying spectra. The standard error is the remainder's Hutchinson error (the
exact part has none).

Both only use ``op.matmat`` and run the products for all probes of a phase in one call. Probes
are drawn on the CPU from ``seed`` (float64), so results do not depend on the device.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers.trace import hutchinson
    >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
    >>> r = hutchinson(A, num_probes=20, seed=0)
    >>> r.trace  # exact for a diagonal matrix with Rademacher probes
    55.0
"""

from __future__ import annotations

import math
import time
from typing import Literal

import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.results import TraceResult

__all__ = ["TraceResult", "hutch_plus_plus", "hutchinson", "trace"]


def _rademacher(n: int, k: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    signs = torch.randint(0, 2, (n, k), generator=gen, dtype=torch.int8)
    return (2.0 * signs.to(torch.float64) - 1.0).to(device)


def _forms(op: SymmetricOperator, V: torch.Tensor, chunk: int) -> torch.Tensor:
    """``v_i^T A v_i`` for every column, products in chunks of ``chunk`` columns."""
    out = []
    for s in range(0, V.shape[1], chunk):
        X = V[:, s : s + chunk]
        out.append((X * op.matmat(X).to(torch.float64)).sum(dim=0))
    return torch.cat(out)


def _check(op: SymmetricOperator, num_probes: int, minimum: int) -> None:
    if num_probes < minimum:
        raise OperatorError(f"trace estimation needs at least {minimum} probes, got {num_probes}")
    if op.dim < 1:
        raise OperatorError("the operator has dimension 0")


def hutchinson(
    op: SymmetricOperator, *, num_probes: int = 30, seed: int = 0, chunk: int = 16
) -> TraceResult:
    """Hutchinson's estimate of ``tr(A)`` with Rademacher probes.

    Args:
        op: symmetric operator.
        num_probes: probe vectors (one product each); at least 2 for a standard error.
        seed: seed of the probes.
        chunk: probes per ``matmat`` call.
    """
    _check(op, num_probes, 2)
    start, before = time.perf_counter(), op.num_products
    gen = torch.Generator().manual_seed(seed)
    q = _forms(op, _rademacher(op.dim, num_probes, gen, op.device), chunk).cpu()
    return TraceResult(
        trace=float(q.mean()),
        std_error=float(q.std(unbiased=True)) / math.sqrt(num_probes),
        method="hutchinson",
        num_products=op.num_products - before,
        num_probes=num_probes,
        dimension=op.dim,
        seed=seed,
        seconds=time.perf_counter() - start,
    )


def hutch_plus_plus(
    op: SymmetricOperator, *, num_products: int = 60, seed: int = 0, chunk: int = 16
) -> TraceResult:
    """Hutch++ estimate of ``tr(A)`` with a budget of ``num_products`` products.

    A third of the budget sketches the dominant subspace ``Q`` (``A S``, S Rademacher), a third
    forms ``A Q`` for the exact part ``tr(Q^T A Q)``, and a third probes the deflated remainder.
    When the sketch spans the whole space the estimate is exact.

    Args:
        op: symmetric operator.
        num_products: total product budget (at least 6).
        seed: seed of the probes.
        chunk: columns per ``matmat`` call.
    """
    _check(op, num_products, 6)
    start, before = time.perf_counter(), op.num_products
    gen = torch.Generator().manual_seed(seed)
    n = op.dim
    k = min(num_products // 3, n)
    S = _rademacher(n, k, gen, op.device)
    AS = torch.cat(
        [op.matmat(S[:, s : s + chunk]).to(torch.float64) for s in range(0, k, chunk)], 1
    )
    Q, _ = torch.linalg.qr(AS)
    AQ = torch.cat(
        [op.matmat(Q[:, s : s + chunk]).to(torch.float64) for s in range(0, k, chunk)], 1
    )
    exact = float((Q * AQ).sum())
    r = num_products - 2 * k
    if k >= n or r < 2:
        value, err, probes = exact, 0.0, k
    else:
        G = _rademacher(n, r, gen, op.device)
        G = G - Q @ (Q.T @ G)  # (I - Q Q^T) G; forms of the deflated operator
        q = _forms(op, G, chunk).cpu()
        value = exact + float(q.mean())
        err = float(q.std(unbiased=True)) / math.sqrt(r)
        probes = k + r
    return TraceResult(
        trace=value,
        std_error=err,
        method="hutch++",
        num_products=op.num_products - before,
        num_probes=probes,
        dimension=n,
        seed=seed,
        seconds=time.perf_counter() - start,
    )


def trace(
    op: SymmetricOperator,
    *,
    method: Literal["hutchinson", "hutch++"] = "hutch++",
    num_products: int = 60,
    seed: int = 0,
) -> TraceResult:
    """Trace by ``method`` with a budget of ``num_products`` operator products."""
    if method == "hutchinson":
        return hutchinson(op, num_probes=num_products, seed=seed)
    if method == "hutch++":
        return hutch_plus_plus(op, num_products=num_products, seed=seed)
    raise OperatorError(f"unknown trace method {method!r}; use 'hutchinson' or 'hutch++'")
