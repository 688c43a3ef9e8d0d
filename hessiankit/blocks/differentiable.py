"""Refuse models whose second derivatives autograd cannot give.

A custom ``torch.autograd.Function`` whose ``backward`` is decorated with
``@once_differentiable`` has no derivative of its backward: a Hessian-vector product through it
either raises or, where a missing derivative is read as "does not depend" (``allow_unused``),
comes out as zeros. A Hessian that is silently zero (rank 0, "converged") is worse than an
error, so :func:`check_twice_differentiable` runs one small forward pass, walks the autograd
graph of every module's output back to its inputs, and names the innermost module that calls
such a Function.

Example:
    >>> check_twice_differentiable(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), torch.randn(4, 3))
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from hessiankit.errors import OperatorError

__all__ = ["check_twice_differentiable", "once_differentiable_calls"]

_TORCH_FUNCTION_FILE = os.path.join("torch", "autograd", "function.py")


def _is_once_differentiable(node: object) -> str | None:
    """The Function's name when ``node`` is the backward of a ``@once_differentiable`` one."""
    cls = getattr(type(node), "_forward_cls", None)
    code = getattr(getattr(cls, "backward", None), "__code__", None)
    if code is None or cls is None:
        return None
    # once_differentiable wraps backward in a closure named "wrapper" defined in torch's file
    if code.co_name == "wrapper" and code.co_filename.endswith(_TORCH_FUNCTION_FILE):
        return str(cls.__name__)
    return None


def _tensors(obj: object) -> Iterator[torch.Tensor]:
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def once_differentiable_calls(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """``(module name, Function name)`` for each ``@once_differentiable`` Function the forward
    pass of ``model`` on ``x`` calls, attributed to the innermost module that calls it.

    The pass runs under ``torch.enable_grad`` on a copy of ``x`` that requires grad; buffers
    (batch-norm running statistics) and the random state are restored afterwards.
    """
    found: dict[int, tuple[str, str]] = {}
    keep: list[object] = []  # the nodes, alive, so that their ids stay unique
    boundary: dict[str, set[int]] = {}

    def pre(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple[object, ...]) -> None:
            boundary[name] = {id(t.grad_fn) for t in _tensors(args) if t.grad_fn is not None}

        return hook

    def post(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple[object, ...], out: object) -> None:
            stop = boundary.pop(name, set())
            todo: list[Any] = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
            seen: set[int] = set()
            while todo:
                node = todo.pop()
                if node is None or id(node) in seen or id(node) in stop:
                    continue
                seen.add(id(node))
                keep.append(node)
                fn = _is_once_differentiable(node)
                if fn is not None and id(node) not in found:
                    found[id(node)] = (name or type(module).__name__, fn)
                todo.extend(n for n, _ in node.next_functions)

        return hook

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        # the random state is restored too: dropout in this pass must not shift later draws
        with torch.enable_grad(), torch.random.fork_rng(devices=devices):
            model(x.detach().clone().requires_grad_(x.is_floating_point()))
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in buffers:
                    b.copy_(buffers[n])
    return list(dict.fromkeys(found.values()))


def check_twice_differentiable(model: nn.Module, x: torch.Tensor) -> None:
    """Raise when the forward pass of ``model`` on ``x`` (two samples of it suffice) calls a
    ``@once_differentiable`` autograd Function. A forward pass that fails is left to the
    capture, which reports it.

    Raises:
        OperatorError: naming the module and the Function.
    """
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    sample = x[:2]
    if param is not None and sample.is_floating_point():
        sample = sample.to(dtype=param.dtype, device=param.device)
    try:
        calls = once_differentiable_calls(model, sample)
    except Exception:  # noqa: BLE001 - data that does not fit: the capture says so precisely
        return
    if calls:
        module, fn = calls[0]
        raise OperatorError(
            f"module {module!r} calls the autograd Function {fn}, whose backward is "
            "@once_differentiable: second derivatives through it do not exist, so every Hessian "
            "through it would come out as zeros; give the Function a differentiable backward "
            "(drop @once_differentiable) or replace the module"
        )
