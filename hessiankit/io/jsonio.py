"""JSON output that appears whole or not at all.

:func:`check_writable` runs before any computation (a bad output path fails in a second, not
after an hour; see :func:`hessiankit.io.paths.check_output`); :func:`write_json_atomic` writes
through :func:`hessiankit.io.atomic.write_atomic`, so an interrupted run never leaves a partial
file. Non-finite floats become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hessiankit.io.atomic import write_atomic
from hessiankit.io.paths import OutputError, check_output

__all__ = ["OutputError", "check_writable", "to_jsonable", "write_json_atomic"]


def check_writable(path: str | Path) -> Path:
    """Fail now if ``path`` cannot be written (missing folder, no permission, a folder).

    Raises:
        OutputError: with the reason and the fix.
    """
    return check_output(path)


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
    write_atomic(p, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")
