"""Split a network into the paper's chain of blocks ``z_b = F_b(W_b, z_{b-1})``.

Default rule (paper digest, section 1; the design card):

* a block starts at a module that carries weights and is not a normalisation layer
  (``Linear``, ``Conv*``, any custom parametrised module), and takes in the normalisation and
  parameter-free modules that follow it (batch norm, activations, pooling, dropout, flatten) up
  to the next weighted module;
* a unit with a skip connection (a module whose forward adds its input back, like a ResNet
  ``BasicBlock``, or a residual addition written in the model's own forward) is one block;
* parameter-free modules before the first weighted module join the first block.

Blocks are numbered from 1 as in the paper (``z_0`` is the network input) and can also be named
by any module path they contain. Users override the split with ``blocks=[...]``: one entry per
block, each a module path or a list of module paths.

Example:
    >>> from hessiankit import split_blocks
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    >>> split = split_blocks(net)
    >>> [(b.index, b.module_names) for b in split]
    [(1, ('0', '1')), (2, ('2',))]
    >>> split.block("2").index
    2
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from hessiankit.blocks.tracing import Segment, TracedChain, build_function, trace_chain
from hessiankit.errors import BlockError

__all__ = ["Block", "BlockSpec", "BlockSplit", "split_blocks"]

BlockSpec = str | Sequence[str]


@dataclass(frozen=True, eq=False)
class Block:
    """One block ``z_b = F_b(W_b, z_{b-1})`` of a network.

    Attributes:
        index: position in the chain, from 1 (0 for the whole model treated as one block).
        name: a module path that identifies the block (its first weighted module).
        module_names: paths of the modules the block runs, in order.
        param_names: the model's names of the block's parameters ``W_b``, each tensor once:
            a tensor tied between modules (one ``nn.Parameter`` under several names) is named
            by its first name, as ``model.named_parameters()`` names it.
        buffer_names: the model's names of the block's buffers (batch-norm statistics).
        function: a module computing ``z_b`` from ``z_{b-1}``; it shares the model's
            submodules, so its parameter names are the model's own.
        has_bn: whether the block contains batch norm.
        has_skip: whether the block contains a skip connection.
        num_params: number of scalar weights in ``W_b`` (a tied tensor counted once).
        uses: ``(name inside function, name in param_names / buffer_names)`` for every
            parameter and buffer the function reads; the two differ for a tied tensor used
            under a later name (``2.weight`` tied to ``0.weight``). Empty: the same names.
    """

    index: int
    name: str
    module_names: tuple[str, ...]
    param_names: tuple[str, ...]
    buffer_names: tuple[str, ...]
    function: nn.Module
    has_bn: bool
    has_skip: bool
    num_params: int
    uses: tuple[tuple[str, str], ...] = ()

    def contains(self, path: str) -> bool:
        """Whether ``path`` names this block, one of its modules, an ancestor or a submodule."""
        if path == self.name:
            return True
        return any(
            m == path or m.startswith(path + ".") or path.startswith(m + ".")
            for m in self.module_names
        )

    def __repr__(self) -> str:
        flags = "".join([" bn" if self.has_bn else "", " skip" if self.has_skip else ""])
        return f"Block({self.index}, {self.name!r}, params={self.num_params}{flags})"


class BlockSplit:
    """The ordered chain of blocks of a model.

    Iterating gives the blocks in order; :meth:`block` looks one up by its index (from 1) or by
    a module path; :meth:`whole_model` is the network as a single block (index 0).
    """

    def __init__(self, model: nn.Module, traced: TracedChain, blocks: Sequence[Block]) -> None:
        self.model = model
        self.graph_module = traced.graph_module
        self.blocks: tuple[Block, ...] = tuple(blocks)
        self._whole = _make_block(
            0, "model", traced.graph_module, traced.segments, _first_names(model), whole=True
        )

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[Block]:
        return iter(self.blocks)

    def __repr__(self) -> str:
        return f"BlockSplit({len(self)} blocks: " + ", ".join(b.name for b in self.blocks) + ")"

    def whole_model(self) -> Block:
        """The whole network as one block (index 0, name ``"model"``)."""
        return self._whole

    def select(self, blocks: str | Sequence[int | str | Block] = "all") -> list[Block]:
        """``"all"`` (every block with weights), ``"model"`` (the whole network as one block),
        or block indices / module paths / blocks (each as :meth:`block` finds it).

        Raises:
            BlockError: another string, no block chosen, or a key no block matches.
        """
        if isinstance(blocks, str):
            if blocks not in ("all", "model"):
                raise BlockError(f"blocks= is 'all', 'model' or a list of blocks, got {blocks!r}")
            if blocks == "model":
                return [self._whole]
            chosen = [b for b in self.blocks if b.num_params > 0]
        else:
            chosen = [self.block(b) for b in blocks]
        if not chosen:
            raise BlockError("no blocks to analyse; pass blocks='all' or block numbers")
        return chosen

    def block(self, key: int | str | Block) -> Block:
        """Find a block by its index (from 1), a module path, or ``"model"``.

        Index 0 (or ``"0"``) is refused rather than read as the whole model: blocks are numbered
        from 1, so a 0 is far more likely a slip than a request for every weight at once.

        Raises:
            BlockError: no block matches, with the valid range in the message; or index 0.
        """
        if isinstance(key, Block):
            return key
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():
            key = int(key)
        if isinstance(key, int):
            if key == 0:
                raise BlockError(
                    f"block 0 is not a block (blocks are numbered 1..{len(self.blocks)}); "
                    "for the whole model as one block use 'model'"
                )
            if 1 <= key <= len(self.blocks):
                return self.blocks[key - 1]
            raise BlockError(
                f"block {key} is out of range; this model has blocks 1..{len(self.blocks)} "
                "(list them with `hessiankit blocks`)"
            )
        if key == "model":
            return self._whole
        for b in self.blocks:
            if b.name == key:
                return b
        matches = [b for b in self.blocks if b.contains(key)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise BlockError(
                f"module path {key!r} spans blocks {[b.index for b in matches]}; name one block"
            )
        raise BlockError(
            f"no block contains module {key!r}; give an index 1..{len(self.blocks)} or a module "
            "path from `hessiankit blocks`"
        )


def split_blocks(model: nn.Module, blocks: Sequence[BlockSpec] | None = None) -> BlockSplit:
    """Split ``model`` into its chain of blocks.

    Args:
        model: a network whose forward takes one tensor and returns one tensor.
        blocks: optional explicit split, one entry per block: a module path, or a list of
            paths whose modules form the block. Parameter-free modules between the entries
            join the block before them.

    Returns:
        The chain of blocks.

    Raises:
        BlockError: the model cannot be traced, or the explicit split is invalid (overlaps, is
            out of order, leaves weights outside every block, or cuts through a skip
            connection).
    """
    specs = None if blocks is None else [[s] if isinstance(s, str) else list(s) for s in blocks]
    expand = frozenset() if specs is None else _ancestors(model, [p for s in specs for p in s])
    traced = trace_chain(model, expand)
    segments = traced.segments
    if not segments:
        raise BlockError(f"{type(model).__name__} computes nothing from its input; no blocks")
    groups = _group_default(segments) if specs is None else _group_explicit(segments, specs)
    first = _first_names(model)
    made = []
    for i, group in enumerate(groups, start=1):
        made.append(_make_block(i, None, traced.graph_module, group, first))
    return BlockSplit(model, traced, made)


def _ancestors(model: nn.Module, paths: Sequence[str]) -> frozenset[str]:
    names = dict(model.named_modules())
    out: set[str] = set()
    for path in paths:
        if path not in names:
            raise BlockError(f"the model has no module {path!r}; see `hessiankit blocks` for paths")
        parts = path.split(".")
        out.update(".".join(parts[:k]) for k in range(1, len(parts)))
    return frozenset(out)


def _group_default(segments: list[Segment]) -> list[list[Segment]]:
    groups: list[list[Segment]] = []
    for seg in segments:
        starts = seg.weighted or seg.has_skip
        anchored = bool(groups) and any(s.weighted or s.has_skip for s in groups[-1])
        if not groups or (starts and anchored):
            groups.append([seg])
        else:
            groups[-1].append(seg)
    return groups


def _group_explicit(segments: list[Segment], specs: list[list[str]]) -> list[list[Segment]]:
    ranges: list[tuple[int, int]] = []
    for spec in specs:
        hits = [
            i
            for i, seg in enumerate(segments)
            for m in seg.module_names
            if any(m == p or m.startswith(p + ".") for p in spec)
        ]
        if not hits:
            raise BlockError(f"block {spec} runs no module of the traced model; check the paths")
        ranges.append((min(hits), max(hits)))
    for (_, a1), (b0, _), spec in zip(ranges, ranges[1:], specs[1:]):
        if b0 <= a1:
            raise BlockError(
                f"block {spec} overlaps or precedes the block before it, or a block boundary "
                "falls inside a skip connection; give blocks in forward order at cuts"
            )
    groups: list[list[Segment]] = []
    for k, (lo, hi) in enumerate(ranges):
        start = 0 if k == 0 else lo
        end = ranges[k + 1][0] - 1 if k + 1 < len(ranges) else len(segments) - 1
        group = segments[start : end + 1]
        stray = [s for s in group[: lo - start] + group[hi - start + 1 :] if s.weighted]
        if stray:
            raise BlockError(
                f"module {stray[0].module_names[0]!r} has weights but is in no block; "
                "add it to one of the blocks"
            )
        groups.append(group)
    return groups


def _first_names(model: nn.Module) -> dict[int, str]:
    """The model's first name of each parameter and buffer (by identity), the name
    ``model.named_parameters()`` / ``named_buffers()`` give a tensor tied under several."""
    first: dict[int, str] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        first.setdefault(id(p), n)
    for n, b in model.named_buffers(remove_duplicate=False):
        first.setdefault(id(b), n)
    return first


def _make_block(
    index: int,
    name: str | None,
    gm: fx.GraphModule,
    group: list[Segment],
    first: dict[int, str],
    whole: bool = False,
) -> Block:
    function: nn.Module = gm if whole else build_function(gm, group)
    module_names = tuple(m for seg in group for m in seg.module_names)
    # A tied tensor is one variable: keyed by its first name, counted once, and handed to
    # every name the function reads it under (run_block).
    params: dict[str, int] = {}
    buffers: dict[str, None] = {}
    uses: dict[str, str] = {}

    def use(local: str, tensor: torch.Tensor, is_param: bool) -> None:
        model_name = first.get(id(tensor), local)
        uses.setdefault(local, model_name)
        if is_param:  # a scripted module's parameters are plain tensors, so ask where it came from
            params.setdefault(model_name, tensor.numel())
        else:
            buffers.setdefault(model_name)

    for seg in group:
        for n in seg.nodes:
            if n.op == "call_module":
                mod = gm.get_submodule(str(n.target))
                for pname, p in mod.named_parameters(remove_duplicate=False):
                    use(f"{n.target}.{pname}", p, True)
                for bname, b in mod.named_buffers(remove_duplicate=False):
                    use(f"{n.target}.{bname}", b, False)
            elif n.op == "get_attr":
                obj: object = gm
                for part in str(n.target).split("."):
                    obj = getattr(obj, part)
                if isinstance(obj, torch.Tensor):
                    use(str(n.target), obj, isinstance(obj, nn.Parameter))
    if name is None:
        anchor = next((s for s in group if s.weighted or s.has_skip), group[0])
        name = _anchor_name(anchor) or f"block{index}"
    return Block(
        index=index,
        name=name,
        module_names=module_names,
        param_names=tuple(params),
        buffer_names=tuple(buffers),
        function=function,
        has_bn=any(s.has_bn for s in group),
        has_skip=any(s.has_skip for s in group),
        num_params=sum(params.values()),
        uses=tuple(uses.items()),
    )


def _anchor_name(seg: Segment) -> str | None:
    if seg.module_names:
        if seg.has_skip and len(seg.module_names) > 1:
            return _common_prefix(seg.module_names) or seg.module_names[0]
        return seg.module_names[0]
    return None


def _common_prefix(names: Sequence[str]) -> str:
    parts = [n.split(".") for n in names]
    out: list[str] = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        out.append(level[0])
    return ".".join(out)
