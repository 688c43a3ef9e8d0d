"""Spectra of the diagonal blocks of a block-diagonal operator, one Lanczos run per block in lockstep.

A block-diagonal operator ``diag(A_1, ..., A_B)`` (every block's local Hessian at once, see
:mod:`hessiankit.operators.all_blocks`) answers B products for the price of about one. Running
a single Krylov method on the whole matrix would mix the blocks' spectra, so this driver keeps
one :class:`~hessiankit.solvers.lanczos.LanczosIteration` per block and, at each step, stacks
their pending blocks (zero-padded to the widest) into one matrix and multiplies once. A block
whose run has finished contributes zero columns, or, when the operator offers
``restrict(indices)`` (:class:`~hessiankit.operators.all_blocks.AllBlocksLocalHessian` does), is
dropped from the product altogether. The shared product columns are the largest
``num_products`` among the blocks. Each block's result is what
:func:`~hessiankit.solvers.spectrum.spectrum` with ``method="lanczos"`` returns for it alone with
the same seed, up to rounding.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers.blockwise import blockwise_spectra
    >>> A = MatrixOperator(torch.block_diag(torch.diag(torch.arange(1.0, 41.0)),
    ...                                     3 * torch.eye(30)).double(), is_psd=True)
    >>> r = blockwise_spectra(A, parts=[slice(0, 40), slice(40, 70)], top=2, bottom=1)
    >>> [[round(float(v), 8) for v in x.top.eigenvalues] for x in r]
    [[40.0, 39.0], [3.0, 3.0]]
"""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable, Sequence

import numpy as np
import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.assemble import RunFacts, from_krylov
from hessiankit.solvers.lanczos import LanczosIteration
from hessiankit.solvers.options import KrylovOptions, default_block_size, from_keywords
from hessiankit.solvers.results import SpectrumResult

__all__ = ["blockwise_spectra"]


def blockwise_spectra(
    op: SymmetricOperator,
    *,
    parts: Sequence[slice] | None = None,
    top: int = 5,
    bottom: int = 1,
    tol: float = 1e-6,
    seed: int = 0,
    block_size: int | None = None,
    max_products: int | None = None,
    rank_rtol: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    options: KrylovOptions | None = None,
) -> list[SpectrumResult]:
    """Largest and smallest eigenvalues of every diagonal block, with one product per step.

    Args:
        op: a block-diagonal symmetric operator.
        parts: the diagonal blocks as slices of ``range(op.dim)`` (default ``op.parts``).
        top: largest eigenvalues per block (clipped to the block's dimension).
        bottom: smallest eigenvalues per block (on the range for PSD operators).
        tol: relative tolerance.
        seed: seed of every block's random start.
        block_size: Lanczos block size (default ``max(top, bottom)``, at most 32).
        max_products: product budget per block.
        rank_rtol: relative null threshold (default per block ``10 sqrt(n_b) eps``).
        progress: called as ``progress(steps_done, blocks_still_running)``.
        options: ``top``, ``bottom``, ``tol``, ``seed``, ``block_size``, ``max_products`` and
            ``rank_rtol`` as one :class:`~hessiankit.solvers.options.KrylovOptions` (its
            ``top``/``bottom`` clipped per block); when given, those keywords are ignored.

    Returns:
        One :class:`SpectrumResult` per part, in order; ``seconds`` is the shared wall time
        and ``num_products`` the block's own product columns.

    Raises:
        OperatorError: ``parts`` missing, empty or overlapping.
    """
    if options is None:
        p = default_block_size(top, bottom, block_size)
        options = from_keywords(KrylovOptions, locals(), block_size=p)
    own_parts = parts is None  # only then do the operator's restrict() indices match ours
    parts = list(parts if parts is not None else (op.parts or []))
    if not parts:
        raise OperatorError(
            "give the diagonal blocks as parts=[slice, ...] (or use an operator with .parts)"
        )
    covered = np.zeros(op.dim, dtype=bool)
    for sl in parts:
        if (
            sl.start is None
            or sl.stop is None
            or not 0 <= sl.start < sl.stop <= op.dim
            or covered[sl].any()
        ):
            raise OperatorError(
                f"parts must be disjoint non-empty slices of range({op.dim}), got {sl}"
            )
        covered[sl] = True
    start = time.perf_counter()
    runs = [
        LanczosIteration(
            n,
            op.dtype,
            op.device,
            replace(options, top=min(options.top, n), bottom=min(options.bottom, n)),
            is_psd=op.is_psd,
        )
        for n in (sl.stop - sl.start for sl in parts)
    ]
    steps = 0
    current, held = op, list(range(len(parts)))  # the operator in use and the parts it holds
    while True:
        active = [i for i, it in enumerate(runs) if it.pending() is not None]
        if not active:
            break
        if own_parts and op.can_restrict and len(active) < len(held):
            # Finished blocks would still cost a forward and backward per product: drop them.
            current, held = op.restrict(active), active
        own = current.parts if own_parts and current.parts is not None else parts
        where = {i: sl for i, sl in zip(held, own)}
        pending = [(i, X) for i in active if (X := runs[i].pending()) is not None]
        k = max(X.shape[1] for _, X in pending)
        V = torch.zeros((current.dim, k), dtype=torch.float64, device=op.device)
        for i, X in pending:
            V[where[i], : X.shape[1]] = X
        AV = current.matmat(V)
        for i, X in pending:
            runs[i].feed(AV[where[i], : X.shape[1]])
        steps += 1
        if progress is not None:
            progress(steps, len(active))
    seconds = time.perf_counter() - start
    psd = op.is_psd is True
    return [
        from_krylov(
            it.result(),
            RunFacts(it.n, op.dtype, psd, options.tol, it.products, seconds, op.describe_part(i)),
            seed=options.seed,
        )
        for i, it in enumerate(runs)
    ]
