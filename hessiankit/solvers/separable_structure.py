r"""Which local Hessians split exactly into independent parts: output channels, or samples.

**Channels (w.r.t. the weights).** In a block ``conv/linear -> [BN] -> element-wise activation
-> [pooling] -> [flatten]`` output channel o depends on its own parameters only (filter o, bias
o, ``gamma_o``, ``beta_o``), whatever the batch-norm mode: batch statistics mix samples, never
channels. So ``J = d vec F / d vec W`` is block-diagonal after permuting rows (outputs by
channel) and columns (parameters by channel), and the weight local Hessian is the direct sum

.. math::

    H_W = \bigoplus_o \tfrac1m J_o^T J_o ,

which also holds for the exact kind (``d^2 F_{o,i} / dW^2`` is supported on channel o's block).
A residual unit ``z + branch(z)`` (:class:`~hessiankit.models.Residual`) with such a branch has
the same structure and the same weight Jacobian: the identity path does not depend on the weights.

**Samples (w.r.t. the input).** Without batch coupling (no batch norm, or batch norm with running
statistics) sample i's output depends on sample i's input only, and ``H_z = \bigoplus_i J_i^T J_i``.

Detection takes two independent checks, both must pass:

* *module rules*: the block's traced graph is a chain of module types known to keep the parts
  apart. Channels: one ``Conv1d/2d/3d`` or ``Linear`` (on ``(samples, features)``) after
  parameter-free steps, then only ``BatchNorm1d/2d/3d`` of its channels, element-wise
  activations (ReLU, tanh, GELU, ...), dropout/identity, max/average/adaptive pooling of the
  matching rank, and one flatten of (channels, positions). Samples: those modules anywhere, any
  number of conv/linear layers, layer/group/instance norm, residual additions, batch norm with
  running statistics only. Anything else (a second weighted layer for channels, a channel-mixing
  op, a custom module, batch norm in train mode for the input) is refused with the reason;
* *a numerical probe*: random tangents supported on a few single parts (the first, the middle,
  the last) must give products supported on the same parts, to rounding.

:func:`find_separable_structure` returns ``None`` when either fails, so a caller falls back to
a Krylov or dense solver.

Example (a linear block: its 4 output units w.r.t. the weights, its 5 samples w.r.t. the input):
    >>> g = torch.Generator().manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> cap = hk.capture(net, torch.randn(5, 3, dtype=torch.float64, generator=g))
    >>> s = find_separable_structure(hk.LocalHessian(cap, 1))
    >>> s.axis, tuple(s.parts.shape), tuple(s.out_parts.shape)  # 4 units of 3+1 weights
    ('channels', (4, 4), (4, 5))
    >>> s = find_separable_structure(hk.LocalHessian(cap, 1, wrt="input"))
    >>> s.axis, tuple(s.parts.shape)  # 5 samples of 3 inputs
    ('samples', (5, 3))
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from hessiankit.blocks.capture import BlockCapture, run_block
from hessiankit.blocks.modes import BNMode
from hessiankit.blocks.module_kinds import BATCHNORM, CONV, DROPOUT
from hessiankit.operators.base import SymmetricOperator
from hessiankit.operators.dataset import DatasetOperator
from hessiankit.models.residual import Residual
from hessiankit.operators.local import LocalHessian

__all__ = [
    "FactoredBlock",
    "PostStep",
    "SeparableStructure",
    "separable_by_rules",
    "separable_side",
    "find_separable_structure",
    "separability",
]

_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
)
# Modules that are the identity in analysis mode (dropout is always off there).
_IDENTITY = (nn.Identity, *DROPOUT, nn.AlphaDropout)
# Pooling modules with the number of spatial dimensions they pool over.
_POOL_RANK: dict[type[nn.Module], int] = {
    nn.MaxPool1d: 1,
    nn.MaxPool2d: 2,
    nn.MaxPool3d: 3,
    nn.AvgPool1d: 1,
    nn.AvgPool2d: 2,
    nn.AvgPool3d: 3,
    nn.AdaptiveAvgPool1d: 1,
    nn.AdaptiveAvgPool2d: 2,
    nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1,
    nn.AdaptiveMaxPool2d: 2,
    nn.AdaptiveMaxPool3d: 3,
    nn.LPPool1d: 1,
    nn.LPPool2d: 2,
}
_ELEMENTWISE_FUNCTIONS: set[object] = {
    torch.relu,
    torch.tanh,
    torch.sigmoid,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.softplus,
    F.tanh,
    F.sigmoid,
    F.hardtanh,
}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid"}
_ADD_FUNCTIONS: set[object] = {operator.add, torch.add}


@dataclass(frozen=True, eq=False)
class PostStep:
    """One per-channel step after the weighted layer: ``"bn"``, ``"module"`` (stateless:
    activation or pooling), ``"function"`` (an element-wise call), ``"flatten"`` (of
    (channels, positions) per sample) or ``"identity"``."""

    kind: Literal["bn", "module", "function", "identity", "flatten"]
    module: nn.Module | None = None
    name: str = ""
    call: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True, eq=False)
class FactoredBlock:
    """A channel-separable block as ``post(lin(x))`` at the captured point (for the Jacobian
    route): the weighted layer's input ``x`` and output ``y`` and the per-channel steps after it.

    Attributes:
        lin: the weighted layer (``Conv1d/2d/3d`` with ``groups=1``, or ``Linear`` on
            ``(m, in)`` inputs).
        lin_name: its module path.
        x: its input at the captured point.
        y: its output, ``(m, C, *S)``.
        steps: the steps after it.
        buffers: the batch-norm buffers (running statistics) by full name.
        bn: the batch-norm mode of the capture.
        names: the operator's variables, in its order (each maps to one parameter).
        skip: for a residual unit ``z + post(lin(x))``, its input ``z`` (added to the output,
            constant in the weights); ``None`` otherwise.
    """

    lin: nn.Module
    lin_name: str
    x: torch.Tensor
    y: torch.Tensor
    steps: tuple[PostStep, ...]
    buffers: dict[str, torch.Tensor]
    bn: BNMode
    names: tuple[str, ...]
    skip: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class SeparableStructure:
    """The exact direct-sum structure of an operator.

    Attributes:
        axis: ``"channels"`` (weight local Hessian of a conv/linear block) or ``"samples"``
            (input local Hessian without batch coupling).
        parts: ``P x d`` long tensor: row p lists the flat variable indices of part p, so
            ``A[parts[p]][:, parts[p]]`` is part p's block and the blocks cover ``A``.
        out_parts: ``P x r`` long tensor of flat output indices per part (the output-space
            partition the dual route needs), ``None`` when no output Gram operator applies.
        reason: why the structure holds (the module chain that was recognised).
        factored: the block as ``post(lin(x))`` for the Jacobian route, ``None`` when not
            available.
        probe: the probe products ``(picked parts, tangents V, op @ V)``, for reuse.
    """

    axis: Literal["channels", "samples"]
    parts: torch.Tensor
    out_parts: torch.Tensor | None
    reason: str
    factored: FactoredBlock | None = None
    probe: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = field(default=None)

    @property
    def num_parts(self) -> int:
        return int(self.parts.shape[0])

    @property
    def part_size(self) -> int:
        """d: variables per part."""
        return int(self.parts.shape[1])

    @property
    def out_part_size(self) -> int | None:
        """r: outputs per part (``None`` without an output partition)."""
        return None if self.out_parts is None else int(self.out_parts.shape[1])


def find_separable_structure(op: SymmetricOperator, *, seed: int = 0) -> SeparableStructure | None:
    """The direct-sum structure of ``op``, or ``None`` when it cannot be established.

    ``op`` may be a :class:`LocalHessian` (either kind, weights or input) or a
    :class:`DatasetOperator` of local Hessians w.r.t. the weights. See :func:`separability`
    for the reason when ``None``.
    """
    return separability(op, seed=seed)[0]


def separable_by_rules(op: SymmetricOperator) -> bool:
    """Whether the module rules admit a direct-sum structure (no product; the probe may still
    refuse). For a solver policy that must know, before any product, which blocks
    :func:`separability` would take."""
    return isinstance(_rules(op), _Found)


def separable_side(op: SymmetricOperator) -> int | None:
    """The side of each part's Gram matrix (``min(d, r)``) if the module rules admit a
    direct-sum structure, else ``None`` (no product)."""
    got = _rules(op)
    if not isinstance(got, _Found):
        return None
    d = int(got.parts.shape[1])
    return d if got.out_parts is None else min(d, int(got.out_parts.shape[1]))


def _rules(op: SymmetricOperator) -> _Found | str:
    seen = op.observed
    dataset = isinstance(seen, DatasetOperator)
    base = seen.first_batch if isinstance(seen, DatasetOperator) else seen
    if not isinstance(base, LocalHessian):
        return f"{type(op).__name__} is not a local Hessian (nor a data set of them)"
    if base.wrt == "weights":
        return _channel_structure(base, allow_dual=not dataset and base.kind == "gauss-newton")
    if dataset:
        return "a data-set operator w.r.t. the input has no fixed dimension"
    return _sample_structure(base)


def separability(op: SymmetricOperator, *, seed: int = 0) -> tuple[SeparableStructure | None, str]:
    """``(structure, reason)``: the structure (or ``None``) and why it holds or does not.

    Uses a few operator products for the probe (at most three).
    """
    # Products go through ``op`` (counted, reported); the structure comes from what it observes.
    got = _rules(op)
    if isinstance(got, str):
        return None, got
    if got.parts.numel() != op.dim or torch.unique(got.parts).numel() != op.dim:
        return None, "the parts do not cover the variables"
    probe = _probe(op, got.parts, seed)
    if isinstance(probe, str):
        return None, probe
    structure = SeparableStructure(
        axis=got.axis,
        parts=got.parts,
        out_parts=got.out_parts,
        reason=got.reason,
        factored=None if isinstance(op.observed, DatasetOperator) else got.factored,
        probe=probe,
    )
    return structure, structure.reason


# --- module rules --------------------------------------------------------------------------


def _traced(function: object) -> tuple[fx.GraphModule, list[fx.Node]] | str:
    """The block function's graph and its data nodes, or why they cannot be read."""
    if not isinstance(function, fx.GraphModule):
        return "the block function is not a traced graph"
    nodes = [n for n in function.graph.nodes if n.op not in ("placeholder", "output")]
    if any(n.op == "get_attr" for n in nodes):
        return "the block reads tensors outside its modules (get_attr); cannot verify"
    return function, nodes


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    return gm.get_submodule(str(node.target))


def _is_flatten_call(node: fx.Node) -> bool:
    flat = (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    )
    if not flat:
        return False
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return bool(start == 1 and end == -1)


def _is_elementwise_call(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _node_call(node: fx.Node) -> Callable[[torch.Tensor], torch.Tensor]:
    rest, kwargs = node.args[1:], dict(node.kwargs)
    kwargs.pop("inplace", None)
    if node.op == "call_method":
        name = str(node.target)
        return lambda t: getattr(t, name)(*rest, **kwargs)
    fn = node.target
    assert callable(fn)  # call_function targets are callables
    return lambda t: fn(t, *rest, **kwargs)


@dataclass(frozen=True, eq=False)
class _Found:
    axis: Literal["channels", "samples"]
    parts: torch.Tensor
    out_parts: torch.Tensor | None
    reason: str
    factored: FactoredBlock | None


def _is_flatten_node(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        mod = _module(gm, node)
        return type(mod) is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1
    return _is_flatten_call(node)


def _residual_branch(
    gm: fx.GraphModule, nodes: list[fx.Node]
) -> tuple[fx.GraphModule, list[fx.Node], str, bool] | None:
    """For a block that is one :class:`~hessiankit.models.Residual` unit (identity skip),
    possibly followed by a flatten, its branch's graph, data nodes, module path prefix and
    whether the output is flattened; ``None`` otherwise."""
    if not nodes or nodes[0].op != "call_module":
        return None
    unit = _module(gm, nodes[0])
    if type(unit) is not Residual or not all(_is_flatten_node(gm, n) for n in nodes[1:]):
        return None
    try:
        branch = fx.symbolic_trace(unit.branch)
    except Exception:  # untraceable branch: no structure claimed  # noqa: BLE001
        return None
    traced = _traced(branch)
    if isinstance(traced, str):
        return None
    return traced[0], traced[1], f"{nodes[0].target}.branch.", len(nodes) > 1


def _channel_structure(op: LocalHessian, *, allow_dual: bool) -> _Found | str:
    blk, cap = op.block, op.capture
    if blk.index == 0:
        return "the whole model is not channel-separable"
    traced = _traced(blk.function)
    if isinstance(traced, str):
        return traced
    gm, nodes = traced
    # A residual unit z + branch(z) has the branch's weight Jacobian (the identity path does not
    # depend on the weights): analyse the branch, and add z back only to the output.
    residual = _residual_branch(gm, nodes)
    prefix, flatten_after = "", False
    if residual is not None:
        gm, nodes, prefix, flatten_after = residual
    prev: fx.Node | None = None
    for n in nodes:  # one chain: every node reads the one before it
        data = [a for a in n.all_input_nodes]
        if prev is not None and data != [prev]:
            return f"node {n.name} is not a simple chain step (skip connection or several inputs)"
        prev = n
    weighted = [
        i for i, n in enumerate(nodes) if n.op == "call_module" and _has_params(_module(gm, n))
    ]
    if not weighted:
        return "the block has no weighted module"
    w = weighted[0]
    lin = _module(gm, nodes[w])
    lin_name = prefix + str(nodes[w].target)
    if type(lin) not in (*CONV, nn.Linear):
        return f"{lin_name} ({type(lin).__name__}) is not a Conv1d/2d/3d or Linear layer"
    # Parameter-free steps before it only transform the fixed input. Record the weighted
    # layer's input and output at the captured point. the weighted layer's input and output at the captured point.
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = lin.register_forward_hook(lambda m, i, o: calls.append((i[0].detach(), o.detach())))
    try:
        with torch.no_grad():
            out = run_block(blk, cap.state, cap.bn, cap.block_input(blk))
    finally:
        hook.remove()
    if len(calls) != 1:
        return f"{lin_name} runs {len(calls)} times in the block"
    x, y = calls[0]
    if isinstance(lin, nn.Linear) and x.ndim != 2:
        return f"{lin_name} is applied to a {x.ndim}-d input; only (samples, features) is separable"
    C = int(y.shape[1])
    steps: list[PostStep] = []
    chain = [type(lin).__name__]
    ndim, flat = y.ndim, False
    params_ok = {f"{lin_name}.weight", f"{lin_name}.bias"}
    for n in nodes[w + 1 :]:
        if n.op == "call_module":
            mod = _module(gm, n)
            name = prefix + str(n.target)
            kind = type(mod)
            if kind in BATCHNORM:
                bn_mod: nn.modules.batchnorm._BatchNorm = mod  # type: ignore[assignment]
                if flat or bn_mod.num_features != C:
                    return f"{name} does not normalise the {C} output channels"
                steps.append(PostStep("bn", mod, name))
                params_ok |= {f"{name}.weight", f"{name}.bias"}
            elif kind in _ELEMENTWISE:
                steps.append(PostStep("module", mod, name))
            elif kind in _IDENTITY:
                steps.append(PostStep("identity", mod, name))
            elif kind in _POOL_RANK:
                if flat or _POOL_RANK[kind] != ndim - 2 or getattr(mod, "return_indices", False):
                    return f"{name} ({kind.__name__}) does not pool per channel here"
                steps.append(PostStep("module", mod, name))
            elif kind is nn.Flatten:
                fl: nn.Flatten = mod  # type: ignore[assignment]
                if residual is not None:
                    return f"{name} flattens inside a residual branch"
                if flat or fl.start_dim != 1 or fl.end_dim not in (-1, ndim - 1):
                    return f"{name} does not flatten (channels, positions) per sample"
                steps.append(PostStep("flatten", mod, name))
                flat = True
            else:
                return f"{name} ({kind.__name__}) may mix channels or has unknown behaviour"
            chain.append(kind.__name__)
        elif _is_elementwise_call(n):
            steps.append(PostStep("function", None, n.name, _node_call(n)))
            chain.append(str(getattr(n.target, "__name__", n.target)))
        elif _is_flatten_call(n) and not flat and residual is None:
            steps.append(PostStep("flatten", None, n.name))
            chain.append("flatten")
            flat = True
        else:
            return f"operation {n.name} ({n.target}) may mix channels"
    if flatten_after:  # after the skip is added: shape only, channel-major like the rest
        steps.append(PostStep("flatten", None, "flatten"))
        chain.append("flatten")
    names = tuple(op.primal_names)
    stray = [n for n in names if n not in params_ok]
    if stray:
        return f"parameter {stray[0]} is not per output channel"
    state = cap.state
    z = cap.block_input(blk) if residual is not None else None
    if z is not None and z[0].numel() != out[0].numel():
        return "the residual unit changes the shape of its input"
    if out.shape[0] != x.shape[0] or out[0].numel() % C:
        return "the block output is not (samples, channels x positions)"
    parts = _channel_parts([state.params[n] for n in names], C)
    if isinstance(parts, str):
        return parts
    m, S = int(out.shape[0]), out[0].numel() // C
    idx = torch.arange(m * C * S).reshape(m, C, S)
    out_parts = idx.permute(1, 0, 2).reshape(C, m * S) if allow_dual else None
    factored = None
    if allow_dual and (isinstance(lin, nn.Linear) or getattr(lin, "groups", 1) == 1):
        buffers = {
            b: state.buffers[b]
            for s in steps
            if s.kind == "bn"
            for b in (f"{s.name}.running_mean", f"{s.name}.running_var")
            if b in state.buffers
        }
        factored = FactoredBlock(lin, lin_name, x, y, tuple(steps), buffers, cap.bn, names, z)
    reason = " -> ".join(chain[:-1] if flatten_after else chain)
    if residual is not None:
        reason = f"Residual({reason})" + (" -> flatten" if flatten_after else "")
    reason += f": {C} output channels, each with its own parameters"
    return _Found("channels", parts, out_parts, reason, factored)


def _has_params(mod: nn.Module) -> bool:
    return any(True for _ in mod.parameters())


def _channel_parts(tensors: list[torch.Tensor], C: int) -> torch.Tensor | str:
    cols = []
    offset = 0
    for t in tensors:
        if t.ndim == 0 or t.shape[0] != C:
            return f"a parameter of shape {tuple(t.shape)} is not indexed by the {C} channels"
        per = t.numel() // C
        cols.append(offset + torch.arange(C)[:, None] * per + torch.arange(per)[None, :])
        offset += t.numel()
    return torch.cat(cols, dim=1)


_PER_SAMPLE = (
    *CONV,
    nn.Linear,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    *_ELEMENTWISE,
    *_IDENTITY,
    *_POOL_RANK,
    nn.Flatten,
)


def _sample_chain(
    gm: fx.GraphModule, nodes: list[fx.Node], cap: BlockCapture, prefix: str = ""
) -> list[str] | str:
    """The names of the per-sample steps, or why a node may couple samples (``prefix``: the
    module path of a residual branch being read)."""
    chain: list[str] = []
    for n in nodes:
        if n.op == "call_module":
            mod = _module(gm, n)
            if type(mod) in BATCHNORM:
                bn_mod: nn.modules.batchnorm._BatchNorm = mod  # type: ignore[assignment]
                if cap.bn == "train" or bn_mod.running_mean is None:
                    return f"{prefix}{n.target} normalises with batch statistics, which couple the samples"
            elif type(mod) is nn.Flatten:
                if getattr(mod, "start_dim", 0) < 1:
                    return f"{prefix}{n.target} flattens the batch dimension"
            elif type(mod) is Residual:  # z + branch(z): per sample when the branch is
                try:
                    traced = _traced(fx.symbolic_trace(mod.branch))
                except Exception:  # untraceable branch: no structure claimed  # noqa: BLE001
                    traced = f"{prefix}{n.target}'s branch cannot be traced"
                path = f"{prefix}{n.target}.branch."
                inner = traced if isinstance(traced, str) else _sample_chain(*traced, cap, path)
                if isinstance(inner, str):
                    return inner
                chain.append("Residual(" + " -> ".join(inner) + ")")
                continue
            elif type(mod) not in _PER_SAMPLE:
                return f"{prefix}{n.target} ({type(mod).__name__}) may couple samples or is unknown"
            chain.append(type(mod).__name__)
        elif _is_elementwise_call(n) or _is_flatten_call(n):
            chain.append(str(getattr(n.target, "__name__", n.target)))
        elif n.op == "call_function" and n.target in _ADD_FUNCTIONS:
            chain.append("add")
        else:
            return f"operation {n.name} ({n.target}) may couple samples"
    return chain


def _sample_structure(op: LocalHessian) -> _Found | str:
    blk, cap = op.block, op.capture
    traced = _traced(blk.function)
    if isinstance(traced, str):
        return traced
    chain = _sample_chain(*traced, cap)
    if isinstance(chain, str):
        return chain
    z = cap.block_input(blk)
    with torch.no_grad():
        out = run_block(blk, cap.state, cap.bn, z)
    m = int(z.shape[0])
    if out.ndim == 0 or out.shape[0] != m:
        return "the block output has no batch dimension"
    D, R = z[0].numel(), out[0].numel()
    parts = torch.arange(m * D).reshape(m, D)
    out_parts = torch.arange(m * R).reshape(m, R) if op.kind == "gauss-newton" else None
    reason = " -> ".join(chain) + f": {m} samples, no batch coupling"
    return _Found("samples", parts, out_parts, reason, None)


# --- numerical probe -----------------------------------------------------------------------


def _probe(
    op: SymmetricOperator, parts: torch.Tensor, seed: int
) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | str:
    """Random tangents on single parts must give products on the same parts."""
    P, d = parts.shape
    picks = tuple(sorted({0, P // 2, P - 1}))
    gen = torch.Generator().manual_seed(seed)
    V = torch.zeros((op.dim, len(picks)), dtype=op.dtype)
    for c, p in enumerate(picks):
        V[parts[p], c] = torch.randn(d, generator=gen, dtype=op.dtype)
    V = V.to(op.device)
    W = op.matmat(V)
    eps = torch.finfo(op.dtype).eps
    for c, p in enumerate(picks):
        inside = torch.zeros(op.dim, dtype=torch.bool, device=W.device)
        inside[parts[p].to(W.device)] = True
        col = W[:, c]
        scale = float(col.abs().max())
        leak = float(col[~inside].abs().max()) if bool((~inside).any()) else 0.0
        if not math.isfinite(scale) or leak > 100 * math.sqrt(d) * eps * max(scale, 1e-300):
            return (
                f"probe: a tangent on part {p} leaks into other parts "
                f"(|leak| {leak:.2e} vs {scale:.2e}); not separable"
            )
    return picks, V, W
