r"""Exact spectra of separable local Hessians: every eigenvalue, rank, nullity and kappa.

When an operator is a direct sum ``A = \bigoplus_p A_p`` over P parts of size d (output channels
of a conv/linear block w.r.t. its weights, or samples w.r.t. its input; see
:mod:`hessiankit.solvers.separable_structure`), its spectrum is the union of the parts' spectra,
and all P blocks come from few products:

``"primal"``
    a tangent with ``e_j`` in **every** part's slot gives, in one product, column j of every
    ``A_p`` (the blocks do not interact): d products for all P blocks (``d x d`` each). Works
    through any operator with the structure (either kind, a data-set mean over batches).
``"dual"``
    for the Gauss-Newton kind ``A_p = c J_p^T J_p``: the output Gram operator
    ``c J J^T`` (:class:`~hessiankit.operators.output_gram.OutputGram`) is block-diagonal over
    the same parts on the output side; r products (r = outputs per part) give every
    ``c J_p J_p^T`` (``r x r``), which has the same nonzero eigenvalues.
``"jacobian"``
    channels of a ``conv/linear -> per-channel steps`` block: every ``J_p`` explicitly
    (:class:`~hessiankit.solvers.separable_jacobian.FactoredJacobian`, no operator products),
    then ``c J_p^T J_p`` or ``c J_p J_p^T`` (the smaller) by batched matrix products.

Then batched float64 ``eigvalsh`` over the stack of blocks. The whole spectrum is the union,
completed by exact zeros where a Gram side is smaller than d. Nothing iterates, so every
eigenvalue is converged; its error is bounded as for a dense matrix (the asymmetry of the
materialised blocks plus rounding, :mod:`hessiankit.solvers.dense`), and the residual of each
reported eigenpair is measured on its block. Blocks are formed in groups that fit ``max_bytes``.

Example:
    >>> net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU()).double()
    >>> cap = hk.capture(net, torch.randn(4, 2, 5, 5, dtype=torch.float64), bn="train")
    >>> op = hk.LocalHessian(cap, 1)
    >>> r = separable_spectrum(op, top=2)
    >>> dense = torch.linalg.eigvalsh(op.to_dense())
    >>> r.method, r.dimension, bool(abs(r.top.eigenvalues[0] - dense[-1]) < 1e-10 * dense[-1])
    ('separable-jacobian', 63, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from hessiankit.errors import NumericalError, OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.operators.local import LocalHessian
from hessiankit.operators.output_gram import OutputGram
from hessiankit.solvers.assemble import is_low_precision
from hessiankit.solvers.condition import arithmetic_floor, condition_from_eigenvalues
from hessiankit.solvers.lanczos import default_rank_rtol
from hessiankit.solvers.options import check_request
from hessiankit.solvers.results import ConditionNumber, Eigenpairs, SpectrumResult
from hessiankit.solvers.separable_jacobian import FactoredJacobian
from hessiankit.solvers.separable_structure import SeparableStructure, separability

__all__ = ["Route", "RouteCost", "estimate_cost", "separable_spectrum"]

Route = Literal["auto", "primal", "dual", "jacobian"]

_F64 = 8
_DEFAULT_BYTES = 2 * 2**30


@dataclass(frozen=True)
class RouteCost:
    """What one route needs, for a solver policy to compare with Lanczos or dense.

    Attributes:
        route: ``"primal"``, ``"dual"`` or ``"jacobian"``.
        available: whether the route applies to this operator.
        products: operator products (columns), probe excluded; 0 for ``"jacobian"``.
        jvp_columns: forward-mode columns of the per-channel steps, d per group of channels
            (``"jacobian"`` only; a column's cost is proportional to the channels in its group).
        side: size of each block that goes to ``eigvalsh`` (d or r).
        passes: groups of parts formed one after another to stay within ``max_bytes``.
        bytes: peak working memory (float64 blocks, one group's Jacobians, product chunk).
        eig_flops: about ``(4/3) side^3`` per part, summed.
        note: why a route is not available.
    """

    route: str
    available: bool
    products: int
    jvp_columns: int
    side: int
    passes: int
    bytes: int
    eig_flops: float
    note: str = ""


def _group_size(per_part: int, fixed: int, max_bytes: int, P: int) -> int:
    return max(1, min(P, (max_bytes - fixed) // max(per_part, 1)))


def estimate_cost(
    op: SymmetricOperator,
    structure: SeparableStructure,
    *,
    max_bytes: int = _DEFAULT_BYTES,
) -> dict[str, RouteCost]:
    """Products, memory and eigen-work of each route (no product is run)."""
    P, d = structure.num_parts, structure.part_size
    r = structure.out_part_size
    out: dict[str, RouteCost] = {}
    # primal: P blocks d x d (x3: the block, its symmetrised copy, eigvalsh workspace).
    chunk = _columns_per_call(op.dim, d, max_bytes)
    fixed = 3 * op.dim * chunk * _F64
    q = _group_size(3 * d * d * _F64, fixed, max_bytes, P)
    passes = math.ceil(P / q)
    out["primal"] = RouteCost(
        "primal",
        True,
        d * passes,
        0,
        d,
        passes,
        fixed + 3 * q * d * d * _F64,
        P * 4 / 3 * d**3,
    )
    seen = op.observed
    gn = isinstance(seen, LocalHessian) and seen.kind == "gauss-newton"
    if r is None or not gn:
        out["dual"] = RouteCost("dual", False, 0, 0, 0, 0, 0, 0.0, "no output Gram operator")
    else:
        n_out = P * r
        chunk = _columns_per_call(n_out, r, max_bytes)
        fixed = 3 * n_out * chunk * _F64
        q = _group_size(3 * r * r * _F64, fixed, max_bytes, P)
        passes = math.ceil(P / q)
        out["dual"] = RouteCost(
            "dual", True, r * passes, 0, r, passes, fixed + 3 * q * r * r * _F64, P * 4 / 3 * r**3
        )
    fb = structure.factored
    if fb is None or r is None:
        out["jacobian"] = RouteCost(
            "jacobian", False, 0, 0, 0, 0, 0, 0.0, "not a factored conv/linear block"
        )
    else:
        side = min(d, r)
        # U: the unfolded input patches, (m, weights per filter, *positions); x for Linear.
        u_bytes = (fb.y[:, 0].numel() * d if fb.x.ndim > 2 else fb.x.numel()) * _F64
        per = (r * d + 3 * side * side) * _F64
        fixed = u_bytes + max_bytes // 4
        q = _group_size(per, fixed, max_bytes, P)
        out["jacobian"] = RouteCost(
            "jacobian",
            True,
            0,
            d * math.ceil(P / q),
            side,
            math.ceil(P / q),
            fixed + q * per,
            P * (4 / 3 * side**3 + 2.0 * r * d * side),
        )
    return out


def _columns_per_call(dim: int, cols: int, max_bytes: int) -> int:
    return max(1, min(cols, 64, (max_bytes // 8) // max(3 * dim * _F64, 1)))


def _choose(costs: dict[str, RouteCost], route: Route) -> str:
    if route != "auto":
        if route not in costs:
            raise OperatorError(f"unknown route={route!r}; use auto, primal, dual or jacobian")
        if not costs[route].available:
            raise OperatorError(f"route={route!r} does not apply here: {costs[route].note}")
        return route
    if costs["jacobian"].available:
        return "jacobian"
    ok = [c for c in costs.values() if c.available]
    return min(ok, key=lambda c: (c.products, c.eig_flops)).route


def separable_spectrum(
    op: SymmetricOperator,
    *,
    top: int = 10,
    bottom: int = 1,
    structure: SeparableStructure | None = None,
    rank_rtol: float | None = None,
    max_bytes: int = _DEFAULT_BYTES,
    route: Route = "auto",
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> SpectrumResult:
    """Every eigenvalue of a separable operator from its blocks; the top and bottom pairs.

    Args:
        op: a :class:`LocalHessian` (or a data-set operator of them) with a separable
            structure.
        top: number of largest eigenvalues reported (descending).
        bottom: number of smallest reported (ascending; above the null threshold for PSD
            operators, as dense and Lanczos do).
        structure: from :func:`find_separable_structure` (found here when ``None``).
        rank_rtol: relative threshold under which an eigenvalue counts as zero (default
            ``10 sqrt(n) eps(dtype)``, raised to the measured precision, as the dense path
            does).
        max_bytes: working memory for the blocks and the product chunks.
        route: ``"auto"`` (``"jacobian"`` where it applies, else the fewer products of
            ``"primal"`` and ``"dual"``), or one of them forced.
        progress: called as ``progress(parts_done, parts_total)``.
        seed: seed of the probe's random tangents.

    Returns:
        A :class:`SpectrumResult` with ``method="separable-<route>"``, ``exhausted=True``, the
        whole spectrum in ``eigenvalues`` and rank, nullity and kappa in ``condition``.

    Raises:
        OperatorError: the operator is not separable (with the reason), a route that does not
            apply was forced, or more eigenvalues than the dimension were asked for.
        NumericalError: the Jacobian route disagrees with the operator's own products.
    """
    start = time.perf_counter()
    n = op.dim
    check_request(top, bottom, n)
    before = op.num_products
    if structure is None:
        structure, why = separability(op, seed=seed)
        if structure is None:
            raise OperatorError(f"the operator is not separable: {why}; use spectrum() instead")
    costs = estimate_cost(op, structure, max_bytes=max_bytes)
    chosen = _choose(costs, route)
    runner = _make_runner(chosen, op, structure, max_bytes)
    state = _Accumulator(structure.num_parts, runner.side, top, bottom)
    done = 0
    for idx, M in runner.groups():
        state.add(idx, M)
        done += int(idx.numel())
        if progress is not None:
            progress(done, structure.num_parts)
    result = state.finish(op, structure.part_size, rank_rtol, top, bottom, runner)
    info = dict(op.describe())
    info["separable"] = structure.reason
    return SpectrumResult(
        method=f"separable-{chosen}",
        dimension=n,
        dtype=str(op.dtype).replace("torch.", ""),
        seed=None,
        tol=0.0,
        top=result.top,
        bottom=result.bottom,
        condition=result.condition,
        num_products=op.num_products - before + runner.extra_products,
        seconds=time.perf_counter() - start,
        precision=result.precision,
        exhausted=True,
        eigenvalues=result.eigenvalues,
        operator=info,
        bottom_on_range=op.is_psd is True,
    )


# --- routes: each yields groups of parts with their float64 blocks -------------------------


class _Runner:
    side: int
    extra_products: int = 0
    #: the arithmetic the blocks were formed in (float64 for explicit Jacobians)
    dtype: torch.dtype = torch.float64

    def groups(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(part indices, blocks q x side x side)`` per group, covering every part once."""
        raise NotImplementedError

    def blocks(self, idx: torch.Tensor) -> torch.Tensor:
        """The blocks of the given parts again (for eigenvectors of the reported pairs)."""
        raise NotImplementedError


def _make_runner(
    route: str, op: SymmetricOperator, s: SeparableStructure, max_bytes: int
) -> _Runner:
    if route == "primal":
        return _Replicated(op, s.parts, max_bytes)
    if route == "dual":
        base = op.observed
        assert isinstance(base, LocalHessian) and s.out_parts is not None  # checked by the costs
        gram = OutputGram.of(base)
        return _Replicated(gram, s.out_parts, max_bytes, counted=True)
    base = op.observed
    assert isinstance(base, LocalHessian) and s.factored is not None and s.out_parts is not None
    return _Jacobian(base, s, max_bytes)


class _Replicated(_Runner):
    """Blocks of a direct-sum operator from products with tangents replicated across parts."""

    def __init__(
        self, op: SymmetricOperator, parts: torch.Tensor, max_bytes: int, counted: bool = False
    ) -> None:
        self.op = op
        self.parts = parts
        self.counted = counted
        self.dtype = op.dtype  # the blocks are columns of the operator's own products
        P, self.side = parts.shape
        self.chunk = _columns_per_call(op.dim, self.side, max_bytes)
        fixed = 3 * op.dim * self.chunk * _F64
        self.q = _group_size(3 * self.side**2 * _F64, fixed, max_bytes, P)

    def blocks(self, idx: torch.Tensor) -> torch.Tensor:
        before = self.op.num_products
        parts = self.parts[idx].to(self.op.device)
        q, d = parts.shape
        M = torch.empty((q, d, d), dtype=torch.float64, device=self.op.device)
        for j0 in range(0, d, self.chunk):
            j1 = min(j0 + self.chunk, d)
            V = torch.zeros((self.op.dim, j1 - j0), dtype=self.op.dtype, device=self.op.device)
            cols = torch.arange(j1 - j0, device=self.op.device).expand(q, -1)
            V[parts[:, j0:j1], cols] = 1
            W = self.op.matmat(V)
            M[:, :, j0:j1] = W[parts].to(torch.float64)
        if self.counted:
            self.extra_products += self.op.num_products - before
        return M

    def groups(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        P = self.parts.shape[0]
        for p0 in range(0, P, self.q):
            idx = torch.arange(p0, min(p0 + self.q, P))
            yield idx, self.blocks(idx)


class _Jacobian(_Runner):
    """Blocks ``c J_p^T J_p`` (or ``c J_p J_p^T``, the smaller) from explicit Jacobians."""

    def __init__(self, op: LocalHessian, s: SeparableStructure, max_bytes: int) -> None:
        assert s.factored is not None and s.out_parts is not None
        # float64 at the captured point whatever the model's dtype: the blocks are then the
        # exact local Hessian at that point, not float32 products' rounding of it.
        params = op.capture.state.params
        self.fj = FactoredJacobian.in_float64(s.factored, params, max_bytes=max_bytes // 4)
        self.scale = op.block_function()[2]
        self.s = s
        self.op = op
        P, d, r = s.num_parts, s.part_size, int(s.out_parts.shape[1])
        self.side = min(d, r)
        self.primal_side = d <= r
        u_bytes = self.fj.U.numel() * _F64
        self.q = _group_size(
            (r * d + 3 * self.side**2) * _F64, u_bytes + max_bytes // 4, max_bytes, P
        )
        self._check_output()

    def _check_output(self) -> None:
        # The factored steps must reproduce the block's output (the captured z_b).
        assert self.s.out_parts is not None  # checked by the route's costs
        idx = torch.arange(self.s.num_parts)
        got = self.fj.output(idx).permute(1, 0, 2).reshape(-1)  # (channel, sample, position)
        want = self.op.capture.block_output(self.op.block).reshape(-1)[self.s.out_parts.reshape(-1)]
        scale = float(want.abs().max()) if want.numel() else 0.0
        # 1e3 eps, widened with the values per channel (what a batch-norm statistic sums over,
        # in another order than the capture's): 512 images of 32x32 differed by 5.7e3 eps.
        per_channel = want.numel() / max(self.s.num_parts, 1)
        tol = 1e3 * max(1.0, per_channel / 1e4) * torch.finfo(want.dtype).eps
        if float((got - want).abs().max()) > tol * max(scale, 1e-300):
            raise NumericalError(
                f"the factored block {self.op.block.name} does not reproduce the block output"
            )

    def blocks(self, idx: torch.Tensor) -> torch.Tensor:
        J = self.fj.jacobians(idx).to(torch.float64)
        self._check_probe(idx, J)
        G = J.mT @ J if self.primal_side else J @ J.mT
        return G * self.scale

    def _check_probe(self, idx: torch.Tensor, J: torch.Tensor) -> None:
        # Against the operator's own products on the probed parts: c J_p^T J_p v_p = (A v)_p.
        if self.s.probe is None:
            return
        picks, V, W = self.s.probe
        for c, p in enumerate(picks):
            hit = (idx == p).nonzero()
            if not hit.numel():
                continue
            k = int(hit[0, 0])
            rows = self.s.parts[p].to(V.device)
            v = V[rows, c].to(torch.float64)
            mine = (J[k].mT @ (J[k] @ v)) * self.scale
            want = W[rows, c].to(torch.float64)
            scale = float(want.abs().max())
            tol = 1e3 * math.sqrt(J.shape[1]) * torch.finfo(self.op.dtype).eps * max(scale, 1e-300)
            if float((mine - want).abs().max()) > tol:
                raise NumericalError(
                    f"the Jacobian route disagrees with the operator's products on part {p} "
                    f"(|diff| {float((mine - want).abs().max()):.2e} vs {scale:.2e}); "
                    "use route='primal'"
                )

    def groups(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        P = self.s.num_parts
        for p0 in range(0, P, self.q):
            idx = torch.arange(p0, min(p0 + self.q, P))
            yield idx, self.blocks(idx)


# --- eigenvalues of every block, and the reported pairs ------------------------------------


@dataclass(frozen=True, eq=False)
class _Finished:
    top: Eigenpairs
    bottom: Eigenpairs
    condition: ConditionNumber
    precision: float
    eigenvalues: np.ndarray


class _Accumulator:
    """Eigenvalues of every block, the largest asymmetry, and candidate blocks kept for the
    eigenvectors of the reported pairs."""

    def __init__(self, P: int, side: int, top: int, bottom: int) -> None:
        self.ev = np.empty((P, side), dtype=np.float64)
        self.asym = 0.0
        self.keep = top + bottom
        self.cache: dict[int, torch.Tensor] = {}

    def add(self, idx: torch.Tensor, M: torch.Tensor) -> None:
        asym = torch.linalg.matrix_norm(M - M.mT, ord="fro") / 2.0
        self.asym = max(self.asym, float(asym.max()) if asym.numel() else 0.0)
        M = 0.5 * (M + M.mT)
        ev = torch.linalg.eigvalsh(M)
        self.ev[idx.numpy()] = ev.cpu().numpy()
        # Keep the blocks holding this group's extreme eigenvalues (the final choice is
        # usually among them; a missing block is formed again).
        flat = ev.reshape(-1)
        k = min(self.keep, flat.numel())
        side = ev.shape[1]
        nz = flat.abs() > 1e-12 * float(flat.abs().max()) if flat.numel() else flat.bool()
        cands = set(torch.topk(flat, k).indices.tolist())
        small = torch.where(nz, flat, torch.full_like(flat, float("inf")))
        cands |= set(torch.topk(small, k, largest=False).indices.tolist())
        cands |= set(torch.topk(flat, k, largest=False).indices.tolist())
        for c in cands:
            self.cache[int(idx[c // side])] = M[c // side].clone()
        if len(self.cache) > 8 * self.keep + 16:  # bound memory: drop the oldest
            for key in list(self.cache)[: len(self.cache) - 8 * self.keep - 16]:
                del self.cache[key]

    def finish(
        self,
        op: SymmetricOperator,
        d: int,
        rank_rtol: float | None,
        top: int,
        bottom: int,
        runner: _Runner,
    ) -> _Finished:
        P, side = self.ev.shape
        anorm = float(np.abs(self.ev).max()) if self.ev.size else 0.0
        eps64 = torch.finfo(torch.float64).eps
        dt = runner.dtype  # the arithmetic of the blocks: products' dtype, or float64
        precision = max(self.asym + side * eps64 * anorm, arithmetic_floor(op.dim, dt, anorm))
        rtol = default_rank_rtol(op.dim, dt) if rank_rtol is None else float(rank_rtol)
        if rank_rtol is None and anorm > 0:
            rtol = max(rtol, precision / anorm)
        # The whole spectrum: each block's eigenvalues completed to d (a Gram side r > d holds
        # r - d structural zeros, the smallest of a PSD block; r < d misses d - r zeros).
        if side >= d:
            full = self.ev[:, side - d :]
        else:
            full = np.concatenate([np.zeros((P, d - side)), self.ev], axis=1)
        all_ev = np.sort(full.reshape(-1))
        # float32 products: a small eigenvalue counted as zero may be real (as on the dense path)
        low = is_low_precision(dt)
        cond = condition_from_eigenvalues(all_ev, rtol=rtol, precision=precision, low_precision=low)
        flat = self.ev.reshape(-1)
        order = np.argsort(flat, kind="stable")
        top_idx = order[::-1][:top]
        psd = op.is_psd is True
        cand = order[np.abs(flat[order]) > rtol * anorm] if psd else order
        bot_idx = cand[:bottom]
        needed = sorted({int(i) // side for i in (*top_idx, *bot_idx)})
        missing = [p for p in needed if p not in self.cache]
        if missing:
            got = runner.blocks(torch.tensor(missing))
            for p, M in zip(missing, got):
                self.cache[p] = 0.5 * (M + M.mT)
        res = {}
        for p in needed:
            M = self.cache[p]
            w, Y = torch.linalg.eigh(M)
            r = torch.linalg.vector_norm(M @ Y - Y * w, dim=0)
            res[p] = r.cpu().numpy()

        def pairs(which: Literal["top", "bottom"], idx: np.ndarray) -> Eigenpairs:
            rr = np.array([res[int(i) // side][int(i) % side] for i in idx], dtype=np.float64)
            return Eigenpairs.build(
                which, flat[idx], rr, rr + precision, np.ones(idx.size, dtype=bool)
            )

        return _Finished(
            top=pairs("top", top_idx),
            bottom=pairs("bottom", bot_idx),
            condition=cond,
            precision=precision,
            eigenvalues=all_ev,
        )
