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

T, the Gram-Schmidt coefficients and every projection are float64 whatever the operator's
dtype; the basis is stored in float64, or in float32 (half the memory) for a float32 operator
or when a memory budget requires it (see :class:`LanczosIteration`); vectors stay on the
operator's device. A block size p >= the largest multiplicity among the wanted eigenvalues finds every copy
(a Linear block's weight local Hessian repeats each eigenvalue ``out_features`` times);
single-vector Lanczos (p = 1) is cheapest for distinct eigenvalues.

Example:
    >>> import torch
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers import lanczos
    >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64)))
    >>> r = lanczos(A, top=2, bottom=1, tol=1e-10, seed=0)
    >>> [round(float(v), 8) for v in r.top.eigenvalues], round(float(r.bottom.eigenvalues[0]), 8)
    ([100.0, 99.0], 1.0)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.policy import krylov_budget
from hessiankit.solvers.results import Eigenpairs, KrylovResult

__all__ = ["KrylovResult", "LanczosIteration", "default_rank_rtol", "lanczos"]

Start = Literal["auto", "random", "range"]
BasisDtype = Literal["auto", "float64", "float32"]
ProgressFn = Callable[[int, int], None]


def default_rank_rtol(dim: int, dtype: torch.dtype) -> float:
    """Relative threshold below which an eigenvalue counts as zero: ``10 sqrt(n) eps(dtype)``."""
    return 10.0 * math.sqrt(max(dim, 1)) * torch.finfo(dtype).eps


def _coarser(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    return a if torch.finfo(a).eps >= torch.finfo(b).eps else b


def _precision(anorm: float, dtype: torch.dtype, basis: torch.dtype = torch.float64) -> float:
    """``100 eps ||A||`` with eps the coarser of the products' and the basis storage's."""
    return 100.0 * torch.finfo(_coarser(dtype, basis)).eps * anorm


#: Rayleigh-Ritz runs at every step while the basis holds at most this many vectors, then on
#: a schedule: at every ``_GROWTH`` relative growth of the basis, or sooner when predicted.
_EVERY_STEP = 192
_GROWTH = 0.05

#: Size of the float64 workspace a float32 basis is cast into, chunk by chunk (at least one
#: vector): the only memory a float32 basis needs beyond its own.
_CHUNK_BYTES = 2**22


class _Basis:
    """A growing orthonormal basis, its vectors stored as the rows of a ``(capacity, n)`` array.

    Rows keep every vector contiguous, which gives two things: (i) a float64 basis converts to
    float32 *in place* (:meth:`spill`: the float32 rows fill the first half of the same memory,
    so the capacity doubles without a copy), and (ii) a thick restart overwrites the basis with
    its combinations one stripe of coordinates at a time (:meth:`restart`). Whatever the
    storage, products with the basis are accumulated in float64: a float32 basis is cast chunk
    by chunk into one reused float64 workspace of ``_CHUNK_BYTES`` (or one vector), never as a
    whole.
    """

    def __init__(
        self,
        n: int,
        device: torch.device,
        dtype: torch.dtype,
        capacity: int,
        limit_bytes: int | None = None,
    ) -> None:
        self.n = n
        self.dtype = dtype
        self.limit_bytes = limit_bytes
        self._V = torch.empty((max(1, min(capacity, self.limit)), n), dtype=dtype, device=device)
        self.size = 0
        self._rows = max(1, _CHUNK_BYTES // (8 * n))  # vectors per float64 chunk
        self._work: torch.Tensor | None = None

    @property
    def itemsize(self) -> int:
        return self._V.element_size()

    @property
    def limit(self) -> int:
        """The most vectors the budget holds in the current dtype."""
        return self.limit_for(self.dtype)

    def limit_for(self, dtype: torch.dtype) -> int:
        if self.limit_bytes is None:
            return self.n
        return min(self.n, self.limit_bytes // (torch.finfo(dtype).bits // 8 * self.n))

    @property
    def nbytes(self) -> int:
        return self.size * self.n * self.itemsize

    @property
    def Q(self) -> torch.Tensor:
        """The ``n x size`` basis in its storage dtype (a view)."""
        return self._V[: self.size].T

    def fits(self, k: int) -> bool:
        return self.size + k <= self.limit

    def append(self, X: torch.Tensor) -> torch.Tensor:
        """Store the float64 columns of X; return them as stored (rounded to float32 if so)."""
        k = X.shape[1]
        need = self.size + k
        if need > self._V.shape[0]:
            grown = torch.empty(
                (min(self.limit, max(need, 2 * self._V.shape[0])), self.n),
                dtype=self.dtype,
                device=self._V.device,
            )
            grown[: self.size] = self._V[: self.size]
            self._V = grown
        self._V[self.size : need] = X.T
        self.size = need
        if self.dtype == torch.float64:
            return X
        # The pending block must be exactly the stored vectors, else A Q = Q T + W E^T breaks.
        return self._V[need - k : need].T.to(torch.float64)

    def spill(self) -> None:
        """Convert a float64 basis to float32 in place (halves its bytes, doubles its capacity).

        Row i's float32 values take bytes ``[4 n i, 4 n (i+1))``: for i >= 1 these overlap only
        float64 rows below i/2, already converted; rows ``[a, 2a)`` therefore convert at once.
        """
        if self.dtype != torch.float64:
            return
        V64 = self._V
        V32 = V64.view(torch.float32).view(2 * V64.shape[0], self.n)
        if self.size:
            first = V64[0].to(torch.float32)  # row 0 overlaps itself: through a copy
            a = 1
            while a < self.size:
                b = min(2 * a, self.size)
                V32[a:b].copy_(V64[a:b])
                a = b
            V32[0].copy_(first)
        self._V, self.dtype = V32, torch.float32

    def _chunks(self) -> list[tuple[int, int]]:
        if self.dtype == torch.float64:
            return [(0, self.size)]
        return [(a, min(a + self._rows, self.size)) for a in range(0, self.size, self._rows)]

    def _workspace(self) -> torch.Tensor:
        if self._work is None:
            self._work = torch.empty(
                (self._rows, self.n), dtype=torch.float64, device=self._V.device
            )
        return self._work

    def _rows64(self, a: int, b: int) -> torch.Tensor:
        """Vectors a..b-1 as float64 rows: a view of a float64 basis, else the workspace."""
        if self.dtype == torch.float64:
            return self._V[a:b]
        return self._workspace()[: b - a].copy_(self._V[a:b])

    def project_out(self, W: torch.Tensor) -> torch.Tensor:
        """Coefficients ``Q^T W`` (two passes) and W minus its projection, in place, float64.

        A float64 basis is one block (classical Gram-Schmidt twice); a float32 one is cast to
        float64 chunk by chunk, each chunk projected out before the next (block Gram-Schmidt).
        """
        H = torch.zeros((self.size, W.shape[1]), dtype=torch.float64, device=W.device)
        for _ in range(2):
            for a, b in self._chunks():
                C = self._rows64(a, b)
                h = C @ W
                W -= C.T @ h
                H[a:b] += h
        return H

    def combine(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``Q @ coeffs`` in float64 (Ritz vectors)."""
        out = torch.zeros((self.n, coeffs.shape[1]), dtype=torch.float64, device=coeffs.device)
        for a, b in self._chunks():
            out += self._rows64(a, b).T @ coeffs[a:b]
        return out

    def restart(self, coeffs: torch.Tensor) -> None:
        """Replace the basis by ``Q @ coeffs`` in place, a stripe of coordinates at a time."""
        s, k = self.size, coeffs.shape[1]
        flat = self._workspace().view(-1)
        width = max(1, flat.shape[0] // max(s, 1))
        for a in range(0, self.n, width):
            cols = min(width, self.n - a)
            stripe = flat[: s * cols].view(s, cols).copy_(self._V[:s, a : a + cols])
            self._V[:k, a : a + cols] = coeffs.T @ stripe
        self.size = k

    def reset(self, Y: torch.Tensor) -> None:
        """Replace the basis by the columns of Y, stored in Y's dtype (resume)."""
        self.dtype = Y.dtype
        k = Y.shape[1]
        cols = max(min(self._V.shape[0], self.limit), k, 1)
        self._V = torch.empty((cols, self.n), dtype=Y.dtype, device=Y.device)
        self._V[:k] = Y.T
        self.size = k


def _svqb(W: torch.Tensor, threshold: float) -> torch.Tensor:
    """Orthonormal basis of W's directions with singular value above ``threshold``."""
    G = W.T @ W
    evals, V = torch.linalg.eigh(G)
    keep = evals > threshold * threshold
    if not bool(keep.any()):
        return W[:, :0]
    out: torch.Tensor = W @ (V[:, keep] / evals[keep].sqrt())
    return out


class LanczosIteration:
    """Block Lanczos as a resumable state machine: ask for a block, give back its product.

    :func:`lanczos` drives one of these against one operator. Holding the iteration apart from
    the operator lets a caller (i) drive several iterations with one product call (every
    block's local Hessian at once, :mod:`hessiankit.operators.all_blocks`), and (ii) save the
    Krylov state to a file and resume after an interruption with bit-identical results.

    Memory budget: the basis holds ``k`` vectors of length n, stored in float64 or float32
    (``basis_dtype``); T, the Gram-Schmidt coefficients and every projection are float64
    whatever the storage. With ``max_basis_bytes``:

    1. *spill* (``basis_dtype="auto"``): when the next block would not fit in float64, the basis
       is converted to float32 in place (half the bytes) and the run goes on unchanged;
    2. *thick restart* (Wu & Simon 2000): when it would not fit in the storage dtype either,
       the basis is replaced by the wanted Ritz vectors (plus as many neighbours as fit in half
       the budget) followed by the pending block. With full reorthogonalisation,
       ``T = Q^T A Q`` is rebuilt by projection, so after a restart it is ``diag(theta)`` on
       the kept vectors and the next products fill in the rest.

    A float32 basis is orthonormal only to about eps(float32): T then differs from the exact
    Rayleigh quotient, and the computed residuals from the true ones, by ``O(eps32 ||A||)``,
    so the precision floor becomes ``100 eps(float32) ||A||`` (about ``1.2e-5 ||A||``) - the
    floor a float32 operator's products have anyway. ``basis_dtype="auto"`` therefore stores a
    float32 operator's basis in float32 from the start, and spills a float64 operator's basis
    only when ``tol`` is at least that floor (a tighter tolerance restarts instead).

    Usage::

        it = LanczosIteration(op.dim, op.dtype, op.device, top=3, is_psd=op.is_psd)
        while (X := it.pending()) is not None:
            it.feed(op.matmat(X))
        result = it.result()
    """

    def __init__(
        self,
        n: int,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        top: int = 1,
        bottom: int = 0,
        block_size: int = 1,
        tol: float = 1e-6,
        max_products: int | None = None,
        seed: int = 0,
        start: Start | torch.Tensor = "auto",
        is_psd: bool | None = None,
        rank_rtol: float | None = None,
        max_basis_bytes: int | None = None,
        basis_dtype: BasisDtype = "auto",
    ) -> None:
        if top < 0 or bottom < 0 or top + bottom < 1:
            raise OperatorError("ask for at least one eigenvalue (top >= 1 or bottom >= 1)")
        if top > n or bottom > n:
            raise OperatorError(
                f"asked for {max(top, bottom)} eigenvalues of an operator of dimension {n}; "
                f"ask for at most {n}"
            )
        given = _given_start(start, n) if torch.is_tensor(start) else None
        if given is None and start not in ("auto", "random", "range"):
            raise OperatorError(
                f"unknown start {start!r}; use 'auto', 'random', 'range' or an n x k tensor"
            )
        if basis_dtype not in ("auto", "float64", "float32"):
            raise OperatorError(
                f"unknown basis_dtype {basis_dtype!r}; use 'auto', 'float64' or 'float32'"
            )
        self.n = n
        self.dtype = dtype
        self.device = torch.device(device)
        self.top = top
        self.bottom = bottom
        self.p = p = max(1, min(int(block_size), n))
        self.tol = float(tol)
        self.seed = int(seed)
        self.range_start = given is None and (
            start == "range" or (start == "auto" and is_psd is True)
        )
        # Identifies a given start in checkpoints (its values, not the tensor object).
        self._start_key = (
            None
            if given is None
            else [list(given.shape), float(given.abs().sum()), float(given.sum())]
        )
        # The default budget reaches an exhausted space (every eigenvalue exact) whenever
        # n <= the cap: n products for the basis plus the range start's p, which is not in it.
        self.budget = int(max_products or krylov_budget(n, top, bottom, p, self.range_start))
        self._rank_rtol = None if rank_rtol is None else float(rank_rtol)
        self._eps = torch.finfo(dtype).eps
        self.basis_option = basis_dtype
        low = torch.finfo(dtype).eps >= torch.finfo(torch.float32).eps
        store = (
            torch.float32
            if basis_dtype == "float32" or (basis_dtype == "auto" and low)
            else torch.float64
        )
        self._may_spill = (
            basis_dtype == "auto"
            and store == torch.float64
            and self.tol >= _precision(1.0, torch.float32)
        )
        if max_basis_bytes is not None:
            item = 4 if self._may_spill else torch.finfo(store).bits // 8
            columns = min(n, int(max_basis_bytes) // (item * n))
            # Room for the wanted vectors and two blocks, and the basis a claim about the
            # smallest eigenvalues waits for (see _step).
            need = max(top + bottom + 2 * p, self._bottom_claim_size())
            if columns < min(n, need):
                raise OperatorError(
                    f"a Krylov basis budget of {max_basis_bytes} bytes holds "
                    f"{columns} vectors of length {n} in {'float32' if item == 4 else 'float64'}; "
                    f"this run needs at least {need} (top + bottom + 2 x block size, and "
                    f"max(20, 3 (top + bottom) + 2 x block size) with bottom): raise "
                    f"max_basis_bytes to {need * item * n} (--max-basis-mib "
                    f"{need * item * n / 2**20:.3g}) or ask for fewer eigenvalues"
                )
        self.max_basis_bytes = max_basis_bytes
        self._gen = torch.Generator().manual_seed(self.seed)
        self.products = 0
        self.breakdowns = 0
        self.restarts = 0
        self.anorm = 0.0
        self.exhausted = False
        self.finished = False
        self.peak_bytes = 0
        self._basis = _Basis(n, self.device, store, 4 * p + 64, max_basis_bytes)
        self._T = np.zeros((16, 16))
        self._G = np.zeros((0, 0))
        self._s0 = 0
        self._phase = "start" if self.range_start else "iterate"
        self._cache: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._next_check = 0  # basis size of the next Rayleigh-Ritz check
        self._last_check: tuple[int, float] = (0, math.inf)  # (size, log bound / target)
        X = self._randn(p)
        if given is not None:
            # The given directions, each with a tenth of a random one: a start that lacks an
            # eigenvector never finds it, random components rule that out almost surely.
            k = min(given.shape[1], p)
            G = given[:, :k].to(self.device) / given[:, :k].norm(dim=0, keepdim=True)
            X = X.clone()
            X[:, :k] = G + 0.1 * X[:, :k] / X[:, :k].norm(dim=0, keepdim=True)
        if not self.range_start:
            X = self._orthonormal_start(X)
        self._X = X

    def _bottom_claim_size(self) -> int:
        """Basis size before which no claim about the smallest eigenvalues is made (0: none)."""
        if not self.bottom:
            return 0
        return max(20, 3 * (self.top + self.bottom) + 2 * self.p)

    @property
    def rtol(self) -> float:
        """Relative null threshold: given, or :func:`default_rank_rtol` of the coarser of the
        products' and the basis storage's dtype (a float32 basis leaks null directions in at
        about eps(float32), which must not count as rank)."""
        if self._rank_rtol is not None:
            return self._rank_rtol
        return default_rank_rtol(self.n, _coarser(self.dtype, self._basis.dtype))

    # -- the protocol -------------------------------------------------------------------------
    def pending(self) -> torch.Tensor | None:
        """The float64 ``n x k`` block whose product is needed next, ``None`` when finished."""
        return None if self.finished else self._X

    def feed(self, AX: torch.Tensor) -> None:
        """Give the product ``A @ pending()`` (any float dtype, the operator's device)."""
        if self.finished:
            raise OperatorError("this Lanczos iteration has finished; read its result()")
        W = AX.to(device=self.device, dtype=torch.float64)
        if W.shape != self._X.shape:
            raise OperatorError(
                f"expected a product of shape {tuple(self._X.shape)}, got {tuple(W.shape)}"
            )
        self.products += self._X.shape[1]
        if self._phase == "start":
            self._phase = "iterate"
            self._X = self._orthonormal_start(W)
            return
        self._step(W)

    # -- the algorithm ------------------------------------------------------------------------
    def _randn(self, k: int) -> torch.Tensor:
        # Drawn on the CPU so results do not depend on the device.
        return torch.randn((self.n, k), generator=self._gen, dtype=torch.float64).to(self.device)

    def _orthonormal_start(self, X: torch.Tensor) -> torch.Tensor:
        X = _svqb(_svqb(X, 0.0), 0.0)
        if X.shape[1] < self.p:  # A times random is rank deficient: fill from random
            X = _fill(X, self._basis, self._randn, self.p)
        X = self._basis.append(X)
        self.peak_bytes = max(self.peak_bytes, self._basis.nbytes)
        return X

    def _step(self, W: torch.Tensor) -> None:
        basis, X = self._basis, self._X
        s0 = basis.size - X.shape[1]
        H = basis.project_out(W).cpu().numpy()
        s = basis.size
        if s > self._T.shape[0]:
            self._T = _grow(self._T, max(s, 2 * self._T.shape[0]))
        T = self._T
        T[:s, s0:s] = H
        T[s0:s, :s] = H.T
        T[s0:s, s0:s] = 0.5 * (H[s0:s] + H[s0:s].T)
        self._s0 = s0
        self._G = (W.T @ W).cpu().numpy()
        self._cache = None
        self.exhausted = s >= self.n and self.restarts == 0
        done = False
        # Rayleigh-Ritz costs O(s^3): it runs on a schedule (see _schedule), not every step.
        if self.exhausted or s >= self._next_check:
            theta, S, res = self._ritz()
            sel_top, sel_bot, done = self._selection(theta, S, res)
            # A Krylov space of a few vectors can hold a converged Ritz pair that is not at the
            # bottom (e.g. a range start A r is dominated by the top eigenvectors): no claim
            # about the smallest eigenvalues before the basis has room to have found them.
            if s < min(self.n, self._bottom_claim_size()):
                done = False
            self._schedule(s, sel_top, sel_bot)
        # The last block before the space is exhausted can be narrower than p.
        p_next = min(self.p, self.n - s) if self.restarts == 0 else self.p
        if done or self.exhausted or self.products + p_next > self.budget:
            self.finished = True
            return
        # Next block: W's directions above the breakdown threshold, random fill for the rest.
        Xn = _svqb(W, 10.0 * self._eps * self.anorm)
        if Xn.shape[1] > 0:
            basis.project_out(Xn)
            Xn = _svqb(Xn, 0.5)
        if Xn.shape[1] > p_next:
            Xn = Xn[:, :p_next]
        if Xn.shape[1] < p_next:
            self.breakdowns += p_next - Xn.shape[1]
            Xn = _fill(Xn, basis, self._randn, p_next)
        if not basis.fits(Xn.shape[1]) and self._may_spill:
            basis.spill()
        if not basis.fits(Xn.shape[1]):
            self._restart(*self._ritz())
            self._next_check = 0  # the restarted basis is small: check at the next step
        self._X = basis.append(Xn)
        self.peak_bytes = max(self.peak_bytes, basis.nbytes)

    def _schedule(self, s: int, sel_top: _Selected, sel_bot: _Selected) -> None:
        """Basis size of the next Rayleigh-Ritz check.

        Every step while the basis is small (an eigh of ``_EVERY_STEP`` vectors costs about a
        millisecond); beyond, at the next ~5% of growth, or earlier where the wanted error
        bounds, extrapolated log-linearly from the last two checks, would meet the tolerance
        (halfway there, so convergence is rarely overshot by more than a block). The schedule
        depends on the numbers only, never on timing: a resumed run repeats it exactly.
        """
        need = (self.top - len(sel_top[0])) + (self.bottom - len(sel_bot[0]))
        worst = math.inf
        if not need:
            bounds = np.concatenate([sel_top[2], sel_bot[2]])
            theta = np.concatenate([sel_top[0], sel_bot[0]])
            floor = _precision(self.anorm, self.dtype, self._basis.dtype)
            target = np.maximum(self.tol * np.abs(theta), floor)
            worst = float(np.max(np.log(bounds / target))) if bounds.size else 0.0
        nxt = s + max(self.p, math.ceil(_GROWTH * s))
        last_s, last_worst = self._last_check
        if 0 < worst < last_worst and math.isfinite(last_worst) and s > last_s:
            ahead = worst * (s - last_s) / (last_worst - worst)
            nxt = min(nxt, s + max(self.p, int(0.5 * ahead)))
        self._next_check = 0 if s < _EVERY_STEP else nxt
        self._last_check = (s, worst)

    def _ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self._basis.size
        if self._cache is not None and self._cache[0] == s:
            return self._cache[1]
        theta, S = np.linalg.eigh(self._T[:s, :s])
        last = S[self._s0 : s, :]
        res = np.sqrt(np.maximum(np.einsum("ik,ij,jk->k", last, self._G, last), 0.0))
        if s >= self.n and self.restarts == 0:
            res = np.zeros_like(res)
        self.anorm = max(self.anorm, float(np.abs(theta).max()))
        self._cache = (s, (theta, S, res))
        return theta, S, res

    def _selection(
        self, theta: np.ndarray, S: np.ndarray, res: np.ndarray
    ) -> tuple[_Selected, _Selected, bool]:
        return _select(
            theta,
            S,
            res,
            self.top,
            self.bottom,
            self.tol,
            _precision(self.anorm, self.dtype, self._basis.dtype),
            self.rtol * self.anorm,
            self.range_start,
        )

    def _restart(self, theta: np.ndarray, S: np.ndarray, res: np.ndarray) -> None:
        """Thick restart: keep the wanted Ritz vectors (and neighbours) in half the budget."""
        s, limit = theta.shape[0], self._basis.limit
        room = max(self.top + self.bottom, (limit - self.p) // 2)
        room = min(room, limit - self.p, s)
        order = np.arange(s)
        if self.range_start and self.bottom:
            low = order[theta > self.rtol * self.anorm]
        else:
            low = order
        high = order[::-1]
        if self.top and self.bottom:
            n_bot = max(self.bottom, room * self.bottom // (self.top + self.bottom))
            n_top = room - n_bot
        elif self.top:
            n_top, n_bot = room, 0
        else:
            n_top, n_bot = 0, room
        wanted = dict.fromkeys([*high[:n_top].tolist(), *low[:n_bot].tolist()])
        keep = np.array(sorted(wanted, key=lambda i: theta[i]))
        self._basis.restart(torch.as_tensor(S[:, keep], dtype=torch.float64, device=self.device))
        k = len(keep)
        self._T = np.zeros((max(16, 2 * k), max(16, 2 * k)))
        self._T[np.arange(k), np.arange(k)] = theta[keep]
        self.restarts += 1
        self._cache = None
        self._last_check = (0, math.inf)  # sizes before and after a restart do not compare

    # -- results ------------------------------------------------------------------------------
    def result(self, *, keep_vectors: bool = False) -> KrylovResult:
        """The Ritz pairs of the current basis (final once :attr:`finished`)."""
        if self._phase == "start" or self._G.size == 0:
            raise OperatorError(
                "no Lanczos step has run yet; feed products until pending() is None"
            )
        theta, S, res = self._ritz()
        top_pairs, bottom_pairs, _ = self._selection(theta, S, res)
        basis = self._basis if keep_vectors else None
        return KrylovResult(
            top=_pairs("top", top_pairs, basis),
            bottom=_pairs("bottom", bottom_pairs, basis),
            ritz_values=theta,
            num_products=self.products,
            basis_size=self._basis.size,
            breakdowns=self.breakdowns,
            exhausted=self.exhausted,
            anorm=self.anorm,
            precision=_precision(self.anorm, self.dtype, self._basis.dtype),
            null_threshold=self.rtol * self.anorm,
            rank_rtol=self.rtol,
            range_start=self.range_start,
            restarts=self.restarts,
            basis_bytes=self.peak_bytes,
            max_basis_bytes=self.max_basis_bytes,
            basis_dtype=str(self._basis.dtype).replace("torch.", ""),
            budget=self.budget,
            block_size=self.p,
        )

    # -- checkpoints --------------------------------------------------------------------------
    def _config(self) -> dict[str, object]:
        return {
            "n": self.n,
            "dtype": str(self.dtype),
            "top": self.top,
            "bottom": self.bottom,
            "p": self.p,
            "tol": self.tol,
            "seed": self.seed,
            "range_start": self.range_start,
            "start": self._start_key,
            "budget": self.budget,
            "rtol": self._rank_rtol,
            "max_basis_bytes": self.max_basis_bytes,
            "basis_dtype": self.basis_option,
        }

    def state_dict(self) -> dict[str, object]:
        """The whole Krylov state as tensors and plain numbers (loads with ``weights_only``)."""
        s = self._basis.size
        return {
            "version": _CHECKPOINT_VERSION,
            "config": json.dumps(self._config(), sort_keys=True),
            "Q": self._basis.Q.detach().cpu().clone(),
            "T": torch.from_numpy(self._T[:s, :s].copy()),
            "G": torch.from_numpy(self._G.copy()),
            "X": self._X.detach().cpu().clone(),
            "generator": self._gen.get_state(),
            "counters": torch.tensor(
                [
                    self.products,
                    self.breakdowns,
                    self.restarts,
                    self._s0,
                    self.peak_bytes,
                    int(self.exhausted),
                    int(self.finished),
                    int(self._phase == "start"),
                ],
                dtype=torch.int64,
            ),
            "anorm": self.anorm,
            "schedule": torch.tensor([self._next_check, *self._last_check], dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a :meth:`state_dict` written by an iteration with the same settings.

        Raises:
            OperatorError: the state was written by a run with other settings.
        """
        if state.get("version") != _CHECKPOINT_VERSION or state.get("config") != json.dumps(
            self._config(), sort_keys=True
        ):
            raise OperatorError(
                "the Krylov checkpoint was written by a run with other settings (operator "
                "dimension, dtype, top/bottom, block size, tol, seed or basis budget); delete it "
                "or use another path"
            )

        def tensor(key: str) -> torch.Tensor:
            value = state.get(key)
            if not isinstance(value, torch.Tensor):
                raise OperatorError(
                    f"the Krylov checkpoint is damaged (no tensor {key!r}); delete it or use "
                    "another path"
                )
            return value

        Q, T, G, X = tensor("Q"), tensor("T"), tensor("G"), tensor("X")
        if (
            Q.dtype not in (torch.float32, torch.float64)
            or Q.dim() != 2
            or Q.shape[0] != self.n
            or Q.shape[1] > self._basis.limit_for(Q.dtype)
        ):
            raise OperatorError(
                "the Krylov checkpoint is damaged (its basis does not fit this run); delete it "
                "or use another path"
            )
        gen_state, counters = tensor("generator"), tensor("counters")
        schedule = [float(v) for v in tensor("schedule").tolist()]
        self._basis.reset(Q.to(self.device))
        s = Q.shape[1]
        self._T = np.zeros((max(16, 2 * s), max(16, 2 * s)))
        self._T[:s, :s] = T.numpy()
        self._G = G.numpy()
        self._X = X.to(self.device)
        self._gen.set_state(gen_state)
        c = [int(v) for v in counters.tolist()]
        self.products, self.breakdowns, self.restarts, self._s0, self.peak_bytes = c[:5]
        self.exhausted, self.finished = bool(c[5]), bool(c[6])
        self._phase = "start" if c[7] else "iterate"
        self.anorm = float(state["anorm"])  # type: ignore[arg-type]
        self._next_check, self._last_check = int(schedule[0]), (int(schedule[1]), schedule[2])
        self._cache = None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Resume from a file written by :meth:`save` (tensors only: ``weights_only=True``)."""
        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            raise OperatorError(
                f"cannot read the Krylov checkpoint {str(path)!r} ({type(exc).__name__}); "
                "delete it to start afresh"
            ) from None
        if not isinstance(state, dict):
            raise OperatorError(
                f"{str(path)!r} is not a Krylov checkpoint; delete it or use another path"
            )
        self.load_state_dict(state)


_CHECKPOINT_VERSION = 3


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

    Raises:
        OperatorError: ``top``/``bottom`` out of range, a budget too small for the request,
            or a checkpoint written by a run with other settings.
    """
    it = LanczosIteration(
        op.dim,
        op.dtype,
        op.device,
        top=top,
        bottom=bottom,
        block_size=block_size,
        tol=tol,
        max_products=max_products,
        seed=seed,
        start=start,
        is_psd=op.is_psd,
        rank_rtol=rank_rtol,
        max_basis_bytes=max_basis_bytes,
        basis_dtype=basis_dtype,
    )
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


def _given_start(start: torch.Tensor, n: int) -> torch.Tensor:
    """A user's start block as a float64 ``n x k`` matrix of nonzero finite columns."""
    X = start.detach().to(torch.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != n or X.shape[1] < 1:
        raise OperatorError(
            f"a start tensor must have shape ({n},) or ({n}, k), got {tuple(start.shape)}"
        )
    if not bool(torch.isfinite(X).all()) or bool((X.norm(dim=0) == 0).any()):
        raise OperatorError("the start vectors must be finite and nonzero; use start='random'")
    return X


def _grow(T: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size))
    out[: T.shape[0], : T.shape[1]] = T
    return out


def _fill(
    X: torch.Tensor, basis: _Basis, randn: Callable[[int], torch.Tensor], p: int
) -> torch.Tensor:
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


def _pairs(
    which: Literal["top", "bottom"], sel: _Selected | None, basis: _Basis | None
) -> Eigenpairs:
    if sel is None:
        return Eigenpairs.empty(which)
    values, res, bounds, conv, coeffs = sel
    vectors = None
    if basis is not None and len(values):
        vectors = basis.combine(torch.as_tensor(coeffs, dtype=torch.float64, device=basis.Q.device))
    return Eigenpairs.build(which, values, res, bounds, conv, vectors)
