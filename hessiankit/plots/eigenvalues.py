"""Stem plot of the extreme eigenvalues of one operator, with residual error bars.

Every eigenvalue ``theta`` of a :class:`~hessiankit.solvers.SpectrumResult` is drawn as a stem
at its position in the spectrum, with an error bar of half-length ``||A y - theta y||`` (some
eigenvalue of A lies within it). The largest eigenvalues sit at x = 1..k ("1" is lambda_max);
the smallest ones follow after a gap, labelled ``min``, ``min+1``, ... (on the range for PSD
operators). Estimates that did not converge are marked with a cross.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hessiankit.plots._style import new_axes, palette, style
from hessiankit.solvers.results import SpectrumResult

__all__ = ["eigenvalue_positions", "plot_eigenvalues"]


def eigenvalue_positions(result: SpectrumResult) -> tuple[np.ndarray, np.ndarray]:
    """x positions of the top and of the bottom eigenvalues in :func:`plot_eigenvalues`."""
    k = len(result.top)
    return np.arange(1, k + 1, dtype=np.float64), np.arange(
        k + 2, k + 2 + len(result.bottom), dtype=np.float64
    )


def plot_eigenvalues(
    result: SpectrumResult, *, title: str | None = None, ax: Axes | None = None
) -> Figure:
    """Stems of ``result.top`` and ``result.bottom`` with residual error bars.

    The y axis is logarithmic when every eigenvalue shown is positive and they span more than
    two decades. Artists, in order: a stem container and an error-bar container for the top
    eigenvalues, then the same for the bottom ones (when there are any).
    """
    x_top, x_bot = eigenvalue_positions(result)
    values = np.concatenate([result.top.eigenvalues, result.bottom.eigenvalues])
    positive = values.size > 0 and bool((values > 0).all())
    logy = positive and float(values.max() / values.min()) > 100.0
    c_top, c_bot = palette(2)
    with style():
        fig, ax = new_axes(ax, (7.0, 3.6))
        base = float(values.min()) / 3.0 if logy else 0.0
        labels_bottom = "smallest nonzero" if result.bottom_on_range else "smallest"
        for x, pairs, colour, label in (
            (x_top, result.top, c_top, "largest"),
            (x_bot, result.bottom, c_bot, labels_bottom),
        ):
            if not len(pairs):
                continue
            stem = ax.stem(x, pairs.eigenvalues, bottom=base, basefmt=" ", label=label)
            stem.markerline.set_color(colour)
            stem.stemlines.set_color(colour)
            ax.errorbar(
                x,
                pairs.eigenvalues,
                yerr=pairs.residuals,
                fmt="none",
                ecolor="black",
                elinewidth=1.0,
                capsize=3,
            )
            bad = ~pairs.converged
            if bad.any():
                ax.plot(
                    x[bad],
                    pairs.eigenvalues[bad],
                    "x",
                    color="crimson",
                    ms=9,
                    mew=2,
                    label="not converged",
                )
        if logy:
            ax.set_yscale("log")
        ticks = np.concatenate([x_top, x_bot])
        names = [str(i) for i in range(1, x_top.size + 1)]
        names += ["min"] + [f"min+{j}" for j in range(1, x_bot.size)] if x_bot.size else []
        ax.set_xticks(ticks, names)
        ax.set_xlabel("eigenvalue (1 = largest)")
        ax.set_ylabel("eigenvalue")
        what = _describe(result)
        ax.set_title(
            title or f"extreme eigenvalues{what}\nerror bars: residual $\\|Ay - \\theta y\\|$",
            fontsize="medium",
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return fig


def _describe(result: SpectrumResult) -> str:
    op = result.operator
    if "block" not in op:
        return ""
    return f", block {op['block']}, {op.get('wrt', '?')}, {op.get('kind', '?')}"
