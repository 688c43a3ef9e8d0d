"""Condition numbers across blocks and models.

:func:`plot_condition_per_block`: for one model, bars of lambda_max and of the condition number
on the range (``kappa``) per block, logarithmic axes. :func:`plot_condition_vs_depth`: kappa
against the block's depth, one line per model, on one logarithmic axis. Numbers that are
unknown (``kappa is None``) are left out and written as "n/a"; bars whose numbers did not
converge are hatched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hessiankit.errors import DataError
from hessiankit.plots._style import new_axes, palette, style
from hessiankit.solvers.results import SpectrumResult

__all__ = ["condition_values", "plot_condition_per_block", "plot_condition_vs_depth"]


def condition_values(results: Sequence[SpectrumResult]) -> tuple[np.ndarray, np.ndarray]:
    """``(lambda_max, kappa)`` per result, NaN where unknown."""
    lmax = np.array([r.condition.lambda_max for r in results], dtype=np.float64)
    kappa = np.array([np.nan if r.condition.kappa is None else r.condition.kappa for r in results])
    return lmax, kappa


def plot_condition_per_block(
    results: Mapping[str, SpectrumResult], *, title: str | None = None
) -> Figure:
    """Two bar charts (log axes): lambda_max per block, then kappa per block.

    Args:
        results: block label -> its spectrum, in depth order.
    """
    if not results:
        raise DataError("no block results to plot")
    labels = list(results)
    rs = list(results.values())
    lmax, kappa = condition_values(rs)
    c1, c2 = palette(2)
    with style():
        fig = Figure(figsize=(max(7.0, 1.1 * len(labels) + 3.0), 3.6), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        x = np.arange(len(labels), dtype=np.float64)
        for ax, values, colour, name, conv in (
            (ax1, lmax, c1, r"$\lambda_{\max}$", [bool(r.top.converged[:1].all()) for r in rs]),
            (
                ax2,
                kappa,
                c2,
                r"condition number $\kappa$ (on the range)",
                [r.condition.converged for r in rs],
            ),
        ):
            ok = np.isfinite(values) & (values > 0)
            bars = ax.bar(x[ok], values[ok], color=colour, width=0.7)
            for bar, c in zip(bars, np.asarray(conv)[ok]):
                if not c:
                    bar.set_hatch("//")
            for xi in x[~ok]:
                ax.annotate(
                    "n/a",
                    (xi, 0.02),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    fontsize="small",
                )
            ax.set_yscale("log")
            if ok.any():  # whole decades below the smallest bar, so heights compare honestly
                lo, hi = np.log10(values[ok].min()), np.log10(values[ok].max())
                ax.set_ylim(10.0 ** (np.floor(lo) - 1.0), 10.0 ** (np.ceil(hi) + 0.3))
            ax.set_xticks(
                x,
                labels,
                rotation=30 if len(labels) > 6 else 0,
                ha="right" if len(labels) > 6 else "center",
            )
            ax.set_xlabel("block")
            ax.set_title(name, fontsize="medium")
            ax.set_xlim(-0.6, len(labels) - 0.4)
        fig.suptitle(title or "per block (hatched: not converged)")
    return fig


def plot_condition_vs_depth(
    models: Mapping[str, Sequence[SpectrumResult]],
    *,
    depths: Mapping[str, Sequence[float]] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """kappa against depth, one line per model (log y axis).

    Args:
        models: model label -> its blocks' spectra, in depth order.
        depths: model label -> x value per block (default the block numbers 1..B).
    """
    if not models:
        raise DataError("no models to plot")
    with style():
        fig, ax = new_axes(ax, (6.0, 3.8))
        for (label, rs), colour in zip(models.items(), palette(len(models))):
            _, kappa = condition_values(rs)
            x = (
                np.arange(1, len(rs) + 1, dtype=np.float64)
                if depths is None
                else np.asarray(depths[label], float)
            )
            if x.shape != kappa.shape:
                raise DataError(f"model {label!r}: {kappa.size} results but {x.size} depths")
            ax.plot(x, kappa, "o-", color=colour, label=label, ms=4)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("block (depth)")
        ax.set_ylabel(r"condition number $\kappa$")
        ax.set_title(title or "condition number of the local Hessian against depth")
        ax.legend(frameon=False)
    return fig
