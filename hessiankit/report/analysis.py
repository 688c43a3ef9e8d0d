"""What a report holds: per block, the extreme spectrum, the trace and the SLQ density.

:func:`analyse_blocks` runs the library's solvers on one operator per block and returns frozen
:class:`BlockAnalysis` records; :class:`Report` adds the run's settings. Rendering
(:mod:`hessiankit.report.html`, :mod:`hessiankit.report.markdown`) only reads these objects.

Example:
    >>> from hessiankit.report import analyse_blocks
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> cap = hk.capture(net, torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,)))
    >>> rows = analyse_blocks(cap, density_probes=2, density_steps=10)
    >>> [(r.index, r.spectrum.dimension, r.spectrum.condition.rank) for r in rows]
    [(1, 16, 16), (2, 10, 10)]
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hessiankit._version import __version__
from hessiankit.blocks.capture import BlockCapture
from hessiankit.blocks.split import Block
from hessiankit.diagnostics.summary import Diagnostics
from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.operators.local import Kind, Wrt
from hessiankit.pipeline import Progress, SolverOptions, block_operators, select_blocks, solve_one
from hessiankit.solvers.results import SpectrumResult
from hessiankit.solvers.slq import SpectralDensity, slq
from hessiankit.solvers.spectrum import Method
from hessiankit.solvers.trace import TraceResult, trace

__all__ = ["BlockAnalysis", "Report", "analyse_blocks", "run_settings"]

ProgressFn = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class BlockAnalysis:
    """Everything a report says about one block's operator.

    Attributes:
        index: block number (from 1).
        name: the block's module path.
        spectrum: extreme eigenvalues and condition number.
        trace: Hutchinson / Hutch++ estimate with its standard error.
        density: SLQ spectral density (``None`` when not asked for).
        modules: the block's modules, e.g. ``"Conv2d(2, 3) + BatchNorm2d + ReLU"``.
    """

    index: int
    name: str
    spectrum: SpectrumResult
    trace: TraceResult
    density: SpectralDensity | None
    modules: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def exact_trace(self) -> float | None:
        """``sum(eigenvalues)`` when the whole spectrum is known (dense or exhausted Lanczos)."""
        ev = self.spectrum.eigenvalues
        return None if ev is None else float(np.sum(ev))

    @property
    def converged(self) -> bool:
        return self.spectrum.converged and self.spectrum.condition.converged

    def to_dict(self) -> dict[str, object]:
        return {
            "block": self.index,
            "name": self.name,
            "modules": self.modules,
            "warnings": list(self.warnings),
            "spectrum": self.spectrum.to_dict(),
            "trace": {
                **self.trace.to_dict(),
                "trace_exact": self.exact_trace,
                "trace_seconds": self.trace.seconds,
            },
            "density": None if self.density is None else self.density.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class Report:
    """A report: a title, the run's settings and one :class:`BlockAnalysis` per block, and
    optionally the diagnostics beyond the paper
    (:func:`~hessiankit.diagnostics.summary.run_diagnostics`), rendered as their own section."""

    title: str
    settings: dict[str, object]
    blocks: tuple[BlockAnalysis, ...]
    diagnostics: Diagnostics | None = None

    def to_dict(self) -> dict[str, object]:
        """Every number of the report, for its JSON twin."""
        out: dict[str, object] = {
            "title": self.title,
            "settings": dict(self.settings),
            "blocks": [b.to_dict() for b in self.blocks],
        }
        if self.diagnostics is not None:
            out["diagnostics"] = self.diagnostics.to_dict()
        return out


def run_settings(capture: BlockCapture, **extra: object) -> dict[str, object]:
    """The settings a reader needs to reproduce a run: batch, BN mode, dtype, versions, ...

    ``extra`` (data description, seed, wrt, kind, ...) is added as given, before the versions.
    """
    import matplotlib
    import scipy
    import torch

    return {
        "batch_size": capture.batch_size,
        "bn": capture.bn,
        "dtype": str(capture.dtype).replace("torch.", ""),
        "loss": None if capture.loss is None else float(capture.loss),
        **extra,
        "versions": {
            "hessiankit": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "matplotlib": matplotlib.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }


def analyse_blocks(
    capture: BlockCapture,
    blocks: Literal["all"] | Sequence[int | str] = "all",
    *,
    wrt: Wrt = "weights",
    kind: Kind = "gauss-newton",
    eta: float = 1.0,
    top: int = 10,
    bottom: int = 1,
    method: Method = "auto",
    tol: float = 1e-6,
    trace_method: Literal["hutchinson", "hutch++"] = "hutch++",
    trace_products: int = 60,
    density: bool = True,
    density_probes: int = 8,
    density_steps: int = 80,
    seed: int = 0,
    progress: ProgressFn | None = None,
    product_progress: Callable[[int, int], None] | None = None,
    options: Mapping[str, Any] | None = None,
    make_operator: Callable[[Block], SymmetricOperator] | None = None,
) -> tuple[BlockAnalysis, ...]:
    """Spectrum, trace and (optionally) SLQ density of one operator per block.

    Args:
        capture: the recorded batch.
        blocks: ``"all"`` or block numbers / module paths.
        wrt, kind, eta: which operator (see :func:`hessiankit.hessian_operator`).
        top, bottom: how many extreme eigenvalues (``top`` is capped at the block's dimension).
        method, tol: passed to :func:`hessiankit.spectrum`.
        trace_method, trace_products: passed to :func:`hessiankit.trace`.
        density: whether to run SLQ.
        density_probes, density_steps: SLQ probes and Lanczos steps.
        seed: seed of every random draw (the same for each block).
        progress: called with a short message before each stage (3 per block).
        product_progress: called as ``(products_used, budget)`` inside each stage.
        options: ``rank_rtol``, ``dense_threshold`` and ``max_products`` for
            :func:`hessiankit.spectrum`.
        make_operator: builds a block's operator instead of ``hessian_operator(capture, block,
            wrt=wrt, kind=kind, eta=eta)`` (e.g. an average over several batches).

    Raises:
        BlockError: an unknown block.
        OperatorError: an operator that cannot be built with these options.
    """
    ops = block_operators(capture, wrt=wrt, kind=kind, eta=eta)
    chosen = select_blocks(capture.split, blocks)
    extra: dict[str, Any] = dict(options or {})
    unknown = set(extra) - {"rank_rtol", "dense_threshold", "max_products"}
    if unknown:
        raise OperatorError(
            f"unknown spectrum option(s) {sorted(unknown)}; use rank_rtol, dense_threshold or "
            "max_products"
        )
    solver = SolverOptions(
        top=top, bottom=bottom, method=method, tol=tol, seed=seed, clip=True, **extra
    )
    products = _Products(product_progress)
    out = []
    for blk in chosen:
        op: SymmetricOperator = ops.make(blk) if make_operator is None else make_operator(blk)

        def say(stage: str, b: Block = blk) -> None:
            if progress is not None:
                progress(f"block {b.index} ({b.name}): {stage}")

        say(f"spectrum (dimension {op.dim})")
        spec = solve_one(blk, op, solver, kind=kind, progress=products).spectrum
        say("trace")
        tr = trace(op, method=trace_method, num_products=trace_products, seed=seed)
        warnings = _warnings(spec)
        dens = None
        if density:
            say("spectral density")
            c = spec.condition
            # a node below half the smallest nonzero eigenvalue carries the null space's mass
            zero: float | None = None
            if spec.bottom_on_range and c.converged and c.lambda_min_nonzero and not warnings:
                zero = 0.5 * c.lambda_min_nonzero
            dens = slq(
                op,
                num_probes=density_probes,
                num_steps=density_steps,
                seed=seed,
                zero_threshold=zero,
                zero_rtol=extra.get("rank_rtol"),
                progress=product_progress,
            )
        out.append(
            BlockAnalysis(blk.index, blk.name, spec, tr, dens, _modules(capture, blk), warnings)
        )
    return tuple(out)


class _Products(Progress):
    """Hands the spectrum's products to ``product_progress(done, total)``."""

    def __init__(self, report: Callable[[int, int], None] | None) -> None:
        self.report = report

    def products(self, done: int, total: int | None) -> None:
        if self.report is not None:
            self.report(done, total or 0)


#: a smallest nonzero eigenvalue closer than this factor to the null threshold is suspect
SUSPECT_FACTOR = 1e3


def _warnings(spec: SpectrumResult) -> tuple[str, ...]:
    """What a reader should doubt in a block's numbers."""
    c, out = spec.condition, []
    small = c.lambda_min_nonzero
    if small is not None and abs(small) < SUSPECT_FACTOR * c.threshold:
        out.append(
            f"the smallest nonzero eigenvalue {small:.3g} lies within {SUSPECT_FACTOR:.0f}x the null "
            f"threshold {c.threshold:.3g}: it may be a rounding-level zero, and kappa an overestimate; "
            "check with method='dense' or a larger rank tolerance (rank_rtol=)"
        )
    if not spec.converged:
        out.append("some eigenvalues did not converge (see the flags); raise the product budget")
    return tuple(out)


def _modules(capture: BlockCapture, blk: Block) -> str:
    """Short type names of a block's modules (``Linear(10, 16) + Tanh``)."""
    names = []
    for path in blk.module_names:
        try:
            m = capture.split.model.get_submodule(path)
        except AttributeError:  # a function call in the model's forward, not a module
            names.append(path)
            continue
        shape = ""
        for a, b in (("in_features", "out_features"), ("in_channels", "out_channels")):
            if hasattr(m, a) and hasattr(m, b):
                shape = f"({getattr(m, a)}, {getattr(m, b)})"
        names.append(type(m).__name__ + shape)
    return " + ".join(names)
