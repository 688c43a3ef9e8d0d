r"""Block Lanczos with full reorthogonalisation, for both ends of a symmetric spectrum.

Algorithm (Golub & Underwood 1977, block Lanczos; with the full reorthogonalisation of
Parlett's *The Symmetric Eigenvalue Problem*, ch. 13, and SVQB block orthonormalisation of
Stathopoulos & Wu 2002):

1. ``X_1``: p random orthonormal columns (or ``A`` times random columns, to start in the range
   of a positive semi-definite operator: null directions then never enter the Krylov space, so
   the smallest *nonzero* eigenvalues converge instead of the zeros).
2. For j = 1, 2, ...: ``W = A X_j``; orthogonalise ``W`` against the whole basis twice
   (classical Gram-Schmidt, twice is enough, Giraud et al. 2005); the coefficients are the new
   columns of ``T = Q^T A Q``; Rayleigh-Ritz on T; residuals ``||A y - theta y|| = ||W s_j||``
   come from the Gram matrix of W; ``X_{j+1}`` is the orthonormal basis of W's directions above
   the breakdown threshold. Rayleigh-Ritz (an ``eigh`` of the s x s matrix T, O(s^3)) runs at
   every step up to 192 basis vectors, then on a schedule: every 5% of growth, or sooner where
   the wanted bounds' trend predicts convergence (a 2,048-dim run spent 197 of 227 s in a
   per-step eigh while its products took 0.2 s).
3. Breakdown (an invariant subspace is found: some directions of W vanish) replaces the lost
   directions by random vectors orthogonal to the basis, so the iteration goes on in the
   complement; this is how eigenvalues of multiplicity greater than p are found.
4. Stop when every wanted Ritz value converged, when the basis spans the whole space (then all
   eigenvalues are exact), or when the product budget is spent. The default budget covers the
   whole space plus a range start's p products whenever ``n <= max(300, 40 (top + bottom) p)``.

Modules: :mod:`~hessiankit.solvers.lanczos_iteration` (the iteration),
:mod:`~hessiankit.solvers.krylov_basis` (basis storage and SVQB),
:mod:`~hessiankit.solvers.ritz` (Ritz selection and bounds),
:mod:`~hessiankit.solvers.lanczos_checkpoint` (checkpoint I/O); this one drives them.

T, the Gram-Schmidt coefficients and every projection are float64 whatever the operator's
dtype; the basis is stored in float64, or in float32 (half the memory) for a float32 operator
or when a memory budget requires it (see :class:`LanczosIteration`); vectors stay on the
operator's device. A block size p >= the largest multiplicity among the wanted eigenvalues finds every copy
(a Linear block's weight local Hessian repeats each eigenvalue ``out_features`` times);
single-vector Lanczos (p = 1) is cheapest for distinct eigenvalues.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers import lanczos
    >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64)))
    >>> r = lanczos(A, top=2, bottom=1, tol=1e-10, seed=0)
    >>> [round(float(v), 8) for v in r.top.eigenvalues], round(float(r.bottom.eigenvalues[0]), 8)
    ([100.0, 99.0], 1.0)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.condition import default_rank_rtol
from hessiankit.solvers.krylov_basis import KrylovBasis as _Basis  # noqa: F401 - tests
from hessiankit.solvers.lanczos_iteration import LanczosIteration
from hessiankit.solvers.results import KrylovResult
from hessiankit.solvers.options import BasisDtype, KrylovOptions, ProgressFn, Start, from_keywords

__all__ = [
    "BasisDtype",
    "KrylovOptions",
    "KrylovResult",
    "LanczosIteration",
    "ProgressFn",
    "Start",
    "default_rank_rtol",
    "lanczos",
]


def lanczos(
    op: SymmetricOperator,
    *,
    top: int = 1,
    bottom: int = 0,
    block_size: int = 1,
    tol: float = 1e-6,
    max_products: int | None = None,
    seed: int = 0,
    start: Start | torch.Tensor = "auto",
    rank_rtol: float | None = None,
    keep_vectors: bool = False,
    progress: ProgressFn | None = None,
    max_basis_bytes: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    basis_dtype: BasisDtype = "auto",
    options: KrylovOptions | None = None,
) -> KrylovResult:
    """Extreme eigenvalues of a symmetric operator by block Lanczos.

    "Converged" certifies that an eigenvalue lies within ``error_bounds`` of each reported
    value; that it is *the* largest or smallest is what no Krylov method can certify. A cluster
    far below the rest (``lambda_min / lambda_max`` around 1e-6 and under) can stay unseen
    while a larger eigenvalue converges; requests for the smallest eigenvalues therefore run at
    least ``max(20, 3 (top + bottom) + 2 p)`` basis vectors, and tight tolerances or a
    larger block size help. Top-only requests have no such minimum: they stop as soon as the
    wanted error bounds meet ``tol`` (a looser ``tol`` costs fewer products).

    Args:
        op: the operator (only ``matmat`` is used).
        top: how many of the largest eigenvalues to converge.
        bottom: how many of the smallest eigenvalues to converge.
        block_size: p, vectors per block (finds multiplicities up to p; batches products).
        tol: relative tolerance on the error bound, ``bound <= tol |theta|`` (or the precision
            floor ``100 eps ||A||`` when that is larger).
        max_products: budget of operator products (default ``min(n, max(300, 40 (top +
            bottom) p))`` plus the p products of a range start: an operator of dimension up
            to 300 is always solved to an exhausted space, whose eigenvalues are all exact).
        seed: seed of the random start vectors (drawn on the CPU, so results do not depend on
            the device).
        start: ``"random"``, ``"range"`` (``A`` times random; PSD operators), ``"auto"``
            (``"range"`` when ``op.is_psd``), or an ``n`` or ``n x k`` tensor of start
            directions (each gets a random component of a tenth of its norm; columns beyond
            the block size are ignored, missing ones are random). For the top of a loss
            Hessian, ``op.gradient()`` saves products (the gradient lies mostly in the top
            eigenspace).
        rank_rtol: relative null threshold (default :func:`default_rank_rtol` of the coarser
            of the operator's dtype and the basis storage).
        keep_vectors: return Ritz vectors.
        progress: called as ``progress(products_used, budget)`` after every step.
        max_basis_bytes: memory budget of the Krylov basis; when the next block would not
            fit, a float64 basis spills to float32 (``basis_dtype="auto"``), and when it would
            not fit even so, the basis is thick-restarted (see :class:`LanczosIteration`).
            ``None``: no limit (at most n vectors).
        checkpoint: file of the Krylov state. When it exists the run resumes from it (a
            finished state returns its result without products); the state is written every
            ``checkpoint_every`` steps and at the end, so an interrupted run loses at most
            that many steps and resumes to the same result.
        checkpoint_every: steps between checkpoint writes.
        basis_dtype: storage of the basis: ``"float64"``, ``"float32"`` (half the memory,
            precision floor ``100 eps(float32) ||A||``) or ``"auto"`` (float32 for a float32
            operator; float64 otherwise, spilling to float32 under ``max_basis_bytes`` when
            ``tol`` allows it).
        options: all of ``top`` .. ``basis_dtype`` as one
            :class:`~hessiankit.solvers.options.KrylovOptions`; when given, those keywords
            are ignored.

    Raises:
        OperatorError: ``top``/``bottom`` out of range, a budget too small for the request,
            or a checkpoint written by a run with other settings.
    """
    if options is None:
        options = from_keywords(KrylovOptions, locals())
    it = LanczosIteration(op.dim, op.dtype, op.device, options, is_psd=op.is_psd)
    if checkpoint is not None and Path(checkpoint).exists():
        it.load(checkpoint)
    steps = 0
    while (X := it.pending()) is not None:
        it.feed(op.matmat(X))
        steps += 1
        if checkpoint is not None and (it.finished or steps % max(1, checkpoint_every) == 0):
            it.save(checkpoint)
        if progress is not None:
            progress(it.products, it.budget)
    return it.result(keep_vectors=keep_vectors)
