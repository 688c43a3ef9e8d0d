"""The Krylov basis of block Lanczos: storage (float64 or float32, spill in place, thick
restart in place) and SVQB block orthonormalisation (Stathopoulos & Wu 2002)."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["KrylovBasis", "fill_block", "svqb"]

#: Size of the float64 workspace a float32 basis is cast into, chunk by chunk (at least one
#: vector): the only memory a float32 basis needs beyond its own.
_CHUNK_BYTES = 2**22


class KrylovBasis:
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


def svqb(W: torch.Tensor, threshold: float) -> torch.Tensor:
    """Orthonormal basis of W's directions with singular value above ``threshold``."""
    G = W.T @ W
    evals, V = torch.linalg.eigh(G)
    keep = evals > threshold * threshold
    if not bool(keep.any()):
        return W[:, :0]
    out: torch.Tensor = W @ (V[:, keep] / evals[keep].sqrt())
    return out


def fill_block(
    X: torch.Tensor, basis: KrylovBasis, randn: Callable[[int], torch.Tensor], p: int
) -> torch.Tensor:
    """Complete X to p orthonormal columns with random vectors orthogonal to the basis and X."""
    while X.shape[1] < p:
        Z = randn(p - X.shape[1])
        for _ in range(2):
            basis.project_out(Z)
            if X.shape[1]:
                Z -= X @ (X.T @ Z)
        Z = svqb(Z, 1e-8)
        X = torch.cat([X, Z], dim=1) if X.shape[1] else Z
    return X
