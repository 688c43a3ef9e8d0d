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
import io
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn, serialization

from hessiankit.errors import HessiankitError, ModelLoadError
from hessiankit.io.picklescan import REBUILD_CALLABLES, scan_pickle
from hessiankit.io.sniff import (
    DEFAULT_MAX_INPUT_BYTES,
    check_declared_size,
    head,
    is_torchscript,
    is_zip,
    readable_file,
    torchscript_hazards,
)

__all__ = [
    "TORCH_NN_CLASSES",
    "blocked_globals",
    "is_payload",
    "read_torch_file",
    "torchscript_refusal",
]

_MAX_PICKLE_BYTES = 256 * 2**20  # a pickle of module structure and tensor metadata is far smaller

#: Every ``nn.Module`` subclass that ``torch.nn`` exports (Linear, Conv2d, BatchNorm2d, ReLU,
#: Sequential, ...): the classes a ``torch.save(model)`` file may name and still load safely.
TORCH_NN_CLASSES: tuple[type, ...] = tuple(
    sorted(
        {c for c in vars(nn).values() if inspect.isclass(c) and issubclass(c, nn.Module)},
        key=lambda c: f"{c.__module__}.{c.__qualname__}",
    )
)
_ALLOWED_NAMES = frozenset(f"{c.__module__}.{c.__qualname__}" for c in TORCH_NN_CLASSES)

# What a pickled NumPy array names: a data format, not code, but not one the safe loader reads.
_NUMPY_ARRAY_NAMES = frozenset(
    f"{m}.{n}"
    for m in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy")
    for n in ("_reconstruct", "scalar", "ndarray", "dtype")
) | frozenset(f"numpy.dtypes.{t}DType" for t in ("Float64", "Float32", "Int64", "Int32", "Bool"))

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
    """Whether a pickle GLOBAL ``name`` is code rather than a class to rebuild.

    Code is a callable from a module that runs code or touches the system (``os``,
    ``subprocess``, ``builtins``, ...) and any *function* (a name that does not start with a
    capital letter: ``timeit.timeit``, ``torch.hub.load``, ``numpy.load``, ...) other than
    torch's tensor rebuild helpers. Decided from the name alone: nothing is imported.
    """
    if name in REBUILD_CALLABLES or name in _ALLOWED_NAMES:
        return False
    if name.split(".", 1)[0] in _PAYLOAD_MODULES:
        return True
    last = name.rsplit(".", 1)[-1].lstrip("_")
    return not last[:1].isupper()


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
    fix: str = "pass trust_pickle=True only if you trust the file",
    max_bytes: int | None = None,
) -> object:
    """``torch.load`` on CPU, safely unless ``trust``.

    Before anything is unpickled the file is sniffed from its header, its declared size is
    checked against ``max_bytes`` and (unless ``trust``) its pickle is scanned: a name outside
    ``torch.nn`` or a call other than torch's tensor rebuild helpers (see
    :mod:`hessiankit.io.picklescan`) stops loading. TorchScript archives are refused, trusted
    or not (``torch.load`` would run their compiled code; :func:`~hessiankit.io.load_model`
    loads them with ``trust_torchscript=True``).

    Args:
        path: the file.
        trust: unpickle anything (runs the file's code).
        error: the error class to raise (ModelLoadError for models, DataError for data).
        fix: the advice appended when an unknown class blocks loading.
        max_bytes: cap on the bytes the file declares (default
            :data:`~hessiankit.io.sniff.DEFAULT_MAX_INPUT_BYTES`).

    Raises:
        error: missing, unreadable, oversized or damaged file, a code payload, a class outside
            ``torch.nn``, a TorchScript archive.
    """
    p = readable_file(path, error)
    check_declared_size(p, DEFAULT_MAX_INPUT_BYTES if max_bytes is None else max_bytes, error)
    zipped = is_zip(p)
    if not zipped and head(p, 1) != b"\x80":
        raise error(
            f"{p.name} is not a PyTorch file (neither a torch.save archive nor a pickle); check the path"
        )
    if zipped and is_torchscript(p):  # torch.load would hand it to torch.jit.load
        raise error(torchscript_refusal(p))
    if not trust:
        names = blocked_globals(p)
        if names:
            raise error(_blocked_message(p, names, fix))
        calls = _unexpected_calls(p, error)
        if calls:
            raise error(_call_message(p, calls[0], fix))
    try:
        if trust:
            return torch.load(p, map_location="cpu", weights_only=False)
        with serialization.safe_globals(list(TORCH_NN_CLASSES)):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        if names and not trust:
            raise error(_blocked_message(p, names, fix)) from None
        if "persistent_load" in str(exc) and not zipped:
            raise error(
                f"{p.name} uses torch's legacy (pre-1.6) format, which stores a model's source "
                f"code and cannot be loaded safely; re-save it with torch.save, or {fix}"
            ) from None
        raise error(
            f"{p.name} is not a readable PyTorch file ({_unpickler_reason(exc)}); it is damaged or of another format"
        ) from None
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        # Only reachable with trust: the file names code that is not importable here.
        raise error(_missing_code_message(p, exc)) from None
    except MemoryError:
        raise error(
            f"{p.name} asks for more memory than this machine has; it is damaged or hostile"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file: torch raises many kinds
        raise error(
            f"{p.name} is not a readable PyTorch file ({_first_line(exc)}); it is damaged or truncated"
        ) from None


def torchscript_refusal(p: Path) -> str:
    """The one-line refusal of a TorchScript archive, naming what its code would do."""
    hazards = torchscript_hazards(p)
    what = (
        f"its code has {'; '.join(hazards)}"
        if hazards
        else "loading runs its __setstate__ methods and its forward runs its own code"
    )
    return (
        f"refusing to load {p.name}: it is a TorchScript archive, and loading one runs the "
        f"compiled code inside it ({what}); pass trust_torchscript=True only if you made or "
        "trust the file"
    )


def _unexpected_calls(p: Path, error: type[HessiankitError]) -> list[str]:
    """Callables the file's pickle(s) would call besides torch's rebuild helpers."""
    try:
        if is_zip(p):
            with zipfile.ZipFile(p) as z:
                pkl = [i for i in z.infolist() if i.filename.endswith("data.pkl")]
                if not pkl:
                    return []  # not a torch.save archive: torch.load says so
                if pkl[0].file_size > _MAX_PICKLE_BYTES:
                    raise error(
                        f"{p.name} holds a {pkl[0].file_size / 2**20:.0f} MiB pickle, far more than "
                        "a model's or a data file's structure needs; it is damaged or hostile"
                    )
                with z.open(pkl[0]) as f:
                    return scan_pickle(io.BytesIO(f.read(_MAX_PICKLE_BYTES))).unexpected_calls()
        calls: list[str] = []
        with open(p, "rb") as f:
            # the legacy format: magic number, protocol, system info, then the object
            for _ in range(4):
                if not f.peek(1)[:1]:
                    break
                calls += scan_pickle(f).unexpected_calls()
        return calls
    except HessiankitError:
        raise
    except Exception:  # noqa: BLE001 - malformed: loading reports it precisely
        return []


def _call_message(p: Path, name: str, fix: str) -> str:
    if name in _ALLOWED_NAMES:
        return (
            f"refusing to load {p.name}: its pickle calls {name} with arguments when loaded, which "
            "a torch.save file never does (it builds modules without calling them) and which can "
            "allocate any amount of memory; do not use this file"
        )
    return _blocked_message(p, [name], fix)


def _blocked_message(p: Path, names: list[str], fix: str) -> str:
    arrays = [n for n in names if n in _NUMPY_ARRAY_NAMES]
    if arrays:
        return (
            f"{p.name} holds NumPy arrays pickled as objects ({arrays[0]}), which the safe loader "
            "does not read; save torch tensors (torch.from_numpy(a)) or an .npz file instead"
        )
    payload = [n for n in names if is_payload(n)]
    if payload:
        return (
            f"refusing to load {p.name}: its pickle calls {payload[0]} when loaded (code, not a "
            "model or data); do not use this file"
        )
    main = [n for n in names if n.startswith("__main__.")]
    if main:
        return _main_message(p, main[0])
    return (
        f"{p.name} needs class {names[0]}, which is not in torch.nn, and loading it would run "
        f"the file's code; {fix}"
    )


def _main_message(p: Path, name: str) -> str:
    return (
        f"{p.name} needs class {name}, defined in the script that saved it, which cannot be "
        "imported here (not even with trust_pickle=True); move the class into a module (e.g. "
        "net.py), save torch.save(model.state_dict(), path) and load it with arch=net:Net"
    )


def _missing_code_message(p: Path, exc: BaseException) -> str:
    if "__main__" in str(exc):
        name = re.search(r"attribute '(\w+)'", str(exc))
        return _main_message(p, f"__main__.{name.group(1) if name else '?'}")
    return (
        f"{p.name} needs code that is not importable here ({_first_line(exc)}); install the "
        "package that defines the model, or put its folder on PYTHONPATH (e.g. PYTHONPATH=.)"
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
