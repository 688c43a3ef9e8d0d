"""One entry point for the extreme spectrum and the condition number of an operator.

``method="auto"`` takes the cheapest exact route (:func:`~hessiankit.solvers.policy.choose_method`):
dense ``eigh`` of the materialised operator when its matrix fits in ``max_dense_bytes`` and
``n`` products plus ``eigh`` cost no more than the expected Krylov run, block Lanczos otherwise.
Before either, a request that includes the smallest eigenvalues (``bottom >= 1``), or a
top-only one whose parts are small (``SEPARABLE_TOP_ONLY_SIDE``), of a
separable local Hessian (a conv/linear block whose output channels, or whose samples, do not
interact: :mod:`~hessiankit.solvers.separable_structure`) larger than ``SEPARABLE_MIN_DIM`` takes
the exact structured route (:func:`~hessiankit.solvers.separable.separable_spectrum`): the
whole spectrum from per-channel (per-sample) Gram matrices, with no convergence question.
``SpectrumResult.method_reason`` says which ran and why.

Smallest eigenvalues: for a positive semi-definite operator (Gauss-Newton local Hessians),
``bottom`` holds the smallest eigenvalues **above the null threshold**, i.e. on the range, by
every method that can find them (dense, Lanczos from the range); the zeros are counted in
``condition.nullity`` when the method sees the whole spectrum. For other operators it holds the
algebraically smallest eigenvalues. ``SpectrumResult.bottom_on_range`` says which.

Example:
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
from dataclasses import replace
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator, dense_memory_bytes
from hessiankit.solvers.assemble import RunFacts, floored, from_dense, from_krylov, is_low_precision
from hessiankit.solvers.condition import arithmetic_floor, condition_from_extremes, floor_cause
from hessiankit.solvers.dense import dense_eigh
from hessiankit.solvers.lanczos import BasisDtype, default_rank_rtol, lanczos
from hessiankit.solvers.options import (
    KrylovOptions,
    Method,
    SpectrumOptions,
    check_request,
    default_block_size,
    from_keywords,
)
from hessiankit.solvers.policy import choose_method
from hessiankit.solvers.power import power_iteration
from hessiankit.solvers.results import Eigenpairs, PowerResult, SpectrumResult
from hessiankit.solvers.separable import separable_spectrum
from hessiankit.solvers.separable_structure import separability, separable_side

__all__ = ["Method", "spectrum"]


#: Below this dimension ``"auto"`` does not look for separable structure: dense ``eigh`` of
#: so small a matrix costs next to nothing and answers the same.
SEPARABLE_MIN_DIM = 256
#: A top-only request takes the separable route when each part's Gram side is at most this:
#: then the whole spectrum costs a few products and small ``eigh`` calls, while Lanczos on a
#: direct sum of many similar parts meets clustered top eigenvalues (a 2M-weight linear block
#: with 32 samples: 3 products and 5.7 s against 325 products and 790 s).
SEPARABLE_TOP_ONLY_SIDE = 64


def _small_parts(op: SymmetricOperator) -> bool:
    side = separable_side(op)
    return side is not None and side <= SEPARABLE_TOP_ONLY_SIDE


def spectrum(
    op: SymmetricOperator,
    *,
    top: int = 10,
    bottom: int = 1,
    method: Method = "auto",
    tol: float = 1e-6,
    seed: int = 0,
    rank_rtol: float | None = None,
    dense_threshold: int | None = None,
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
    start: torch.Tensor | None = None,
    options: SpectrumOptions | None = None,
) -> SpectrumResult:
    """Largest and smallest eigenvalues of ``op`` with residuals, and its condition number.

    Args:
        op: a symmetric operator.
        top: number of largest eigenvalues (descending).
        bottom: number of smallest eigenvalues (ascending; on the range for PSD operators).
        method: ``"auto"``, ``"dense"``, ``"lanczos"``, ``"power"`` or ``"separable"``.
        tol: relative tolerance of iterative methods.
        seed: seed of random start vectors.
        rank_rtol: relative threshold under which an eigenvalue counts as zero
            (default ``10 sqrt(n) eps(dtype)``, raised on the dense path to the measured
            precision of the materialised matrix, so rounding never counts as rank).
        dense_threshold: override of ``"auto"``'s cost rule: materialise operators up to this
            dimension, Lanczos above (default: the rule of
            :func:`~hessiankit.solvers.policy.choose_method`, from the dimension, memory and
            one measured product).
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
        start: Lanczos start directions (``dim`` or ``dim x k``; e.g. the loss gradient for
            the top of a loss Hessian); other methods ignore it.
        options: ``top`` .. ``basis_dtype`` (every keyword but ``keep_vectors``, ``progress``,
            ``checkpoint``, ``checkpoint_every`` and ``start``) as one
            :class:`~hessiankit.solvers.options.SpectrumOptions`; when given, those keywords
            are ignored.

    Raises:
        OperatorError: an unknown method, more eigenvalues than the dimension, or a dense
            matrix that would not fit in memory.
    """
    return _solve(
        op,
        options if options is not None else from_keywords(SpectrumOptions, locals()),
        keep_vectors=keep_vectors,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        start=start,
    )


def _solve(
    op: SymmetricOperator,
    o: SpectrumOptions,
    *,
    keep_vectors: bool,
    progress: Callable[[int, int], None] | None,
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_every: int,
    start: torch.Tensor | None,
) -> SpectrumResult:
    method = o.method
    n = op.dim
    if method not in ("auto", "lanczos", "power", "dense", "separable"):
        raise OperatorError(
            f"unknown method {method!r}; use auto, lanczos, power, dense or separable"
        )
    check_request(o.top, o.bottom, n)
    rtol = default_rank_rtol(n, op.dtype) if o.rank_rtol is None else float(o.rank_rtol)
    t0 = time.perf_counter()
    before = op.num_products
    reason = f"{method}: asked for"
    wanted = method == "auto" and n > SEPARABLE_MIN_DIM
    if method == "separable" or (wanted and (o.bottom >= 1 or _small_parts(op))):
        structure, why = separability(op, seed=o.seed)
        probe = op.num_products - before  # the structure probe's products count too
        if structure is not None:
            sep = separable_spectrum(
                op,
                top=o.top,
                bottom=o.bottom,
                structure=structure,
                rank_rtol=o.rank_rtol,
                max_bytes=min(o.max_dense_bytes, 2 * 2**30),
                seed=o.seed,
            )
            why = f"separable: {why}; the whole spectrum from per-part Gram matrices"
            return replace(
                sep,
                num_products=sep.num_products + probe,
                seconds=time.perf_counter() - t0,
                method_reason=why if method == "auto" else reason,
            )
        if method == "separable":
            raise OperatorError(f"method 'separable' does not apply: {why}")
    if method == "auto":
        choice = choose_method(
            op,
            top=o.top,
            bottom=o.bottom,
            block_size=o.block_size,
            max_dense_bytes=o.max_dense_bytes,
            dense_threshold=o.dense_threshold,
        )
        method, reason = choice.method, choice.reason
    if method == "dense" and dense_memory_bytes(n) > o.max_dense_bytes:
        raise OperatorError(
            f"method 'dense' needs {dense_memory_bytes(n) / 2**30:.1f} GiB for dimension {n}, "
            f"over the {o.max_dense_bytes / 2**30:.1f} GiB limit; use method 'lanczos'"
        )
    info = op.describe()

    def facts() -> RunFacts:
        return RunFacts.measure(op, tol=o.tol, before=before, start=t0, operator=info)

    res: SpectrumResult
    if method == "dense":
        d = dense_eigh(op, max_bytes=o.max_dense_bytes)
        res = from_dense(
            d,
            facts(),
            top=o.top,
            bottom=o.bottom,
            rtol=rtol,
            auto_rtol=o.rank_rtol is None,
            keep_vectors=keep_vectors,
        )
    elif method == "power":
        runs = _power_runs(op, o.top, o.bottom, o.tol, o.max_iter, o.seed, keep_vectors, progress)
        res = _from_power(*runs, op=op, rtol=rtol, max_iter=o.max_iter, seed=o.seed, facts=facts)
    else:
        krylov = from_keywords(
            KrylovOptions,
            o,
            block_size=default_block_size(o.top, o.bottom, o.block_size),
            start="auto" if start is None else start,
        )
        kr = lanczos(
            op,
            options=krylov,
            keep_vectors=keep_vectors,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
        )
        res = from_krylov(kr, facts(), seed=o.seed)
    return replace(res, method_reason=reason)


def _power_runs(
    op: SymmetricOperator,
    top: int,
    bottom: int,
    tol: float,
    max_iter: int,
    seed: int,
    keep_vectors: bool,
    progress: Callable[[int, int], None] | None,
) -> tuple[PowerResult | None, PowerResult | None]:
    """Power iteration for the ``top`` largest (seed ``seed``) and the ``bottom`` smallest
    (seed ``seed + 1``) eigenvalues; ``None`` where none was asked for."""
    runs: list[PowerResult | None] = []
    wanted: tuple[tuple[int, Literal["LA", "SA"], int], ...] = (
        (top, "LA", seed),
        (bottom, "SA", seed + 1),
    )
    for k, which, s in wanted:
        run = None
        if k:
            run = power_iteration(
                op,
                k=k,
                which=which,
                tol=tol,
                max_iter=max_iter,
                seed=s,
                keep_vectors=keep_vectors,
                progress=progress,
            )
        runs.append(run)
    return runs[0], runs[1]


def _from_power(
    hi: PowerResult | None,
    lo: PowerResult | None,
    *,
    op: SymmetricOperator,
    rtol: float,
    max_iter: int,
    seed: int,
    facts: Callable[[], RunFacts],
) -> SpectrumResult:
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
    top_pairs, bot_pairs = floored(top_pairs, precision), floored(bot_pairs, precision)
    cause = ""
    if not (top_pairs.all_converged and bot_pairs.all_converged):
        cause = (
            f"power iteration reached max_iter={max_iter} before every eigenvalue converged "
            "(it converges linearly in the eigenvalue ratio): raise max_iter= or use "
            "method='lanczos'"
        )
    low = is_low_precision(op.dtype)
    smallest = abs(float(bot_pairs.eigenvalues[0])) if len(bot_pairs) else anorm
    cond = condition_from_extremes(
        top_pairs,
        bot_pairs,
        rtol=rtol,
        anorm=anorm,
        range_start=False,
        psd=op.is_psd,
        cause=cause or floor_cause(smallest, precision, low),
        low_precision=low,
    )
    return facts().result("power", seed, top_pairs, bot_pairs, cond, precision)


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
