"""THE per-block solve: every entry point's eigenvalues of one block come from :func:`solve_block`.

It delegates the choice of solver to :func:`hessiankit.spectrum` (``method="auto"``: dense
``eigh`` where it fits, block Lanczos otherwise) with the memory budgets of
:mod:`hessiankit.resources`. One fast path is added here: the top of a loss Hessian by
Lanczos starts from the loss gradient (``start=``), which lies mostly in the top eigenspace
(Gur-Ari, Roberts and Dyer, 2018), so fewer products reach the same answer.

Where to wire in more structure (a separable block solved exactly, another auto policy):
:func:`solve_block` is the one place.

Example:
    >>> import torch
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.pipeline import SolverOptions, solve_block
    >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64)), is_psd=True)
    >>> r = solve_block(A, SolverOptions(top=1, bottom=1))
    >>> r.method, r.condition.kappa
    ('dense', 4.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hessiankit.operators.base import SymmetricOperator, dense_memory_bytes
from hessiankit.pipeline.options import SolverOptions
from hessiankit.resources import basis_budget_bytes, dense_budget_bytes
from hessiankit.solvers.condition import (
    arithmetic_floor,
    condition_from_eigenvalues,
    condition_from_extremes,
)
from hessiankit.solvers.lanczos import lanczos
from hessiankit.solvers.results import Eigenpairs, SpectrumResult
from hessiankit.solvers.spectrum import spectrum

__all__ = ["Budgets", "budgets", "solve_block", "would_be_dense"]


@dataclass(frozen=True)
class Budgets:
    """The memory budgets a solve runs under.

    Attributes:
        max_dense_bytes: what dense ``eigh`` may materialise.
        max_basis_bytes: the Lanczos basis budget (``None``: no limit).
        basis_from_machine: whether ``max_basis_bytes`` was derived from the memory available.
    """

    max_dense_bytes: int
    max_basis_bytes: int | None
    basis_from_machine: bool


def budgets(options: SolverOptions, device: torch.device) -> Budgets:
    """The budgets of ``options`` on ``device``; ``None``/``"auto"`` measured now
    (:mod:`hessiankit.resources`)."""
    dense = options.max_dense_bytes
    basis = options.max_basis_bytes
    return Budgets(
        dense_budget_bytes(device) if dense is None else dense,
        basis_budget_bytes(device) if basis == "auto" else basis,
        basis == "auto",
    )


def would_be_dense(dim: int, top: int, bottom: int, options: SolverOptions, max_dense: int) -> bool:
    """Whether ``spectrum(method=options.method)`` takes the dense path for this size (its
    ``"auto"`` rule: dimension at most ``dense_threshold``, or so many eigenvalues asked for that Lanczos
    would approach the dimension, when the matrix fits)."""
    if options.method != "auto":
        return options.method == "dense"
    fits = dense_memory_bytes(dim) <= max_dense
    return fits and (dim <= options.dense_threshold or 4 * (top + bottom) >= dim)


def solve_block(
    op: SymmetricOperator,
    options: SolverOptions,
    *,
    start: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
    limits: Budgets | None = None,
) -> SpectrumResult:
    """The extreme spectrum and condition number of one block's operator.

    Args:
        op: the block's operator.
        options: what to compute and how (``top``/``bottom`` are clipped to the dimension
            when ``options.clip`` is set).
        start: a Lanczos start direction (the loss gradient for a loss Hessian's top); used
            only when the solve runs Lanczos for ``top >= 1``.
        progress: called as ``progress(products_used, budget)`` by iterative methods.
        limits: memory budgets (default: measured now for ``op.device``).
    """
    lim = limits or budgets(options, op.device)
    top, bottom = options.top, options.bottom
    if options.clip:
        top, bottom = min(top, op.dim), min(bottom, op.dim)
    if (
        start is not None
        and top >= 1
        and options.method in ("auto", "lanczos")
        and not would_be_dense(op.dim, top, bottom, options, lim.max_dense_bytes)
    ):
        return _lanczos_from(op, start, top, bottom, options, lim, progress)
    return spectrum(
        op,
        top=top,
        bottom=bottom,
        method=options.method,
        tol=options.tol,
        seed=options.seed,
        rank_rtol=options.rank_rtol,
        dense_threshold=options.dense_threshold,
        max_dense_bytes=lim.max_dense_bytes,
        block_size=options.block_size,
        max_products=options.max_products,
        max_basis_bytes=lim.max_basis_bytes,
        progress=progress,
    )


def _lanczos_from(
    op: SymmetricOperator,
    start: torch.Tensor,
    top: int,
    bottom: int,
    options: SolverOptions,
    lim: Budgets,
    progress: Callable[[int, int], None] | None,
) -> SpectrumResult:
    """``spectrum(method="lanczos")`` from a given start direction.

    :func:`hessiankit.spectrum` takes no ``start=`` yet; this is its Lanczos branch with one:
    replace it by ``spectrum(..., start=start)`` once it does.
    """
    t0, before = time.perf_counter(), op.num_products
    kr = lanczos(
        op,
        top=top,
        bottom=bottom,
        block_size=options.block_size or min(max(top, bottom), 32),
        tol=options.tol,
        max_products=options.max_products,
        seed=options.seed,
        start=start,
        rank_rtol=options.rank_rtol,
        progress=progress,
        max_basis_bytes=lim.max_basis_bytes,
    )
    n, psd = op.dim, op.is_psd is True
    floors = [arithmetic_floor(n, op.dtype, kr.anorm)]
    if kr.basis_dtype == "float32":
        floors.append(arithmetic_floor(n, torch.float32, kr.anorm))
    precision = max(kr.precision, *floors)
    top_pairs, bot_pairs = _floored(kr.top, precision), _floored(kr.bottom, precision)
    if kr.exhausted:
        cond = condition_from_eigenvalues(kr.ritz_values, rtol=kr.rank_rtol, precision=precision)
    else:
        cond = condition_from_extremes(
            top_pairs,
            bot_pairs,
            rtol=kr.rank_rtol,
            anorm=kr.anorm,
            range_start=kr.range_start,
            psd=psd,
        )
    return SpectrumResult(
        method="lanczos",
        dimension=n,
        dtype=str(op.dtype).replace("torch.", ""),
        seed=options.seed,
        tol=options.tol,
        top=top_pairs,
        bottom=bot_pairs,
        condition=cond,
        num_products=op.num_products - before,
        seconds=time.perf_counter() - t0,
        precision=precision,
        breakdowns=kr.breakdowns,
        exhausted=kr.exhausted,
        eigenvalues=kr.ritz_values if kr.exhausted else None,
        operator=op.describe(),
        bottom_on_range=kr.range_start and psd,
        basis_dtype=kr.basis_dtype,
        basis_bytes=kr.basis_bytes,
        max_basis_bytes=kr.max_basis_bytes,
        restarts=kr.restarts,
    )


def _floored(p: Eigenpairs, precision: float) -> Eigenpairs:
    """Error bounds raised to the arithmetic floor (as :func:`hessiankit.spectrum` does)."""
    if not len(p):
        return p
    return Eigenpairs.build(
        p.which,
        p.eigenvalues,
        p.residuals,
        np.maximum(p.error_bounds, precision),
        p.converged,
        p.eigenvectors,
    )
