"""Block Lanczos as a resumable state machine (see :mod:`hessiankit.solvers.lanczos` for the
algorithm): ask for a block, give back its product."""

from __future__ import annotations

import math

import numpy as np
import torch

from hessiankit.errors import OperatorError
from hessiankit.solvers.condition import coarser_dtype, default_rank_rtol, iterative_floor
from hessiankit.solvers.krylov_basis import KrylovBasis, fill_block, svqb
from hessiankit.solvers.lanczos_checkpoint import Checkpointing
from hessiankit.solvers.policy import krylov_budget
from hessiankit.solvers.results import KrylovResult
from hessiankit.solvers.ritz import Selected, ritz_pairs, select_ritz
from hessiankit.solvers.options import KrylovOptions, check_request

__all__ = ["LanczosIteration"]

#: Rayleigh-Ritz runs at every step while the basis holds at most this many vectors, then on
#: a schedule: at every ``_GROWTH`` relative growth of the basis, or sooner when predicted.
_EVERY_STEP = 192
_GROWTH = 0.05


class LanczosIteration(Checkpointing):
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

        it = LanczosIteration(op.dim, op.dtype, op.device, KrylovOptions(top=3), is_psd=op.is_psd)
        while (X := it.pending()) is not None:
            it.feed(op.matmat(X))
        result = it.result()
    """

    def __init__(
        self,
        n: int,
        dtype: torch.dtype,
        device: torch.device | str,
        options: KrylovOptions | None = None,
        *,
        is_psd: bool | None = None,
    ) -> None:
        """An iteration for the run ``options`` describes (default: :class:`KrylovOptions`'s
        defaults) on an operator of dimension ``n`` whose products have ``dtype``."""
        o = options if options is not None else KrylovOptions()
        top, bottom, tol, start = o.top, o.bottom, o.tol, o.start
        rank_rtol, max_basis_bytes, basis_dtype = o.rank_rtol, o.max_basis_bytes, o.basis_dtype
        check_request(top, bottom, n)
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
        self.p = p = max(1, min(int(o.block_size), n))
        self.tol = float(tol)
        self.seed = int(o.seed)
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
        self.budget = int(o.max_products or krylov_budget(n, top, bottom, p, self.range_start))
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
            and self.tol >= iterative_floor(1.0, torch.float32)
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
                    f"max_basis_bytes to {need * item * n} or ask for fewer eigenvalues"
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
        self._basis = KrylovBasis(n, self.device, store, 4 * p + 64, max_basis_bytes)
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
        return default_rank_rtol(self.n, coarser_dtype(self.dtype, self._basis.dtype))

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
        X = svqb(svqb(X, 0.0), 0.0)
        if X.shape[1] < self.p:  # A times random is rank deficient: fill from random
            X = fill_block(X, self._basis, self._randn, self.p)
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
        Xn = svqb(W, 10.0 * self._eps * self.anorm)
        if Xn.shape[1] > 0:
            basis.project_out(Xn)
            Xn = svqb(Xn, 0.5)
        if Xn.shape[1] > p_next:
            Xn = Xn[:, :p_next]
        if Xn.shape[1] < p_next:
            self.breakdowns += p_next - Xn.shape[1]
            Xn = fill_block(Xn, basis, self._randn, p_next)
        if not basis.fits(Xn.shape[1]) and self._may_spill:
            basis.spill()
        if not basis.fits(Xn.shape[1]):
            self._restart(*self._ritz())
            self._next_check = 0  # the restarted basis is small: check at the next step
        self._X = basis.append(Xn)
        self.peak_bytes = max(self.peak_bytes, basis.nbytes)

    def _schedule(self, s: int, sel_top: Selected, sel_bot: Selected) -> None:
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
            floor = iterative_floor(self.anorm, self.dtype, self._basis.dtype)
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
    ) -> tuple[Selected, Selected, bool]:
        return select_ritz(
            theta,
            S,
            res,
            self.top,
            self.bottom,
            self.tol,
            iterative_floor(self.anorm, self.dtype, self._basis.dtype),
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
            top=ritz_pairs("top", top_pairs, basis),
            bottom=ritz_pairs("bottom", bottom_pairs, basis),
            ritz_values=theta,
            num_products=self.products,
            basis_size=self._basis.size,
            breakdowns=self.breakdowns,
            exhausted=self.exhausted,
            anorm=self.anorm,
            precision=iterative_floor(self.anorm, self.dtype, self._basis.dtype),
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
