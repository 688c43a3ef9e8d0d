"""Trace a model into a chain of segments with :mod:`torch.fx`.

A *cut* is a place in the network where exactly one tensor carries everything the rest of the
network needs: every data edge that crosses it starts at the node just before it. The
activations at cuts are the candidates for the paper's ``z_b``; the nodes between two
consecutive cuts form a *segment*. A segment with more than one data path from its input to its
output (a residual addition, a concatenation) contains a skip connection.

Modules are traced through when they are containers (``Sequential``, ``ModuleList``,
``ModuleDict``) or when a user named one of their submodules; every other module is a leaf, so
a custom module with children (a ResNet ``BasicBlock``) stays whole.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from hessiankit.blocks.modes import is_batchnorm
from hessiankit.errors import BlockError

__all__ = ["Segment", "TracedChain", "build_function", "trace_chain"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NORMALISATION = (
    nn.modules.batchnorm._BatchNorm,
    nn.SyncBatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
# Nodes that read a tensor's metadata (its shape) rather than its values.
_META_METHODS = {"size", "dim", "numel", "ndimension", "type", "get_device"}


class _UnitTracer(fx.Tracer):
    """Traces through containers and named ancestors; everything else is a leaf."""

    def __init__(self, expand: frozenset[str]) -> None:
        super().__init__()
        self.expand = expand

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.expand and not isinstance(m, _CONTAINERS)


@dataclass
class Segment:
    """Nodes of the traced graph between two consecutive cuts."""

    nodes: list[fx.Node]
    input_node: fx.Node
    output_node: fx.Node
    module_names: list[str] = field(default_factory=list)
    has_skip: bool = False
    weighted: bool = False
    has_bn: bool = False


@dataclass
class TracedChain:
    """A model traced into a chain of segments."""

    graph_module: fx.GraphModule
    segments: list[Segment]
    placeholder: fx.Node


def _is_meta(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in _META_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) > 1 and node.args[1] in ("shape", "dtype", "device", "ndim")
    if node.op == "call_function" and node.target is operator.getitem:
        src = node.args[0]
        return isinstance(src, fx.Node) and _is_meta(src)
    return False


def _data_inputs(node: fx.Node) -> list[fx.Node]:
    """Activation nodes a node reads (parameters and shape queries excluded)."""
    return [n for n in node.all_input_nodes if n.op != "get_attr" and not _is_meta(n)]


def _module_has_skip(module: nn.Module) -> bool:
    """Whether a leaf module's own forward adds its input back (or otherwise branches)."""
    if isinstance(module, (*_NORMALISATION, nn.Linear)) or not list(module.children()):
        return False
    try:
        graph = _UnitTracer(frozenset()).trace(module)
    except Exception:  # untraceable custom forward: fall back on the usual names
        return any(hasattr(module, a) for a in ("shortcut", "downsample", "skip"))
    return any(len(_data_inputs(n)) > 1 for n in graph.nodes if n.op != "output")


def _leaf_weighted(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) and not isinstance(module, _NORMALISATION)


def _contains_bn(module: nn.Module) -> bool:
    return any(is_batchnorm(m) for m in module.modules())


def trace_chain(model: nn.Module, expand: frozenset[str] = frozenset()) -> TracedChain:
    """Trace ``model`` and cut its graph into a chain of segments.

    Args:
        model: the network; its forward must take one tensor and return one tensor.
        expand: module paths to trace through (ancestors of modules a user named).

    Raises:
        BlockError: the model cannot be traced or does not take exactly one input.
    """
    try:
        graph = _UnitTracer(expand).trace(model)
    except Exception as exc:  # fx raises many kinds; all mean "not traceable"
        raise BlockError(
            f"cannot trace {type(model).__name__} into blocks ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); "
            "wrap its layers in torch.nn.Sequential or pass explicit blocks"
        ) from None
    gm = fx.GraphModule(model, graph)
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise BlockError(
            f"{type(model).__name__}.forward takes {len(placeholders)} inputs; hessiankit "
            "splits models that take one tensor"
        )
    output = next(n for n in nodes if n.op == "output")
    if not isinstance(output.args[0], fx.Node):
        raise BlockError(f"{type(model).__name__}.forward must return one tensor, not a container")
    # Activation nodes in execution order; get_attr and shape queries ride with their users.
    chain = [n for n in nodes if n.op not in ("get_attr", "output") and not _is_meta(n)]
    pos = {n: i for i, n in enumerate(chain)}
    last_use = {n: pos[n] for n in chain}
    for n in nodes:
        if n.op == "output":
            user_pos = len(chain)
        elif n in pos:
            user_pos = pos[n]
        else:  # meta node: its use is the use of its users
            user_pos = max((pos.get(u, len(chain)) for u in n.users), default=0)
        for src in n.all_input_nodes:
            if src in pos:
                last_use[src] = max(last_use[src], user_pos)
    cuts = [0]
    reach = last_use[chain[0]]
    for i in range(1, len(chain)):
        # A cut after node i needs every earlier node's last use at or before i.
        if reach <= i:
            cuts.append(i)
        reach = max(reach, last_use[chain[i]])
    if cuts[-1] != len(chain) - 1:
        cuts.append(len(chain) - 1)

    # Assign meta and get_attr nodes to the segment of their first user.
    segments: list[Segment] = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        segments.append(
            Segment(nodes=chain[a + 1 : b + 1], input_node=chain[a], output_node=chain[b])
        )
    seg_of = {n: s for s in segments for n in s.nodes}
    for n in nodes:
        if n.op == "get_attr" or _is_meta(n):
            users = [u for u in n.users if u in seg_of]
            if not users:
                continue
            seg = seg_of[min(users, key=lambda u: pos[u])]
            seg.nodes.append(n)
            seg_of[n] = seg
    order = {n: i for i, n in enumerate(nodes)}
    for seg in segments:
        seg.nodes.sort(key=lambda n: order[n])
        _describe(seg, gm)
    return TracedChain(graph_module=gm, segments=segments, placeholder=placeholders[0])


def _describe(seg: Segment, gm: fx.GraphModule) -> None:
    inside = set(seg.nodes)
    for n in seg.nodes:
        if n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            seg.module_names.append(str(n.target))
            seg.weighted |= _leaf_weighted(mod)
            seg.has_bn |= _contains_bn(mod)
            seg.has_skip |= _module_has_skip(mod)
        elif n.op == "get_attr":
            attr = _get_attr(gm, str(n.target))
            seg.weighted |= isinstance(attr, nn.Parameter)
        if n.op != "get_attr" and not _is_meta(n):
            data = [s for s in _data_inputs(n) if s in inside or s is seg.input_node]
            if len(data) > 1:
                seg.has_skip = True


def _get_attr(gm: fx.GraphModule, target: str) -> object:
    obj: object = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def build_function(gm: fx.GraphModule, segments: list[Segment]) -> fx.GraphModule:
    """A module computing the output of ``segments[-1]`` from the input of ``segments[0]``.

    The new module shares the original submodules and parameters (no copies), so parameter
    names inside it are the model's own.
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    env[segments[0].input_node] = graph.placeholder("z")
    for seg in segments:
        for n in seg.nodes:
            env[n] = graph.node_copy(n, lambda a: env[a])
    graph.output(env[segments[-1].output_node])
    graph.lint()
    return fx.GraphModule(gm, graph, class_name="BlockFunction")
