"""Run every requested block: one operator per block (or one for all), one solve each.

:func:`run_blocks` is the per-block loop of every entry point. It returns frozen
:class:`BlockResult` records (the block, its :class:`~hessiankit.solvers.SpectrumResult` and
notes as data) and prints nothing; pass a :class:`~hessiankit.pipeline.progress.Progress` to
observe it.

Fast paths, on by default:

* ``kind="loss"``: the top by Lanczos starts from the loss gradient (:func:`solve_block`);
  a top-only request runs single-vector Lanczos unless ``SolverOptions.block_size`` is given.
* several blocks that all go to Lanczos: one product of the summed back-matching losses
  serves every block (:meth:`Prepared.make_all` and
  :func:`~hessiankit.solvers.blockwise.blockwise_spectra`), when
  ``SolverOptions.all_blocks`` allows it.

Example:
    >>> from hessiankit.pipeline import SolverOptions, block_operators, run_blocks
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> ops = block_operators(hk.capture(net, torch.randn(8, 3, dtype=torch.float64)))
    >>> rows = run_blocks(ops, "all", SolverOptions(top=2))
    >>> [(r.index, r.spectrum.method, r.spectrum.condition.rank) for r in rows]
    [(1, 'dense', 16), (2, 'dense', 10)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from hessiankit.blocks import Block, BlockCapture, BlockSplit
from hessiankit.operators import SymmetricOperator, hessian_operator
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.operators.local import Kind, Wrt
from hessiankit.operators.loss import LossHessian
from hessiankit.operators.observed import Reporting
from hessiankit.pipeline.options import SolverOptions
from hessiankit.pipeline.prepare import Prepared
from hessiankit.pipeline.progress import Progress
from hessiankit.pipeline.solve import Budgets, budgets, solve_block, would_be_dense
from hessiankit.solvers.blockwise import blockwise_spectra
from hessiankit.solvers.results import SpectrumResult
from hessiankit.solvers.options import KrylovOptions, default_block_size, from_keywords
from hessiankit.solvers.separable_structure import separable_by_rules
from hessiankit.solvers.spectrum import SEPARABLE_MIN_DIM

# Public through hessiankit.pipeline (its lazy table names them); no __all__ to keep in step.


@dataclass(frozen=True, eq=False)
class BlockResult:
    """One block's answer.

    Attributes:
        index: block number (from 1; 0 for the whole model).
        name: the block's module path.
        spectrum: extreme eigenvalues, residuals, condition number.
        notes: what a reader should know about how it was obtained (plain sentences).
    """

    index: int
    name: str
    spectrum: SpectrumResult
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class BlockOperators:
    """How to get operators: ``make(block)`` for one block, ``make_all(blocks)`` for several
    from one product (``None`` where that does not apply), and the split they index."""

    split: BlockSplit
    make: Callable[[Block], SymmetricOperator]
    make_all: Callable[[Sequence[Block]], SymmetricOperator | None] | None = None
    kind: Kind = "gauss-newton"


def block_operators(
    capture: BlockCapture,
    *,
    wrt: Wrt = "weights",
    kind: Kind = "gauss-newton",
    eta: float = 1.0,
) -> BlockOperators:
    """The operators of one recorded batch (:func:`hessiankit.hessian_operator`)."""

    def make(block: Block) -> SymmetricOperator:
        return hessian_operator(capture, block, wrt=wrt, kind=kind, eta=eta)

    def make_all(blocks: Sequence[Block]) -> SymmetricOperator | None:
        # The summed back-matching losses are block-diagonal because every block's loss reads
        # only its own variables. Kind "loss" and the whole model ("model" overlaps every block)
        # break that. A tensor tied between blocks does not: the operator takes one copy of it
        # per block (see hessiankit.operators.all_blocks), so tied models keep this route.
        if kind == "loss" or any(b.index == 0 for b in blocks):
            return None
        if wrt == "weights" and any(b.num_params == 0 for b in blocks):
            return None
        gn: Literal["gauss-newton", "exact"] = "exact" if kind == "exact" else "gauss-newton"
        return AllBlocksLocalHessian(capture, list(blocks), wrt=wrt, kind=gn, eta=eta)

    return BlockOperators(capture.split, make, make_all, kind)


def _operators(source: Prepared | BlockOperators) -> BlockOperators:
    if isinstance(source, BlockOperators):
        return source
    return BlockOperators(source.split, source.make, source.make_all, source.options.kind)


def select_blocks(
    split: BlockSplit, blocks: Literal["all", "model"] | Sequence[int | str | Block]
) -> list[Block]:
    """``"all"``, ``"model"`` (the whole network as one block) or indices / module paths
    (:meth:`~hessiankit.blocks.split.BlockSplit.select`)."""
    return split.select(blocks)


#: Solve several Lanczos blocks from one product of the summed losses under ``all_blocks="auto"``.
#: Off: on the built-in default model (batch 32, float64, ``--method lanczos``, every block,
#: top 5 + bottom 1; 2 shared CPU cores) the shared products gave the same products and
#: eigenvalues but no measurable time saving (19.6-24.3 s together against 17.4-23.2 s one by
#: one over four alternating runs): there the Lanczos bookkeeping, not the products, dominates.
ALL_BLOCKS_BY_DEFAULT = False


def run_blocks(
    source: Prepared | BlockOperators,
    blocks: Literal["all", "model"] | Sequence[int | str | Block] = "all",
    options: SolverOptions | None = None,
    *,
    progress: Progress | None = None,
) -> list[BlockResult]:
    """Solve every requested block; results in the order of ``blocks``.

    Args:
        source: :func:`prepare`'s result, or :func:`block_operators` of one capture.
        blocks: ``"all"``, ``"model"`` or block indices / module paths / blocks.
        options: what to compute (default :class:`SolverOptions`).
        progress: observer of the run.

    Raises:
        BlockError: an unknown block.
        OperatorError: an operator that cannot be built or solved with these options.
    """
    ops = _operators(source)
    opts = options or SolverOptions()
    obs = progress or Progress()
    chosen = select_blocks(ops.split, blocks)
    results: dict[int, BlockResult] = {}
    obs.begin(len(chosen))
    try:
        lim: Budgets | None = None
        made: dict[int, SymmetricOperator] = {}  # operators _together built: solved, not rebuilt
        together = _together(ops, chosen, opts, made)
        if together is not None:
            op, members = together
            lim = budgets(opts, op.device)
            for member, res in _solve_together(op, members, opts, obs):
                results[id(member)] = res
                obs.block_finished(res)
        for block in chosen:
            if id(block) in results:
                continue
            op = made.pop(id(block)) if id(block) in made else ops.make(block)
            lim = lim or budgets(opts, op.device)
            r = solve_one(block, op, opts, kind=ops.kind, progress=obs, limits=lim)
            results[id(block)] = r
            obs.block_finished(r)
    finally:
        obs.end()
    return [results[id(b)] for b in chosen]


#: Said when a loss Hessian's top-k runs single-vector Lanczos by default (:func:`solve_one`).
SINGLE_VECTOR_NOTE = (
    "single-vector Lanczos (block_size=1, the fewest products): an eigenvalue repeated r "
    "times is found once per copy only with block_size >= r"
)


def _label(block: Block) -> str:
    return f"block {block.index} ({block.name})"


def solve_one(
    block: Block,
    op: SymmetricOperator,
    opts: SolverOptions,
    *,
    kind: Kind = "gauss-newton",
    progress: Progress | None = None,
    limits: Budgets | None = None,
) -> BlockResult:
    """One block's :class:`BlockResult` from its operator: :func:`solve_block` with the
    gradient start for a loss Hessian's top, the progress observer and the budget notes."""
    obs = progress or Progress()
    lim = limits or budgets(opts, op.device)
    notes: list[str] = []
    top, bottom = (
        (min(opts.top, op.dim), min(opts.bottom, op.dim)) if opts.clip else (opts.top, opts.bottom)
    )
    dense = would_be_dense(op.dim, top, bottom, opts, lim.max_dense_bytes)
    start: torch.Tensor | None = None
    if kind == "loss" and opts.gradient_start and top >= 1 and isinstance(op, LossHessian):
        start = op.gradient()  # free from the kept graph; only a Lanczos run reads it
        if bottom == 0 and opts.block_size is None and top > 1:
            # A loss Hessian's top eigenvalues are simple in practice: single-vector Lanczos
            # from the gradient spends the fewest products (top-10 of a 95k-weight CNN: 57
            # against 140 with blocks of 10). A block size finds repeated ones.
            opts = replace(opts, block_size=1)
    obs.block_started(_label(block), op.dim, op.dim if dense else None)
    res = solve_block(
        Reporting(op, obs.products, op.dim if dense else None), opts, start=start, limits=lim
    )
    if start is not None and res.method == "lanczos":
        notes.append(
            "Lanczos started from the loss gradient (it lies mostly in the top eigenspace)"
        )
        if res.block_size == 1 and top > 1:
            notes.append(SINGLE_VECTOR_NOTE)
    notes.extend(_budget_notes(res, lim, op.dtype))
    return BlockResult(block.index, block.name, res, tuple(notes))


def _budget_notes(res: SpectrumResult, lim: Budgets, dtype: torch.dtype) -> list[str]:
    if res.method != "lanczos" or res.max_basis_bytes is None:
        return []
    spilled = res.basis_dtype == "float32" and dtype == torch.float64
    if not (spilled or res.restarts):
        return []
    where = " (a quarter of the machine's memory)" if lim.basis_from_machine else ""
    did = []
    if spilled:
        did.append("stored in float32")
    if res.restarts:
        did.append(f"thick-restarted {res.restarts} time(s)")
    return [
        f"the Lanczos basis was held within {res.max_basis_bytes / 2**20:.0f} MiB{where}: "
        + " and ".join(did)
    ]


def _together(
    ops: BlockOperators,
    chosen: list[Block],
    opts: SolverOptions,
    made: dict[int, SymmetricOperator],
) -> tuple[SymmetricOperator, list[Block]] | None:
    """The blocks to solve from one product of the summed losses, and their operator."""
    wanted = opts.all_blocks == "always" or (opts.all_blocks == "auto" and ALL_BLOCKS_BY_DEFAULT)
    if not wanted or ops.make_all is None or opts.method not in ("auto", "lanczos"):
        return None
    if ops.kind == "loss" or len(chosen) < 2:
        return None
    probe = ops.make_all(chosen)
    if probe is None or probe.parts is None:
        return None
    lim = budgets(opts, probe.device)
    members = []
    for b, sl in zip(chosen, probe.parts):
        n = sl.stop - sl.start
        if not opts.clip and (opts.top > n or opts.bottom > n):
            continue  # the one-block path says why it cannot
        top, bottom = min(opts.top, n), min(opts.bottom, n)
        if would_be_dense(n, top, bottom, opts, lim.max_dense_bytes):
            continue
        if _would_be_separable(ops, b, n, bottom, opts, made):
            continue  # exact and cheaper on its own (spectrum's "auto" takes it)
        members.append(b)
    if len(members) < 2:
        return None
    op = probe if len(members) == len(chosen) else ops.make_all(members)
    return (op, members) if op is not None else None


def _would_be_separable(
    ops: BlockOperators,
    block: Block,
    n: int,
    bottom: int,
    opts: SolverOptions,
    made: dict[int, SymmetricOperator],
) -> bool:
    """What :func:`~hessiankit.solvers.spectrum.spectrum`'s ``"auto"`` checks first."""
    if opts.method != "auto" or bottom < 1 or n <= SEPARABLE_MIN_DIM:
        return False
    op = ops.make(block)
    if not separable_by_rules(op):
        return False  # dropped: its graph is not held while the others are solved
    made[id(block)] = op  # kept: the block is then solved on its own with it
    return True


def _solve_together(
    op: SymmetricOperator, members: list[Block], opts: SolverOptions, obs: Progress
) -> list[tuple[Block, BlockResult]]:
    label = "blocks " + ", ".join(str(b.index) for b in members) + " together"
    obs.block_started(label, op.dim, None)
    seen = [0]

    def step(steps: int, active: int) -> None:
        seen[0] = steps
        obs.products(steps, None)

    krylov = from_keywords(
        KrylovOptions,
        opts,
        block_size=default_block_size(opts.top, opts.bottom, opts.block_size),
        max_basis_bytes=None,  # blockwise_spectra keeps every basis whole: no spill budget
    )
    res = blockwise_spectra(op, options=krylov, progress=step)
    note = (
        f"solved with blocks {', '.join(str(b.index) for b in members)} from one product of "
        "the summed back-matching losses (seconds are the shared wall time)"
    )
    return [(b, BlockResult(b.index, b.name, r, (note,))) for b, r in zip(members, res)]
