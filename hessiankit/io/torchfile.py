"""Reading ``torch.save`` files without running the code a pickle can carry.

A pickle names Python callables (``GLOBAL module.name``) and calls them while loading: a file
can run ``os.system`` or ``eval`` the moment it is unpickled. :func:`read_torch_file` therefore
loads with ``torch.load(weights_only=True)`` (tensors, containers, numbers) and admits, besides,
only the module classes of ``torch.nn`` (:data:`TORCH_NN_CLASSES`): their reconstruction runs
torch's own ``__setstate__``, never code from the file. Before loading, the names a file would
call are listed (without executing anything) so the error can say which one blocked it.

``trust=True`` is plain ``torch.load(weights_only=False)``: it runs whatever the file says, as
a colleague's training script would; it exists for files the user made or trusts.
"""

from __future__ import annotations

import inspect
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn, serialization

from hessiankit.errors import HessiankitError, ModelLoadError

__all__ = ["TORCH_NN_CLASSES", "blocked_globals", "is_payload", "read_torch_file"]

#: Every ``nn.Module`` subclass that ``torch.nn`` exports (Linear, Conv2d, BatchNorm2d, ReLU,
#: Sequential, ...): the classes a ``torch.save(model)`` file may name and still load safely.
TORCH_NN_CLASSES: tuple[type, ...] = tuple(
    sorted(
        {c for c in vars(nn).values() if inspect.isclass(c) and issubclass(c, nn.Module)},
        key=lambda c: f"{c.__module__}.{c.__qualname__}",
    )
)
_ALLOWED_NAMES = frozenset(f"{c.__module__}.{c.__qualname__}" for c in TORCH_NN_CLASSES)

# Modules whose callables execute code or touch the system: a GLOBAL from them is a payload.
_PAYLOAD_MODULES = frozenset(
    [
        "os",
        "posix",
        "nt",
        "subprocess",
        "builtins",
        "__builtin__",
        "sys",
        "runpy",
        "importlib",
        "shutil",
        "socket",
        "pty",
        "code",
        "codeop",
        "webbrowser",
        "ctypes",
        "pickle",
        "marshal",
        "types",
        "functools",
        "operator",
        "pathlib",
        "io",
        "tempfile",
        "commands",
        "popen2",
        "platform",
        "multiprocessing",
        "asyncio",
        "threading",
        "signal",
        "urllib",
        "requests",
    ]
)


def is_payload(name: str) -> bool:
    """Whether a pickle GLOBAL ``name`` is a callable that runs code (not a class to rebuild)."""
    return name.split(".", 1)[0] in _PAYLOAD_MODULES


def blocked_globals(path: str | Path) -> list[str] | None:
    """Names a ``torch.save`` zip file would call that the safe loader refuses.

    Lists the pickle's GLOBAL opcodes without executing anything; ``None`` when the file is not
    a zip archive (the legacy format), where only loading tells.
    """
    if not zipfile.is_zipfile(path):
        return None
    try:
        names = serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - a damaged archive: loading will say so precisely
        return None
    return [n for n in names if n not in _ALLOWED_NAMES]


def read_torch_file(
    path: str | Path,
    *,
    trust: bool = False,
    error: type[HessiankitError] = ModelLoadError,
    fix: str = "pass --trust-pickle only if you trust the file",
) -> object:
    """``torch.load`` on CPU, safely unless ``trust``.

    Args:
        path: the file.
        trust: unpickle anything (runs the file's code).
        error: the error class to raise (ModelLoadError for models, DataError for data).
        fix: the advice appended when an unknown class blocks loading.

    Raises:
        error: missing or damaged file, a code payload, or a class outside ``torch.nn``.
    """
    p = Path(path)
    if not p.is_file():
        raise error(f"file {str(p)!r} does not exist; check the path")
    if not zipfile.is_zipfile(p) and p.read_bytes()[:1] != b"\x80":
        raise error(
            f"{p.name} is not a PyTorch file (neither a torch.save archive nor a pickle); check the path"
        )
    if not trust:
        names = blocked_globals(p)
        if names:
            raise error(_blocked_message(p, names, fix))
    try:
        if trust:
            return torch.load(p, map_location="cpu", weights_only=False)
        with serialization.safe_globals(list(TORCH_NN_CLASSES)):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        if names and not trust:
            raise error(_blocked_message(p, names, fix)) from None
        if "persistent_load" in str(exc) and not zipfile.is_zipfile(p):
            raise error(
                f"{p.name} uses torch's legacy (pre-1.6) format, which stores a model's source "
                f"code and cannot be loaded safely; re-save it with torch.save, or {fix}"
            ) from None
        raise error(
            f"{p.name} is not a readable PyTorch file ({_unpickler_reason(exc)}); it is damaged or of another format"
        ) from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise error(
            f"{p.name} is not a readable PyTorch file ({_first_line(exc)}); it is damaged or truncated"
        ) from None
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        # Only reachable with trust: the file names code that is not installed.
        raise error(
            f"{p.name} needs code that is not importable here ({_first_line(exc)}); install the package that defines the model"
        ) from None


def _blocked_message(p: Path, names: list[str], fix: str) -> str:
    payload = [n for n in names if is_payload(n)]
    if payload:
        return (
            f"refusing to load {p.name}: its pickle calls {payload[0]} when loaded (a code "
            "payload, not a model); do not use this file"
        )
    return (
        f"{p.name} needs class {names[0]}, which is not in torch.nn, and loading it would run "
        f"the file's code; {fix}"
    )


def _unpickler_reason(exc: BaseException) -> str:
    # torch's message starts with a long preamble; the reason follows "WeightsUnpickler error:".
    text = str(exc)
    _, sep, rest = text.partition("WeightsUnpickler error:")
    if sep:
        for line in rest.splitlines():
            if line.strip():
                return line.strip()[:200]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:200]
    return type(exc).__name__
