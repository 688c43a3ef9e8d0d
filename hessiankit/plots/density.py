"""The SLQ spectral density: lambda on a linear axis, and log10 |lambda|.

Left panel: the smoothed density of lambda (``result.linear``) with a logarithmic density axis,
where the bulk and the outliers of a Hessian spectrum both show. Right panel: the density of
``log10 |lambda|`` (``result.log``) over the nonzero eigenvalues, with the zero mass (null space)
and negative mass written on it. Both curves are plotted exactly as stored in the result.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hessiankit.plots._style import palette, style
from hessiankit.solvers.slq import DensityCurve, SpectralDensity

__all__ = ["plot_density"]


def plot_density(
    result: SpectralDensity,
    *,
    scale: Literal["both", "linear", "log"] = "both",
    title: str | None = None,
) -> Figure:
    """Plot ``result.linear`` and/or ``result.log``; one axes per curve, in that order.

    Each axes holds one line whose data are the curve's ``grid`` and ``density``.
    """
    curves: list[DensityCurve] = []
    if scale in ("both", "linear"):
        curves.append(result.linear)
    if scale in ("both", "log"):
        curves.append(result.log)
    colour = palette(1)[0]
    with style():
        fig = Figure(figsize=(5.0 * len(curves) + 1.0, 3.6), layout="constrained")
        axes = fig.subplots(1, len(curves), squeeze=False)[0]
        for ax, curve in zip(axes, curves):
            _draw(ax, curve, result, colour)
        op = result.operator
        head = (
            f"block {op['block']} w.r.t. {op.get('wrt')} ({op.get('kind')}): "
            if "block" in op
            else ""
        )
        fig.suptitle(
            title
            or f"{head}SLQ spectral density, {result.num_probes} probes x {result.num_steps} steps"
        )
    return fig


def _draw(ax: Axes, curve: DensityCurve, result: SpectralDensity, colour: object) -> None:
    if curve.grid.size == 0:
        ax.text(0.5, 0.5, "no nonzero eigenvalue", ha="center", va="center", transform=ax.transAxes)
        return
    ax.plot(curve.grid, curve.density, color=colour, lw=1.4)
    ax.fill_between(curve.grid, curve.density, color=colour, alpha=0.2, lw=0)
    top = float(np.max(curve.density))
    if curve.scale == "linear":
        ax.set_yscale("log")
        ax.set_ylim(top * 1e-6, top * 3.0)  # the tails of the Gaussians below this are noise
        ax.set_xlabel(r"eigenvalue $\lambda$")
        ax.set_ylabel(r"density (log scale)")
        ax.set_title(rf"$\lambda$, kernel width $\sigma$ = {curve.sigma:.3g}", fontsize="medium")
    else:
        ax.set_ylim(0.0, top * 1.15)
        ax.set_xlabel(r"$\log_{10} |\lambda|$")
        ax.set_ylabel("density")
        ax.set_title(
            rf"$\log_{{10}}|\lambda|$, $\sigma$ = {curve.sigma:.3g} decades"
            "\n"
            f"mass at |λ| ≤ {result.zero_threshold:.2g}: {result.zero_mass:.3f}, "
            f"negative mass {result.negative_mass:.3f}",
            fontsize="medium",
        )
