"""Load model and data, capture every batch, and build any block's operator over all the data.

:func:`prepare` is the first half of every run (:func:`hessiankit.pipeline.run_blocks` the
second). Weight and loss Hessians over several batches are the data-set mean
``sum_k (m_k / N) A_k`` (:class:`~hessiankit.operators.dataset.DatasetOperator`),
all-reduced over the ranks under ``torchrun``
(:class:`~hessiankit.operators.distributed.AllReduceOperator`, each rank holding the samples
``rank::world_size``); input Hessians are the direct sum of the batches
(:class:`~hessiankit.operators.direct_sum.DirectSum`, one process only).

Example:
    >>> from hessiankit.pipeline import DataOptions, prepare
    >>> p = prepare(data=DataOptions(dataset="synthetic", batch_size=8))
    >>> op = p.make(p.split.block(4))
    >>> op.dim, op.is_psd
    (170, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from hessiankit.blocks.differentiable import check_twice_differentiable
from hessiankit.blocks import Block, BlockCapture, BlockSplit, capture, split_blocks
from hessiankit.errors import DataError
from hessiankit.operators import (
    AllReduceOperator,
    DatasetOperator,
    SymmetricOperator,
    hessian_operator,
)
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.operators.dataset import batch_dependent
from hessiankit.operators.direct_sum import DirectSum
from hessiankit.pipeline import world as _world
from hessiankit.pipeline.data import Batches, load_batches
from hessiankit.pipeline.model import ModelInfo, check_torchscript_bn, open_model
from hessiankit.pipeline.options import DataOptions, ModelSource, OperatorOptions

__all__ = [
    "Prepared",
    "check_shards",
    "prepare",
    "resolve_device",
    "resolve_dtype",
    "shard",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda:LOCAL_RANK`` under ``torchrun``."""
    return _world.device_for(name, _world.current())


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


@dataclass(frozen=True, eq=False)
class Prepared:
    """What :func:`prepare` loads: model, data, block split, one capture per batch of this
    process's samples, and ``make(block)``, the block's operator over all the data.

    ``mean_loss`` is the training loss averaged over all samples (``None`` without labels);
    ``notes`` what a user should know about the loading (fallback data set, a short batch).
    """

    info: ModelInfo
    data: Batches
    split: BlockSplit
    captures: list[BlockCapture]
    make: Callable[[Block], SymmetricOperator]
    loss: str
    capture_seconds: float
    mean_loss: float | None = None
    world: _world.World = _world.SINGLE
    options: OperatorOptions = field(default_factory=OperatorOptions)
    notes: tuple[str, ...] = ()

    def make_all(self, blocks: Sequence[Block]) -> SymmetricOperator | None:
        """Every block of ``blocks`` from one product of the summed back-matching losses:
        ``diag(H_1, ..., H_B)`` over all the data, its ``parts`` in the order of ``blocks``
        (:class:`~hessiankit.operators.all_blocks.AllBlocksLocalHessian`).

        ``None`` where it does not apply: the loss Hessian (it couples the blocks), input
        Hessians over several batches, the whole model as a block, or a block without weights.
        """
        o = self.options
        if o.kind == "loss" or any(b.index == 0 for b in blocks):
            return None
        if o.wrt == "input" and len(self.captures) > 1:
            return None
        if o.wrt == "weights" and any(b.num_params == 0 for b in blocks):
            return None
        kind: Literal["gauss-newton", "exact"] = "exact" if o.kind == "exact" else "gauss-newton"

        def one(c: BlockCapture) -> SymmetricOperator:
            return AllBlocksLocalHessian(c, list(blocks), wrt=o.wrt, kind=kind, eta=o.eta)

        if len(self.captures) == 1 and self.world.size == 1:
            return one(self.captures[0])
        op: SymmetricOperator = DatasetOperator(self.split, self.captures, one, bn=o.bn)
        return op if self.world.size == 1 else AllReduceOperator(op)


def prepare(
    model: ModelSource | None = None,
    data: DataOptions | None = None,
    operator: OperatorOptions | None = None,
) -> Prepared:
    """Load model and data, capture every batch (shared by spectrum, density and report).

    ``wrt="weights"`` (and the loss Hessian): ``make(block)`` is the data-set mean
    ``sum_k (m_k / N) A_k`` over the batches (:class:`DatasetOperator`), all-reduced over the
    ranks under ``torchrun`` (:class:`AllReduceOperator`, each rank holding the samples
    ``rank::world_size``). ``wrt="input"``: the direct sum of the batches (one process only).

    Raises:
        DataError: ``kind="exact"/"loss"`` on data without labels, batch norm in train mode
            over several batches or ranks, ``wrt="input"`` or fewer samples than ranks under
            ``torchrun`` (and every loading error).
    """
    model = model or ModelSource()
    data_opts = data or DataOptions()
    args = operator or OperatorOptions()
    notes: list[str] = []
    if args.kind != "exact" and args.eta != 1.0:
        notes.append("eta= only changes kind='exact'; ignored")
    world = _world.current()
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    info = open_model(model, device, data_opts.input_shape)
    check_torchscript_bn(info, args.bn)
    split = split_blocks(info.model)
    batches_ = load_batches(data_opts, info, device)
    notes.extend(batches_.notes)
    check_twice_differentiable(info.model, batches_.batches[0][0])  # else silently zero Hessians
    needs_labels = args.kind in ("exact", "loss")
    if needs_labels and not batches_.has_labels:
        raise DataError(
            f"kind='{args.kind}' needs labels but the data has none (no 'y'); add labels y to the "
            "data file or use kind='gauss-newton'"
        )
    check_shards(args, split, batches_, world)  # before any collective: the same answer everywhere
    loss = batches_.loss if data_opts.loss == "auto" else data_opts.loss
    batches = batches_.batches if world.size == 1 else shard(batches_, world)
    start = time.perf_counter()
    caps = [
        capture(
            split,
            x,
            y if needs_labels else None,
            loss_fn=loss,
            bn=args.bn,
            dtype=dtype,
            gradients=args.kind == "exact",  # only the exact local Hessian reads dL/dz_b
        )
        for x, y in batches
    ]
    seconds = time.perf_counter() - start
    if world.size > 1:
        batches_.description["world_size"] = world.size

    def make(block: Block) -> SymmetricOperator:
        if args.wrt == "input":
            ops = [
                hessian_operator(c, block, wrt="input", kind=args.kind, eta=args.eta) for c in caps
            ]
            return ops[0] if len(ops) == 1 else DirectSum(ops)

        def one(c: BlockCapture) -> SymmetricOperator:
            return hessian_operator(c, block, wrt="weights", kind=args.kind, eta=args.eta)

        if len(caps) == 1 and world.size == 1:
            return one(caps[0])  # the mean over one batch is its operator: keep it as it is
        op = DatasetOperator(split, caps, one, bn=args.bn)
        return op if world.size == 1 else AllReduceOperator(op)

    return Prepared(
        info,
        batches_,
        split,
        caps,
        make,
        loss,
        seconds,
        _mean_loss(caps, world),
        world,
        args,
        tuple(notes),
    )


def check_shards(
    args: OperatorOptions, split: BlockSplit, data: Batches, world: _world.World
) -> None:
    """Refuse what cannot be exact over ``torchrun``'s ranks (nothing to do in one process)."""
    if world.size == 1:
        return
    if args.wrt == "input":
        raise DataError(
            "wrt='input' has one variable per sample, so it cannot be split over torchrun's "
            "processes; run it in one process (without torchrun)"
        )
    if batch_dependent(split, args.bn):
        raise DataError(
            "batch norm in train mode uses each batch's statistics, so a result over several "
            "processes would depend on how the samples were sharded; use bn='eval', or run in "
            "one process"
        )
    n = sum(int(x.shape[0]) for x, _ in data.batches)
    if n < world.size:
        raise DataError(
            f"{n} samples for {world.size} processes leave a process without data; select more "
            "samples (batch_size=, num_batches=) or start fewer processes"
        )


def shard(data: Batches, world: _world.World) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """This rank's samples ``rank::world_size`` of the data, in batches of at most
    ``batch_size`` (no padding: the shards partition the samples)."""
    xs = torch.cat([x for x, _ in data.batches])[world.rank :: world.size]
    ys = None
    if data.has_labels:
        ys = torch.cat([y for _, y in data.batches])[world.rank :: world.size]  # type: ignore[misc]
    m = int(data.description["batch_size"])
    return [
        (xs[i : i + m].contiguous(), None if ys is None else ys[i : i + m].contiguous())
        for i in range(0, xs.shape[0], m)
    ]


def _mean_loss(caps: list[BlockCapture], world: _world.World) -> float | None:
    """The training loss averaged over every sample of every rank."""
    if len(caps) == 1 and world.size == 1:
        return None if caps[0].loss is None else float(caps[0].loss)
    local = [0.0, 0.0, 0.0]  # sum of m * loss, samples, batches without a loss
    for c in caps:
        if c.loss is None:
            local[2] += 1
        else:
            local[0] += c.batch_size * float(c.loss)
            local[1] += c.batch_size
    if world.size > 1:
        import torch.distributed as dist

        t = torch.tensor(local, dtype=torch.float64, device=caps[0].activations[0].device)
        dist.all_reduce(t)
        local = t.tolist()
    return None if local[2] or not local[1] else local[0] / local[1]
