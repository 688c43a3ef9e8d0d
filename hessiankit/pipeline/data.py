"""The samples of a run, in batches: a data file, a named data set, or the default one.

Example:
    >>> from hessiankit.pipeline import DataOptions, ModelSource, load_batches, open_model
    >>> info = open_model(ModelSource(), torch.device("cpu"))
    >>> b = load_batches(DataOptions(dataset="synthetic", batch_size=4), info, torch.device("cpu"))
    >>> [tuple(x.shape) for x, _ in b.batches], b.loss
    ([(4, 1, 28, 28)], 'cross-entropy')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hessiankit.data import load_data_file, load_dataset, natural_shape
from hessiankit.errors import DataError
from hessiankit.pipeline.model import ModelInfo
from hessiankit.pipeline.options import DEFAULT_BATCH_SIZE, DataOptions

__all__ = ["FALLBACK_DATASETS", "Batches", "load_batches"]

#: Data sets the built-in default falls back through when Fashion-MNIST is not installed.
FALLBACK_DATASETS = ("fashion-mnist", "mnist", "digits", "synthetic")


@dataclass(frozen=True, eq=False)
class Batches:
    """Batches ``(x, y)`` (``y`` may be ``None``) and a description of where they came from."""

    batches: list[tuple[torch.Tensor, torch.Tensor | None]]
    description: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def has_labels(self) -> bool:
        return all(y is not None for _, y in self.batches)

    @property
    def loss(self) -> str:
        y = self.batches[0][1]
        return "mse" if y is not None and y.is_floating_point() else "cross-entropy"


def load_batches(args: DataOptions, info: ModelInfo, device: torch.device) -> Batches:
    """The batches ``data`` / ``dataset`` / the default data set give, on ``device``.

    Raises:
        DataError: missing file or package, too few samples, a shape that cannot be fitted.
    """
    k = args.num_batches
    notes: list[str] = []
    if args.data is not None:
        x, y = load_data_file(args.data, max_input_bytes=args.max_input_bytes)
        n = x.shape[0]
        if args.batch_size is None:  # the whole file, in k batches of near-equal size
            sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        else:  # batches of m, the last one may be short
            m = args.batch_size
            sizes = [max(0, min(m, n - i * m)) for i in range(k)]
        if min(sizes) < 1:
            raise DataError(
                f"{Path(args.data).name} has {n} samples, too few for num_batches={k}"
                + ("" if args.batch_size is None else f" of batch_size={args.batch_size}")
                + "; ask for fewer"
            )
        if args.input_shape is not None and tuple(x.shape[1:]) != tuple(args.input_shape):
            raise DataError(
                f"the data has samples of shape {tuple(x.shape[1:])} but input_shape= says "
                f"{tuple(args.input_shape)}; make them agree"
            )
        if args.batch_size is not None and sizes[-1] < args.batch_size:
            notes.append(
                f"{Path(args.data).name} has {n} samples: the last of the {k} batch(es) holds "
                f"{sizes[-1]}"
            )
        m = sizes[0]
        desc: dict[str, Any] = {"data": str(args.data), "samples": sum(sizes)}
        xs: torch.Tensor | None = x[: sum(sizes)]
        ys: torch.Tensor | None = None if y is None else y[: sum(sizes)]
    else:
        m = args.batch_size or DEFAULT_BATCH_SIZE
        sizes = [m] * k
        names = [args.dataset] if args.dataset else list(FALLBACK_DATASETS)
        xs = ys = None
        desc = {}
        for name in names:
            try:
                xs, ys = _dataset(name, args, info, m * k)
            except DataError as exc:
                if args.dataset or name == names[-1] or "not installed" not in str(exc):
                    raise
                notes.append(f"{exc}; falling back to the next data set")
                continue
            if name != names[0]:
                notes.append(
                    f"using dataset='{name}' (Fashion-MNIST is not installed: apt-get install "
                    "dataset-fashion-mnist)"
                )
            desc = {"dataset": name, "split": args.split, "samples": m * k}
            break
    assert xs is not None  # the loop either set it or raised
    batches = []
    start = 0
    for size in sizes:
        xb = xs[start : start + size].to(device)
        yb = None if ys is None else ys[start : start + size].to(device)
        batches.append((xb, yb))
        start += size
    desc.update(batch_size=m, num_batches=k, input_shape=list(xs.shape[1:]))
    if len(set(sizes)) > 1:
        desc["batch_sizes"] = sizes
    return Batches(batches, desc, notes)


def _dataset(
    name: str, args: DataOptions, info: ModelInfo, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = info.input_shape
    if info.channels_only and shape is not None:
        if name == "synthetic":
            raise DataError(
                "the synthetic data set needs the model's full input shape; give input_shape= (one "
                "sample's shape, like 3,32,32)"
            )
        nat = natural_shape(name)
        shape = (shape[0], *nat[1:]) if nat is not None else shape
    return load_dataset(
        name,
        split=args.split,
        num_samples=n,
        input_shape=shape,
        seed=args.seed,
        num_classes=info.num_outputs or 10,
    )
