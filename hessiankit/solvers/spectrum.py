"""One entry point for the extreme spectrum and the condition number of an operator.

``method="auto"`` materialises the operator and uses dense ``eigh`` when its dimension is at most
``dense_threshold`` (or when so many eigenvalues are asked for that Lanczos would approach the
dimension anyway), and block Lanczos otherwise.

Smallest eigenvalues: for a positive semi-definite operator (Gauss-Newton local Hessians),
``bottom`` holds the smallest eigenvalues **above the null threshold**, i.e. on the range, by
every method that can find them (dense, Lanczos from the range); the zeros are counted in
``condition.nullity`` when the method sees the whole spectrum. For other operators it holds the
algebraically smallest eigenvalues. ``SpectrumResult.bottom_on_range`` says which.

Example:
    >>> import torch
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers import spectrum
    >>> A = MatrixOperator(torch.diag(torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)), is_psd=True)
    >>> r = spectrum(A, top=1, bottom=1)
    >>> r.method, float(r.top.eigenvalues[0]), float(r.bottom.eigenvalues[0]), r.condition.kappa
    ('dense', 4.0, 1.0, 4.0)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator, dense_memory_bytes
from hessiankit.solvers.condition import (
    arithmetic_floor,
    condition_from_eigenvalues,
    condition_from_extremes,
)
from hessiankit.solvers.dense import dense_eigh
from hessiankit.solvers.lanczos import BasisDtype, default_rank_rtol, lanczos
from hessiankit.solvers.power import power_iteration
from hessiankit.solvers.results import Eigenpairs, SpectrumResult

__all__ = ["Method", "spectrum"]

Method = Literal["auto", "lanczos", "power", "dense"]


def spectrum(
    op: SymmetricOperator,
    *,
    top: int = 10,
    bottom: int = 1,
    method: Method = "auto",
    tol: float = 1e-6,
    seed: int = 0,
    rank_rtol: float | None = None,
    dense_threshold: int = 1024,
    max_dense_bytes: int = 4 * 2**30,
    block_size: int | None = None,
    max_products: int | None = None,
    max_iter: int = 1000,
    keep_vectors: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_basis_bytes: int | None = None,
    basis_dtype: BasisDtype = "auto",
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
) -> SpectrumResult:
    """Largest and smallest eigenvalues of ``op`` with residuals, and its condition number.

    Args:
        op: a symmetric operator.
        top: number of largest eigenvalues (descending).
        bottom: number of smallest eigenvalues (ascending; on the range for PSD operators).
        method: ``"auto"``, ``"dense"``, ``"lanczos"`` or ``"power"``.
        tol: relative tolerance of iterative methods.
        seed: seed of random start vectors.
        rank_rtol: relative threshold under which an eigenvalue counts as zero
            (default ``10 sqrt(n) eps(dtype)``, raised on the dense path to the measured
            precision of the materialised matrix, so rounding never counts as rank).
        dense_threshold: ``"auto"`` materialises operators up to this dimension.
        max_dense_bytes: memory limit for materialising (checked before any product).
        block_size: Lanczos block size (default ``max(top, bottom)``, at most 32: finds every
            copy of an eigenvalue repeated up to that many times).
        max_products: Lanczos product budget.
        max_iter: power iterations per eigenvalue.
        keep_vectors: keep eigenvectors in the result.
        progress: called as ``progress(products_used, budget)``.
        max_basis_bytes: memory budget of the Lanczos basis (spill to float32, then thick
            restart; see :func:`~hessiankit.solvers.lanczos.lanczos`); ``None``: no limit.
        basis_dtype: storage of the Lanczos basis, ``"auto"``, ``"float64"`` or
            ``"float32"``. A float32 basis sets the precision floor and the null threshold as
            float32 products would.
        checkpoint: file of the Lanczos state, to resume an interrupted run (see
            :func:`~hessiankit.solvers.lanczos.lanczos`).
        checkpoint_every: Lanczos steps between checkpoint writes.

    Raises:
        OperatorError: an unknown method, more eigenvalues than the dimension, or a dense
            matrix that would not fit in memory.
    """
    n = op.dim
    if method not in ("auto", "lanczos", "power", "dense"):
        raise OperatorError(f"unknown method {method!r}; use auto, lanczos, power or dense")
    if top < 0 or bottom < 0 or top + bottom < 1:
        raise OperatorError("ask for at least one eigenvalue (top >= 1 or bottom >= 1)")
    if top > n or bottom > n:
        raise OperatorError(
            f"asked for {max(top, bottom)} eigenvalues but the operator has dimension {n}; "
            f"use --top/--bottom at most {n}"
        )
    rtol = default_rank_rtol(n, op.dtype) if rank_rtol is None else float(rank_rtol)
    if method == "auto":
        fits = dense_memory_bytes(n) <= max_dense_bytes
        method = (
            "dense" if fits and (n <= dense_threshold or 4 * (top + bottom) >= n) else "lanczos"
        )
    if method == "dense" and dense_memory_bytes(n) > max_dense_bytes:
        raise OperatorError(
            f"method 'dense' needs {dense_memory_bytes(n) / 2**30:.1f} GiB for dimension {n}, "
            f"over the {max_dense_bytes / 2**30:.1f} GiB limit; use method 'lanczos'"
        )
    start = time.perf_counter()
    before = op.num_products
    describe = getattr(op, "describe", None)
    info = describe() if callable(describe) else {}
    dtype = str(op.dtype).replace("torch.", "")
    if method == "dense":
        auto = rank_rtol is None
        return _dense(op, top, bottom, rtol, auto, keep_vectors, start, before, info, dtype, tol)
    if method == "power":
        return _power(
            op,
            top,
            bottom,
            rtol,
            tol,
            max_iter,
            seed,
            keep_vectors,
            progress,
            start,
            before,
            info,
            dtype,
        )
    p = block_size if block_size is not None else min(max(top, bottom), 32)
    kr = lanczos(
        op,
        top=top,
        bottom=bottom,
        block_size=p,
        tol=tol,
        max_products=max_products,
        seed=seed,
        rank_rtol=rank_rtol,
        keep_vectors=keep_vectors,
        progress=progress,
        max_basis_bytes=max_basis_bytes,
        basis_dtype=basis_dtype,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
    )
    psd = op.is_psd is True
    rtol = kr.rank_rtol
    # A float32 basis rounds like float32 products: the floor takes the coarser eps.
    floors = [arithmetic_floor(n, op.dtype, kr.anorm)]
    if kr.basis_dtype == "float32":
        floors.append(arithmetic_floor(n, torch.float32, kr.anorm))
    precision = max(kr.precision, *floors)
    top_pairs, bot_pairs = _floored(kr.top, precision), _floored(kr.bottom, precision)
    if kr.exhausted:
        cond = condition_from_eigenvalues(kr.ritz_values, rtol=rtol, precision=precision)
        all_ev: np.ndarray | None = kr.ritz_values
    else:
        cond = condition_from_extremes(
            top_pairs, bot_pairs, rtol=rtol, anorm=kr.anorm, range_start=kr.range_start, psd=psd
        )
        all_ev = None
    return SpectrumResult(
        method="lanczos",
        dimension=n,
        dtype=dtype,
        seed=seed,
        tol=tol,
        top=top_pairs,
        bottom=bot_pairs,
        condition=cond,
        num_products=op.num_products - before,
        seconds=time.perf_counter() - start,
        precision=precision,
        breakdowns=kr.breakdowns,
        exhausted=kr.exhausted,
        eigenvalues=all_ev,
        operator=info,
        bottom_on_range=kr.range_start and psd,
        basis_dtype=kr.basis_dtype,
        basis_bytes=kr.basis_bytes,
        max_basis_bytes=kr.max_basis_bytes,
        restarts=kr.restarts,
    )


def _dense(
    op: SymmetricOperator,
    top: int,
    bottom: int,
    rtol: float,
    auto_rtol: bool,
    keep_vectors: bool,
    start: float,
    before: int,
    info: dict[str, object],
    dtype: str,
    tol: float,
) -> SpectrumResult:
    d = dense_eigh(op)
    ev = d.eigenvalues.cpu().numpy()
    res = d.residuals.cpu().numpy()
    anorm = float(np.abs(ev).max()) if ev.size else 0.0
    if auto_rtol and anorm > 0:
        # Eigenvalues within the measured precision of zero cannot be told from it (batch-norm
        # null directions come out at 1e-14..1e-11 relative in float64, above 10 sqrt(n) eps).
        rtol = max(rtol, d.precision / anorm)
    psd = op.is_psd is True
    top_idx = np.arange(ev.size - 1, ev.size - 1 - top, -1)
    candidates = np.arange(ev.size)
    if psd:
        candidates = candidates[np.abs(ev) > rtol * anorm]
    bot_idx = candidates[:bottom]

    def pairs(which: Literal["top", "bottom"], idx: np.ndarray) -> Eigenpairs:
        vecs = d.eigenvectors[:, torch.as_tensor(idx, dtype=torch.long)] if keep_vectors else None
        return Eigenpairs.build(
            which, ev[idx], res[idx], res[idx] + d.precision, np.ones(idx.size, bool), vecs
        )

    return SpectrumResult(
        method="dense",
        dimension=op.dim,
        dtype=dtype,
        seed=None,
        tol=tol,
        top=pairs("top", top_idx),
        bottom=pairs("bottom", bot_idx),
        condition=condition_from_eigenvalues(ev, rtol=rtol, precision=d.precision),
        num_products=op.num_products - before,
        seconds=time.perf_counter() - start,
        precision=d.precision,
        exhausted=True,
        eigenvalues=ev,
        operator=info,
        bottom_on_range=psd,
    )


def _power(
    op: SymmetricOperator,
    top: int,
    bottom: int,
    rtol: float,
    tol: float,
    max_iter: int,
    seed: int,
    keep_vectors: bool,
    progress: Callable[[int, int], None] | None,
    start: float,
    before: int,
    info: dict[str, object],
    dtype: str,
) -> SpectrumResult:
    hi = lo = None
    if top:
        hi = power_iteration(
            op,
            k=top,
            which="LA",
            tol=tol,
            max_iter=max_iter,
            seed=seed,
            keep_vectors=keep_vectors,
            progress=progress,
        )
    if bottom:
        lo = power_iteration(
            op,
            k=bottom,
            which="SA",
            tol=tol,
            max_iter=max_iter,
            seed=seed + 1,
            keep_vectors=keep_vectors,
            progress=progress,
        )
    top_pairs = _sorted(hi.pairs, descending=True) if hi else Eigenpairs.empty("top")
    bot_pairs = _sorted(lo.pairs, descending=False) if lo else Eigenpairs.empty("bottom")
    anorm = max(
        hi.anorm if hi else 0.0,
        lo.anorm if lo else 0.0,
        float(np.abs(top_pairs.eigenvalues).max()) if len(top_pairs) else 0.0,
    )
    precision = max(
        hi.precision if hi else 0.0,
        lo.precision if lo else 0.0,
        arithmetic_floor(op.dim, op.dtype, anorm),
    )
    top_pairs, bot_pairs = _floored(top_pairs, precision), _floored(bot_pairs, precision)
    cond = condition_from_extremes(
        top_pairs, bot_pairs, rtol=rtol, anorm=anorm, range_start=False, psd=op.is_psd
    )
    return SpectrumResult(
        method="power",
        dimension=op.dim,
        dtype=dtype,
        seed=seed,
        tol=tol,
        top=top_pairs,
        bottom=bot_pairs,
        condition=cond,
        num_products=op.num_products - before,
        seconds=time.perf_counter() - start,
        precision=precision,
        operator=info,
        bottom_on_range=False,
    )


def _floored(p: Eigenpairs, precision: float) -> Eigenpairs:
    """Error bounds raised to the arithmetic floor (an iterative solver's own floor can be lower)."""
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


def _sorted(p: Eigenpairs, *, descending: bool) -> Eigenpairs:
    order = np.argsort(-p.eigenvalues if descending else p.eigenvalues, kind="stable")
    vecs = p.eigenvectors[:, torch.as_tensor(order)] if p.eigenvectors is not None else None
    return Eigenpairs.build(
        p.which,
        p.eigenvalues[order],
        p.residuals[order],
        p.error_bounds[order],
        p.converged[order],
        vecs,
    )
