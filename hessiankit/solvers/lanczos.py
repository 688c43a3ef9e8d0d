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
   the breakdown threshold.
3. Breakdown (an invariant subspace is found: some directions of W vanish) replaces the lost
   directions by random vectors orthogonal to the basis, so the iteration goes on in the
   complement; this is how eigenvalues of multiplicity greater than p are found.
4. Stop when every wanted Ritz value converged, when the basis spans the whole space (then all
   eigenvalues are exact), or when the product budget is spent.

The basis and T are float64 whatever the operator's dtype; vectors stay on the operator's
device. A block size p >= the largest multiplicity among the wanted eigenvalues finds every copy
(a Linear block's weight local Hessian repeats each eigenvalue ``out_features`` times);
single-vector Lanczos (p = 1) is cheapest for distinct eigenvalues.

Example:
    >>> import torch
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers import lanczos
    >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64)))
    >>> r = lanczos(A, top=2, bottom=1, seed=0)
    >>> [round(v, 8) for v in r.top.eigenvalues], round(float(r.bottom.eigenvalues[0]), 8)
    ([100.0, 99.0], 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.results import Eigenpairs

__all__ = ["KrylovResult", "default_rank_rtol", "lanczos"]

Start = Literal["auto", "random", "range"]
ProgressFn = Callable[[int, int], None]


def default_rank_rtol(dim: int, dtype: torch.dtype) -> float:
    """Relative threshold below which an eigenvalue counts as zero: ``10 sqrt(n) eps(dtype)``."""
    return 10.0 * math.sqrt(max(dim, 1)) * torch.finfo(dtype).eps


def _precision(anorm: float, dtype: torch.dtype) -> float:
    return 100.0 * torch.finfo(dtype).eps * anorm


@dataclass(frozen=True, eq=False)
class KrylovResult:
    """What a Lanczos run found.

    Attributes:
        top: largest Ritz values (descending) with residuals, bounds and flags.
        bottom: smallest Ritz values (ascending); from a range start on a PSD operator, the
            smallest ones above the null threshold.
        ritz_values: every Ritz value of the final basis, ascending.
        num_products: operator products used.
        basis_size: Krylov basis dimension reached.
        breakdowns: directions replaced after an invariant subspace was found.
        exhausted: the basis spans the whole space; ``ritz_values`` is the exact spectrum.
        anorm: estimate of ``||A||`` (largest |Ritz value|).
        precision: accuracy floor from the operator's dtype.
        null_threshold: eigenvalues at most this large in magnitude count as zero.
        range_start: whether the run started in the operator's range.
    """

    top: Eigenpairs
    bottom: Eigenpairs
    ritz_values: np.ndarray
    num_products: int
    basis_size: int
    breakdowns: int
    exhausted: bool
    anorm: float
    precision: float
    null_threshold: float
    range_start: bool


class _Basis:
    """A growing float64 orthonormal basis stored contiguously (doubling capacity)."""

    def __init__(self, n: int, device: torch.device, capacity: int) -> None:
        self.n = n
        self._Q = torch.empty((n, max(capacity, 1)), dtype=torch.float64, device=device)
        self.size = 0

    @property
    def Q(self) -> torch.Tensor:
        return self._Q[:, : self.size]

    def append(self, X: torch.Tensor) -> None:
        need = self.size + X.shape[1]
        if need > self._Q.shape[1]:
            grown = torch.empty(
                (self.n, min(self.n, max(need, 2 * self._Q.shape[1]))),
                dtype=torch.float64,
                device=self._Q.device,
            )
            grown[:, : self.size] = self.Q
            self._Q = grown
        self._Q[:, self.size : need] = X
        self.size = need

    def project_out(self, W: torch.Tensor) -> torch.Tensor:
        """Coefficients ``Q^T W`` (two passes) and W minus its projection, in place."""
        Q = self.Q
        H = Q.T @ W
        W -= Q @ H
        H2 = Q.T @ W
        W -= Q @ H2
        return H + H2


def _svqb(W: torch.Tensor, threshold: float) -> torch.Tensor:
    """Orthonormal basis of W's directions with singular value above ``threshold``."""
    G = W.T @ W
    evals, V = torch.linalg.eigh(G)
    keep = evals > threshold * threshold
    if not bool(keep.any()):
        return W[:, :0]
    return W @ (V[:, keep] / evals[keep].sqrt())


def lanczos(
    op: SymmetricOperator,
    *,
    top: int = 1,
    bottom: int = 0,
    block_size: int = 1,
    tol: float = 1e-6,
    max_products: int | None = None,
    seed: int = 0,
    start: Start = "auto",
    rank_rtol: float | None = None,
    keep_vectors: bool = False,
    progress: ProgressFn | None = None,
) -> KrylovResult:
    """Extreme eigenvalues of a symmetric operator by block Lanczos.

    Args:
        op: the operator (only ``matmat`` is used).
        top: how many of the largest eigenvalues to converge.
        bottom: how many of the smallest eigenvalues to converge.
        block_size: p, vectors per block (finds multiplicities up to p; batches products).
        tol: relative tolerance on the error bound, ``bound <= tol |theta|`` (or the precision
            floor ``100 eps ||A||`` when that is larger).
        max_products: budget of operator products (default ``min(n + p, max(300, 40 (top +
            bottom) p))``).
        seed: seed of the random start vectors (drawn on the CPU, so results do not depend on
            the device).
        start: ``"random"``, ``"range"`` (``A`` times random; PSD operators) or ``"auto"``
            (``"range"`` when ``op.is_psd``).
        rank_rtol: relative null threshold (default :func:`default_rank_rtol`).
        keep_vectors: return Ritz vectors.
        progress: called as ``progress(products_used, budget)`` after every step.

    Raises:
        OperatorError: ``top``/``bottom`` out of range.
    """
    n = op.dim
    if top < 0 or bottom < 0 or top + bottom < 1:
        raise OperatorError("ask for at least one eigenvalue (top >= 1 or bottom >= 1)")
    if top > n or bottom > n:
        raise OperatorError(
            f"asked for {max(top, bottom)} eigenvalues of an operator of dimension {n}; "
            f"ask for at most {n}"
        )
    p = max(1, min(int(block_size), n))
    range_start = start == "range" or (start == "auto" and op.is_psd is True)
    budget = max_products or min(n + p, max(300, 40 * (top + bottom) * p))
    rtol = default_rank_rtol(n, op.dtype) if rank_rtol is None else rank_rtol
    eps_op = torch.finfo(op.dtype).eps
    device = op.device
    gen = torch.Generator().manual_seed(seed)

    def randn(k: int) -> torch.Tensor:
        return torch.randn((n, k), generator=gen, dtype=torch.float64).to(device)

    def product(X: torch.Tensor) -> torch.Tensor:
        return op.matmat(X).to(torch.float64)

    products = 0
    X = randn(p)
    if range_start:
        X = product(X)
        products += p
    basis = _Basis(n, device, capacity=min(n, 4 * p + 64))
    X = _svqb(X, 0.0)
    X = _svqb(X, 0.0)
    if X.shape[1] < p:  # A times random is rank deficient: fill from random
        X = _fill(X, basis, randn, p)
    basis.append(X)
    T = np.zeros((16, 16))
    anorm = 0.0
    breakdowns = 0
    exhausted = False
    top_pairs = bottom_pairs = None
    theta = np.zeros(0)
    while True:
        W = product(X)
        products += X.shape[1]
        s0 = basis.size - X.shape[1]
        H = basis.project_out(W).cpu().numpy()
        s = basis.size
        if s > T.shape[0]:
            T = _grow(T, max(s, 2 * T.shape[0]))
        T[:s, s0:s] = H
        T[s0:s, :s] = H.T
        T[s0:s, s0:s] = 0.5 * (H[s0:s] + H[s0:s].T)
        theta, S = np.linalg.eigh(T[:s, :s])
        anorm = max(anorm, float(np.abs(theta).max()))
        G = (W.T @ W).cpu().numpy()
        last = S[s0:s, :]
        res = np.sqrt(np.maximum(np.einsum("ik,ij,jk->k", last, G, last), 0.0))
        precision = _precision(anorm, op.dtype)
        null_thr = rtol * anorm
        exhausted = s >= n
        if exhausted:
            res = np.zeros_like(res)
        top_pairs, bottom_pairs, done = _select(
            theta, S, res, top, bottom, tol, precision, null_thr, range_start
        )
        if progress is not None:
            progress(products, budget)
        if done or exhausted or products + p > budget:
            break
        # Next block: W's directions above the breakdown threshold, random fill for the rest.
        p_next = min(p, n - s)
        X = _svqb(W, 10.0 * eps_op * anorm)
        if X.shape[1] > 0:
            basis.project_out(X)
            X = _svqb(X, 0.5)
        if X.shape[1] > p_next:
            X = X[:, :p_next]
        if X.shape[1] < p_next:
            breakdowns += p_next - X.shape[1]
            X = _fill(X, basis, randn, p_next)
        basis.append(X)

    vectors = basis.Q if keep_vectors else None
    return KrylovResult(
        top=_pairs("top", top_pairs, vectors),
        bottom=_pairs("bottom", bottom_pairs, vectors),
        ritz_values=theta,
        num_products=products,
        basis_size=basis.size,
        breakdowns=breakdowns,
        exhausted=exhausted,
        anorm=anorm,
        precision=_precision(anorm, op.dtype),
        null_threshold=rtol * anorm,
        range_start=range_start,
    )


def _grow(T: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size))
    out[: T.shape[0], : T.shape[1]] = T
    return out


def _fill(X: torch.Tensor, basis: _Basis, randn: Callable[[int], torch.Tensor], p: int) -> torch.Tensor:
    """Complete X to p orthonormal columns with random vectors orthogonal to the basis and X."""
    while X.shape[1] < p:
        Z = randn(p - X.shape[1])
        for _ in range(2):
            basis.project_out(Z)
            if X.shape[1]:
                Z -= X @ (X.T @ Z)
        Z = _svqb(Z, 1e-8)
        X = torch.cat([X, Z], dim=1) if X.shape[1] else Z
    return X


_Selected = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _select(
    theta: np.ndarray,
    S: np.ndarray,
    res: np.ndarray,
    top: int,
    bottom: int,
    tol: float,
    precision: float,
    null_thr: float,
    range_start: bool,
) -> tuple[_Selected, _Selected, bool]:
    """Pick the wanted Ritz pairs at each end, bound their errors, test convergence."""
    s = theta.shape[0]
    # Gap to the nearest other eigenvalue, made conservative: a neighbour's eigenvalue is only
    # known to lie within its own residual. With no neighbour the gap is unknown (zero).
    gaps = np.zeros(s)
    if s > 1:
        d = np.abs(theta[:, None] - theta[None, :]) - res[None, :]
        np.fill_diagonal(d, np.inf)
        gaps = np.maximum(d.min(axis=1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        refined = np.where(gaps > res, res**2 / np.where(gaps > 0, gaps, 1.0), res)
    bounds = np.maximum(np.minimum(res, refined), precision)
    conv = bounds <= np.maximum(tol * np.abs(theta), precision)
    top_idx = np.arange(s - 1, max(s - 1 - top, -1), -1)
    candidates = np.arange(s)
    if range_start:
        candidates = candidates[theta > null_thr]
    bot_idx = candidates[:bottom]

    def pack(idx: np.ndarray) -> _Selected:
        return theta[idx], res[idx], bounds[idx], conv[idx], S[:, idx]

    done = (
        len(top_idx) == top
        and len(bot_idx) == bottom
        and bool(conv[top_idx].all())
        and bool(conv[bot_idx].all())
    )
    return pack(top_idx), pack(bot_idx), done


def _pairs(which: Literal["top", "bottom"], sel: _Selected | None, Q: torch.Tensor | None) -> Eigenpairs:
    if sel is None:
        return Eigenpairs.empty(which)
    values, res, bounds, conv, coeffs = sel
    vectors = None
    if Q is not None and len(values):
        vectors = Q @ torch.as_tensor(coeffs, dtype=torch.float64, device=Q.device)
    return Eigenpairs.build(which, values, res, bounds, conv, vectors)
