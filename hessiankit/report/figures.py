"""The figures of a report: one overview, then per block its eigenvalues and its density.

Each is drawn by :mod:`hessiankit.plots` from the report's result objects (nothing is
recomputed) and identified by a key that is also its file name in Markdown output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.figure import Figure

from hessiankit.plots import plot_condition_per_block, plot_density, plot_eigenvalues, style
from hessiankit.report.analysis import Report

__all__ = ["ReportFigure", "figure_bytes", "report_figures"]


@dataclass(frozen=True, eq=False)
class ReportFigure:
    """One figure of a report.

    Attributes:
        key: identifier and file stem (``overview``, ``block-3-eigenvalues``, ...).
        caption: one sentence saying what is shown.
        block: the block it belongs to (``None`` for the overview).
        figure: the matplotlib figure.
    """

    key: str
    caption: str
    block: int | None
    figure: Figure


def report_figures(report: Report) -> list[ReportFigure]:
    """Every figure of ``report`` in reading order."""
    figs = [
        ReportFigure(
            "overview",
            "Largest eigenvalue and condition number on the range of every block (log axes; "
            "hatched bars did not converge, n/a: unknown).",
            None,
            plot_condition_per_block({str(b.index): b.spectrum for b in report.blocks}),
        )
    ]
    for b in report.blocks:
        figs.append(
            ReportFigure(
                f"block-{b.index}-eigenvalues",
                f"Block {b.index}: largest and smallest eigenvalues; error bars are the residuals "
                "||Ay - θy|| (an eigenvalue lies within each bar).",
                b.index,
                plot_eigenvalues(
                    b.spectrum, title=f"block {b.index} ({b.name}): extreme eigenvalues"
                ),
            )
        )
        if b.density is not None:
            d = b.density
            figs.append(
                ReportFigure(
                    f"block-{b.index}-density",
                    f"Block {b.index}: SLQ spectral density ({d.num_probes} probes, {d.num_steps} Lanczos "
                    f"steps), Gaussian kernel; left λ (log density axis), right log10|λ| of the nonzero "
                    "nodes. Where the nodes are sparse, each shows as its own peak whose area is the "
                    "mass of the eigenvalues around it, not a cluster."
                    + (
                        ""
                        if b.spectrum.condition.nullity == 0
                        else " With fewer steps than distinct eigenvalues, a null space's mass sits on the "
                        "smallest node (the left-most peak), not at a rounding-level zero."
                    ),
                    b.index,
                    plot_density(d, title=f"block {b.index} ({b.name}): spectral density"),
                )
            )
    return figs


def figure_bytes(fig: Figure, fmt: str = "png", *, dpi: int = 110) -> bytes:
    """The figure encoded as PNG or SVG, without dates (same data, same bytes)."""
    buf = io.BytesIO()
    meta = {"Software": "hessiankit"} if fmt == "png" else {"Date": None, "Creator": "hessiankit"}
    with style():
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()
