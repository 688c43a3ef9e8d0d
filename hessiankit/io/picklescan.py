"""What a pickle would call, read from its opcodes without executing any of them.

``torch.load(weights_only=True)`` with ``torch.nn`` classes allow-listed still *calls* an
allow-listed class when a pickle says ``REDUCE`` on it: a 2 KB file can run
``torch.nn.Linear(20000, 20000)`` and allocate gigabytes before anything can be checked. A
``torch.save(model)`` file never does that: it rebuilds modules with ``NEWOBJ``
(``cls.__new__``, no ``__init__``) and sets their state, and only *calls* torch's tensor
rebuild helpers. :func:`scan_pickle` walks the opcodes with a symbolic stack (names of
globals, string constants, the memo) and reports every callable a ``REDUCE``, ``INST`` or
``OBJ`` would call, so the loader can refuse anything but the rebuild helpers before loading.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass, field
from typing import IO

__all__ = ["REBUILD_CALLABLES", "PickleScan", "scan_pickle"]

#: Callables a weights-only ``torch.save`` file calls while loading: tensor and parameter
#: rebuild helpers and small containers. Every other call is refused before loading.
REBUILD_CALLABLES: frozenset[str] = frozenset(
    [
        "collections.OrderedDict",
        "torch.Size",
        "torch.device",
        "torch.serialization._get_layout",
        "torch.nn.parameter.Parameter",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_wrapper_subclass",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_nested_tensor",
        "torch._utils._rebuild_device_tensor_from_cpu_tensor",
        "torch._utils._rebuild_device_tensor_from_numpy",
        "torch._tensor._rebuild_from_type_v2",
        "_codecs.encode",
    ]
    + [
        f"{m}.{n}"
        for m in ("builtins", "__builtin__")
        for n in ("set", "frozenset", "bytearray", "complex", "slice")
    ]
)

_STRINGS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}


@dataclass(frozen=True)
class _Global:
    name: str


_MARK = object()


@dataclass
class PickleScan:
    """The result of :func:`scan_pickle`.

    Attributes:
        globals: every ``module.name`` the pickle imports, in order of appearance.
        calls: the callables it calls (``REDUCE``, ``INST``, ``OBJ``), ``None`` when the
            symbolic stack could not tell which.
        opcodes: how many opcodes were read.
    """

    globals: list[str] = field(default_factory=list)
    calls: list[str | None] = field(default_factory=list)
    opcodes: int = 0

    def unexpected_calls(self) -> list[str]:
        """Called names outside :data:`REBUILD_CALLABLES` (first occurrence of each)."""
        seen: dict[str, None] = {}
        for c in self.calls:
            if c is not None and c not in REBUILD_CALLABLES:
                seen.setdefault(c, None)
        return list(seen)


def scan_pickle(stream: IO[bytes], *, max_opcodes: int = 10_000_000) -> PickleScan:
    """Read one pickle (up to ``STOP``) from ``stream`` and list what it imports and calls.

    Nothing is imported or called. Raises ``ValueError`` for a malformed pickle (including
    one longer than ``max_opcodes``).

    Example:
        >>> import io, pickle, collections
        >>> scan = scan_pickle(io.BytesIO(pickle.dumps(collections.OrderedDict(a=1))))
        >>> scan.calls
        ['collections.OrderedDict']
    """
    scan = PickleScan()
    stack: list[object] = []
    memo: dict[int, object] = {}

    def pop_to_mark() -> list[object]:
        items: list[object] = []
        while stack:
            item = stack.pop()
            if item is _MARK:
                return items[::-1]
            items.append(item)
        raise ValueError("pickle pops past its stack (no MARK)")

    def name_of(item: object) -> str | None:
        return item.name if isinstance(item, _Global) else None

    for op, arg, _ in pickletools.genops(stream):
        scan.opcodes += 1
        if scan.opcodes > max_opcodes:
            raise ValueError(f"pickle has more than {max_opcodes} opcodes")
        name = op.name
        if name == "GLOBAL" or name == "INST":
            module, _, attr = str(arg).partition(" ")
            g = f"{module}.{attr}"
            scan.globals.append(g)
            if name == "INST":
                pop_to_mark()
                scan.calls.append(g)
                stack.append(None)
            else:
                stack.append(_Global(g))
            continue
        if name == "STACK_GLOBAL":
            attr_item, module_item = (
                (stack.pop() if stack else None),
                (stack.pop() if stack else None),
            )
            if isinstance(module_item, str) and isinstance(attr_item, str):
                g = f"{module_item}.{attr_item}"
                scan.globals.append(g)
                stack.append(_Global(g))
            else:
                stack.append(None)
            continue
        if name in _STRINGS:
            stack.append(arg if isinstance(arg, str) else None)
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
            continue
        if name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = stack[-1] if stack else None  # type: ignore[arg-type]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg)))  # type: ignore[arg-type]
            continue
        if name == "DUP":
            stack.append(stack[-1] if stack else None)
            continue
        if name == "REDUCE":
            if len(stack) >= 2:
                scan.calls.append(name_of(stack[-2]))
        elif name == "OBJ":
            items = pop_to_mark()
            scan.calls.append(name_of(items[0]) if items else None)
            stack.append(None)
            continue
        _apply_stack_effect(op, stack, pop_to_mark)
    return scan


def _apply_stack_effect(
    op: pickletools.OpcodeInfo, stack: list[object], pop_to_mark: object
) -> None:
    before, after = op.stack_before, op.stack_after
    if pickletools.markobject in before:
        pop_to_mark()  # type: ignore[operator]
        below = before.index(pickletools.markobject)
        keep = [stack.pop() if stack else None for _ in range(below)][::-1]
        # the items below the mark (a list, dict or set being extended) stay
        if after and after[0] is not pickletools.markobject and below:
            stack.extend(keep[: len(after)])
            return
    else:
        for _ in before:
            if stack:
                stack.pop()
    for item in after:
        stack.append(_MARK if item is pickletools.markobject else None)
