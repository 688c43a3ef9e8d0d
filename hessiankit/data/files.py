"""Data files: ``.pt`` holding ``{"x": Tensor, "y": Tensor}`` or ``.npz`` with arrays ``x``, ``y``.

Both are read without executing code: ``.pt`` with ``torch.load(weights_only=True)`` (tensors,
dicts, lists and numbers only), ``.npz`` with ``allow_pickle=False``. ``y`` is optional (the
Gauss-Newton local Hessian needs only inputs).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from hessiankit.errors import DataError
from hessiankit.io.torchfile import read_torch_file

__all__ = ["load_data_file", "save_data_file"]


def load_data_file(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read ``(x, y)`` from a ``.pt`` or ``.npz`` file (``y`` is ``None`` when absent).

    Raises:
        DataError: missing, unreadable or malformed file, or non-float inputs.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist; check the path given to --data")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        x, y = _npz(p)
    elif suffix in (".pt", ".pth"):
        x, y = _pt(p)
    else:
        raise DataError(
            f"data file {p.name!r} is neither .pt nor .npz; save x (and y) in one of those"
        )
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


def _npz(p: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    try:
        with np.load(p, allow_pickle=False) as f:
            if "x" not in f.files:
                raise DataError(
                    f"{p.name} has arrays {f.files} but no 'x'; save inputs as x (labels as y)"
                )
            x = torch.from_numpy(np.array(f["x"]))
            y = torch.from_numpy(np.array(f["y"])) if "y" in f.files else None
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(
            f"{p.name} holds object arrays ({exc}); store plain numeric arrays"
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {p.name} as .npz ({exc}); the file is damaged") from None
    return x, y


def _pt(p: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    obj = read_torch_file(
        p, error=DataError, fix='save a plain dict of tensors: torch.save({"x": x, "y": y}, path)'
    )
    if not isinstance(obj, dict) or "x" not in obj:
        raise DataError(
            f'{p.name} must hold a dict {{"x": Tensor, "y": Tensor}}; got {type(obj).__name__}'
        )
    x, y = obj["x"], obj.get("y")
    if not torch.is_tensor(x) or (y is not None and not torch.is_tensor(y)):
        raise DataError(f'the "x" and "y" entries of {p.name} must be tensors')
    return x, y
