"""Data files: ``.pt`` holding ``{"x": Tensor, "y": Tensor}`` or ``.npz`` with arrays ``x``, ``y``.

Both are read without executing code: ``.pt`` with ``torch.load(weights_only=True)`` (tensors,
dicts, lists and numbers only), ``.npz`` with ``allow_pickle=False``. ``y`` is optional (the
Gauss-Newton local Hessian needs only inputs). Sizes are checked before anything is read: the
bytes a file declares (the ``.npy`` headers' shapes times item sizes, a ``torch.save``
archive's members) must stay under ``max_input_bytes``. Big-endian ``.npz`` arrays are
converted; long double, complex, structured and string arrays are refused with the reason.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from hessiankit.errors import DataError
from hessiankit.io.sniff import DEFAULT_MAX_INPUT_BYTES, format_bytes, readable_file
from hessiankit.io.torchfile import read_torch_file

__all__ = ["load_data_file", "save_data_file"]


def load_data_file(
    path: str | Path, *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read ``(x, y)`` from a ``.pt`` or ``.npz`` file (``y`` is ``None`` when absent).

    Args:
        path: the file.
        max_input_bytes: cap on the bytes the file declares, checked before reading.

    Raises:
        DataError: missing, unreadable, oversized or malformed file, non-float inputs,
            tensors without data (meta) or sparse ones.
    """
    p = readable_file(path, DataError, "data file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        x, y = _npz(p, max_input_bytes)
    elif suffix in (".pt", ".pth"):
        x, y = _pt(p, max_input_bytes)
    else:
        raise DataError(
            f"data file {p.name!r} is neither .pt nor .npz; save x (and y) in one of those"
        )
    for name, t in (("x", x), ("y", y)):
        if t is not None and (t.is_meta or t.layout != torch.strided):
            kind = "on the meta device (no data)" if t.is_meta else str(t.layout)[6:]
            raise DataError(f"{name} in {p.name} is {kind}; store a dense tensor with its values")
    if not x.is_floating_point():
        raise DataError(
            f"x in {p.name} has dtype {str(x.dtype).replace('torch.', '')}; store float inputs "
            "(e.g. images scaled to [0, 1])"
        )
    if x.ndim < 2 or x.shape[0] < 1:
        raise DataError(
            f"x in {p.name} has shape {tuple(x.shape)}; it needs a batch dimension first"
        )
    if y is not None:
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise DataError(
                f"y in {p.name} has shape {tuple(y.shape)} but x has {x.shape[0]} samples; "
                "give one label per sample"
            )
        if y.is_floating_point() and not bool(torch.isfinite(y).all()):
            raise DataError(f"y in {p.name} holds NaN/Inf; clean the labels")
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"x in {p.name} holds NaN/Inf; clean the data")
    return x, y


def save_data_file(path: str | Path, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Write ``x`` (and ``y``) in the format :func:`load_data_file` reads (by suffix)."""
    p = Path(path)
    if p.suffix.lower() == ".npz":
        arrays = {"x": x.detach().cpu().numpy()}
        if y is not None:
            arrays["y"] = y.detach().cpu().numpy()
        np.savez(p, **arrays)  # type: ignore[arg-type]
    else:
        torch.save({"x": x.detach().cpu()} | ({} if y is None else {"y": y.detach().cpu()}), p)


def _npz(p: Path, max_bytes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    try:
        with zipfile.ZipFile(p) as z:
            members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            if "x" not in members:
                raise DataError(
                    f"{p.name} has arrays {sorted(members)} but no 'x'; save inputs as x (labels as y)"
                )
            wanted = [k for k in ("x", "y") if k in members]
            declared = sum(_npy_bytes(p, z, k, members[k]) for k in wanted)
            if declared > max_bytes:
                raise DataError(
                    f"{p.name} declares {format_bytes(declared)} of arrays, over the "
                    f"{format_bytes(max_bytes)} input limit; raise max_input_bytes only if "
                    "you expect data that large"
                )
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: _native(f[k]) for k in wanted}
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{p.name} does not fit in memory; pass a smaller data file") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file: zipfile and numpy raise many kinds
        raise DataError(
            f"cannot read {p.name} as .npz ({_line(exc)}); the file is damaged"
        ) from None
    x = torch.from_numpy(arrays["x"])
    y = torch.from_numpy(arrays["y"]) if "y" in arrays else None
    return x, y


def _npy_bytes(p: Path, z: zipfile.ZipFile, key: str, member: str) -> int:
    """The bytes array ``key`` declares in its ``.npy`` header, refused for dtypes torch lacks."""
    fmt = np.lib.format
    with z.open(member) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise DataError(
                f"array {key} in {p.name} uses .npy format {version[0]}.{version[1]}; save it with "
                "numpy.savez"
            )
    why = _unsupported(dtype)
    if why:
        raise DataError(f"array {key} in {p.name} is {why}; store plain numbers (float64/int64)")
    return math.prod(int(s) for s in shape) * dtype.itemsize


def _unsupported(dtype: np.dtype) -> str | None:
    if dtype.fields is not None or dtype.kind == "V":
        return "a structured array (named fields)"
    if dtype.kind in "USa":
        return "an array of strings"
    if dtype.kind == "O":
        return "an array of Python objects (which would need pickle)"
    if dtype.kind == "c":
        return f"complex ({dtype.name})"
    if dtype.kind == "f" and dtype.itemsize > 8:
        return f"long double ({dtype.name}), which torch has no type for"
    if dtype.kind not in "fiub":
        return f"of dtype {dtype.name}"
    return None


def _native(a: np.ndarray) -> np.ndarray:
    """The array in native byte order (big-endian files are converted)."""
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return np.array(a)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _pt(p: Path, max_bytes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    obj = read_torch_file(
        p,
        error=DataError,
        fix='save a plain dict of tensors: torch.save({"x": x, "y": y}, path)',
        max_bytes=max_bytes,
    )
    if not isinstance(obj, dict) or "x" not in obj:
        raise DataError(
            f'{p.name} must hold a dict {{"x": Tensor, "y": Tensor}}; got {type(obj).__name__}'
        )
    x, y = obj["x"], obj.get("y")
    if not torch.is_tensor(x) or (y is not None and not torch.is_tensor(y)):
        raise DataError(f'the "x" and "y" entries of {p.name} must be tensors')
    return x, y
