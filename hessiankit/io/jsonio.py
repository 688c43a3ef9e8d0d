"""JSON output that appears whole or not at all.

:func:`check_writable` runs before any computation (a bad ``--json`` path fails in a second,
not after an hour); :func:`write_json_atomic` writes to a temporary file in the same folder and
renames it over the target (``os.replace`` is atomic on POSIX and Windows), so an interrupted
run never leaves a partial file. Non-finite floats become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from hessiankit.errors import HessiankitError

__all__ = ["OutputError", "check_writable", "to_jsonable", "write_json_atomic"]


class OutputError(HessiankitError, OSError):
    """An output file cannot be written."""


def check_writable(path: str | Path) -> Path:
    """Fail now if ``path`` cannot be written (missing folder, no permission, a directory).

    Raises:
        OutputError: with the reason and the fix.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"--json {str(p)!r} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {str(p)!r}: folder {str(parent)!r} does not exist; create it first"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".hessiankit-", delete=True):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to folder {str(parent)!r} ({exc.strerror}); choose another --json path"
        ) from None
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"cannot overwrite {str(p)!r} (read-only); choose another --json path")
    return p


def to_jsonable(obj: object) -> object:
    """Numbers, strings, lists and dicts only; NaN/Inf become ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    p = check_writable(path)
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(
        dir=p.parent if str(p.parent) else ".", prefix=".hessiankit-", suffix=".json"
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
