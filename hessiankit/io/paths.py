"""Output paths checked before any computation: writable, a file name, never an input.

A bad output path should fail in a second, not after an hour of products, and an output must
never overwrite the model or data it was computed from (``--json model.pt``). A path ending in
a separator, or naming an existing folder, is a folder, not a file name.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "m.pt").write_bytes(b"model")
    >>> check_output(d / "r.json", inputs=[d / "m.pt"]).name
    'r.json'
    >>> check_output(d / "m.pt", inputs=[d / "m.pt"])
    Traceback (most recent call last):
    ...
    hessiankit.io.paths.OutputError: output ... is the input file m.pt; writing it would destroy the input; choose another path
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from hessiankit.errors import HessiankitError

__all__ = ["OutputError", "check_output", "same_file"]


class OutputError(HessiankitError, OSError):
    """An output file cannot be written."""


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: equal after resolving links, or hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    what: str = "output",
) -> Path:
    """``path`` as a :class:`Path` once it is known that a file can be written there now.

    Args:
        path: the output file.
        inputs: files the run reads (``None`` entries are skipped); the output may be none.
        what: how messages name the output (e.g. ``"output"``, ``"--json"``).

    Raises:
        OutputError: a folder name, a missing or unwritable folder, a read-only or special
            file, or an input file.
    """
    text = os.fspath(path)
    p = Path(text)
    if not text or text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)) or p.is_dir():
        raise OutputError(f"{what} {text!r} is a folder; give a file name")
    for source in inputs:
        if source is not None and same_file(p, source):
            raise OutputError(
                f"{what} {text!r} is the input file {Path(source).name}; writing it would "
                "destroy the input; choose another path"
            )
    parent = p.parent
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {text!r}: folder {str(parent)!r} does not exist; create it first"
        )
    if p.exists() and not p.is_file():
        raise OutputError(f"{what} {text!r} is not a regular file; choose another path")
    probe = parent / f".hessiankit-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write to folder {str(parent)!r} ({exc.strerror or type(exc).__name__}); "
            "choose another path"
        ) from None
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"cannot overwrite {text!r} (read-only); choose another path")
    return p
