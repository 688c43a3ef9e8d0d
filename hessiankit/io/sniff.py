"""What an input file is and how much memory it declares, from its header and zip directory only.

Nothing here reads a file whole: a 2 GB junk file costs one small read, a zip archive the
read of its central directory (and, for TorchScript, of its code files up to 1 MiB each).
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from hessiankit._defaults import DEFAULT_MAX_INPUT_BYTES
from hessiankit.errors import HessiankitError

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "check_declared_size",
    "format_bytes",
    "head",
    "is_torchscript",
    "is_zip",
    "readable_file",
    "torchscript_hazards",
]

_CODE_LIMIT = 2**20  # bytes read from each TorchScript code file

# What compiled TorchScript code can do that matters to a reader of someone else's file.
_HAZARDS: tuple[tuple[str, str], ...] = (
    (r"\bdef __setstate__\b", "a __setstate__ method, which runs while the archive loads"),
    (r"\btorch\.save\(", "torch.save (aten::save), which writes files"),
    (r"\bfrom_file\(", "torch.from_file (aten::from_file), which reads and maps files"),
    (r"\bops\.\w+\.\w+\(", "custom operators (torch.ops), which run native code"),
)


def readable_file(path: str | Path, error: type[HessiankitError], what: str = "file") -> Path:
    """``path`` as a :class:`Path` once it is known to be a regular file this process can read.

    Raises:
        error: missing, a folder, or unreadable (permissions).
    """
    p = Path(path)
    if not p.exists():
        raise error(f"{what} {str(p)!r} does not exist; check the path")
    if not p.is_file():
        raise error(f"{what} {str(p)!r} is not a regular file; give a file")
    try:
        with open(p, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise error(
            f"cannot read {what} {p.name} ({exc.strerror or type(exc).__name__}); check its permissions"
        ) from None
    return p


def head(path: str | Path, n: int = 8) -> bytes:
    """The first ``n`` bytes of a file."""
    with open(path, "rb") as f:
        return f.read(n)


def is_zip(path: str | Path) -> bool:
    """Whether ``path`` is a zip archive (reads the end of the file only)."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _names(path: str | Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return []


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with compiled ``code/``)."""
    if not is_zip(path):
        return False
    return any("/code/" in n or n.endswith("constants.pkl") for n in _names(path))


def torchscript_hazards(path: str | Path) -> list[str]:
    """What the compiled code of a TorchScript archive would do that a reader should know.

    Reads the ``code/*.py`` files (the archive's compiled TorchScript, at most 1 MiB each)
    as text; nothing is loaded or run. Empty when none of the known hazards is present,
    which does not make the archive safe: its ``forward`` still runs its own code.
    """
    found: dict[str, None] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if "/code/" not in info.filename or not info.filename.endswith(".py"):
                    continue
                with z.open(info) as f:
                    text = f.read(_CODE_LIMIT).decode("utf-8", "replace")
                for pattern, words in _HAZARDS:
                    if re.search(pattern, text):
                        found.setdefault(words, None)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError):
        pass
    return list(found)


def check_declared_size(
    path: str | Path,
    max_bytes: int,
    error: type[HessiankitError],
    what: str = "file",
) -> int:
    """The bytes ``path`` declares (a zip: its members uncompressed; otherwise its size),
    refused when over ``max_bytes``.

    Raises:
        error: over the cap, with the size and how to raise the cap.
    """
    p = Path(path)
    if is_zip(p):
        try:
            with zipfile.ZipFile(p) as z:
                declared = sum(i.file_size for i in z.infolist())
        except (OSError, zipfile.BadZipFile, ValueError, EOFError):
            declared = os.path.getsize(p)
    else:
        declared = os.path.getsize(p)
    if declared > max_bytes:
        raise error(
            f"{what} {p.name} declares {format_bytes(declared)} of contents, over the {format_bytes(max_bytes)} "
            "input limit; raise max_input_bytes only if you expect a file that large"
        )
    return declared


def format_bytes(n: int) -> str:
    """``n`` bytes in GiB or MiB, three significant digits."""
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"
