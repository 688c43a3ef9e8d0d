r"""Training curves with mean +- confidence bands over seeds (used by the optimizer experiments).

For each curve, an array ``values`` of shape ``(seeds, steps)``; at every step the band is the
Student-t interval of the mean over the finite values at that step,

.. math::

    \bar x \pm t_{(1+c)/2,\, s-1} \, \frac{\mathrm{sd}(x)}{\sqrt{s}}

with ``s`` the number of finite values and ``c`` the confidence (0.95). Non-finite entries (a
diverged seed) are left out of the statistics of that step; a step with fewer than two finite
values has no band (its half-width is NaN, nothing is filled).

Example:
    >>> import numpy as np
    >>> from hessiankit.plots.training import confidence_band
    >>> mean, lo, hi = confidence_band(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> mean.tolist()
    [2.0, 3.0]
    >>> round(float(hi[0] - mean[0]), 4)  # t_{0.975,1} * sqrt(2) / sqrt(2)
    12.7062
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from hessiankit.errors import DataError
from hessiankit.plots._style import new_axes, palette, style

__all__ = ["confidence_band", "plot_training_curves"]


def confidence_band(
    values: np.ndarray, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step mean and Student-t confidence band of a ``(seeds, steps)`` array.

    Returns:
        ``(mean, lower, upper)``, each of length ``steps``.

    Raises:
        DataError: ``values`` is not 2-D, or ``confidence`` is not in (0, 1).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"training curves must be a (seeds, steps) array, got shape {x.shape}")
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.where(np.isfinite(x), x, np.nan)
    count = np.sum(~np.isnan(x), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(x, axis=0) / np.where(count > 0, count, np.nan)
        dev = np.nansum((x - mean) ** 2, axis=0)
        sd = np.sqrt(dev / np.where(count > 1, count - 1, np.nan))
        t = stats.t.ppf(0.5 + confidence / 2.0, np.where(count > 1, count - 1, np.nan))
        half = t * sd / np.sqrt(count)
    return mean, mean - half, mean + half


def plot_training_curves(
    curves: Mapping[str, np.ndarray],
    *,
    steps: np.ndarray | None = None,
    confidence: float = 0.95,
    xlabel: str = "step",
    ylabel: str = "training loss",
    logy: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Mean curve and confidence band per entry of ``curves`` on one axes.

    Args:
        curves: label -> ``(seeds, steps)`` array (e.g. ``{"SGD": ..., "scale-amended SGD": ...}``).
        steps: x values shared by every curve (default ``0..steps-1``).
        confidence: confidence of the band (default 0.95).
        xlabel, ylabel, title: axis texts.
        logy: logarithmic y axis.
        ax: draw into these axes instead of a new figure.

    Returns:
        The figure (save it with :func:`hessiankit.plots.save_figure`). The axes hold one line
        per curve (its mean, labelled) and one filled band per curve, in the order given.

    Raises:
        DataError: no curves, a curve that is not 2-D, or ``steps`` of the wrong length.
    """
    if not curves:
        raise DataError(
            "no training curves to plot; pass at least one label -> (seeds, steps) array"
        )
    with style():
        fig, ax = new_axes(ax, (6.0, 3.8))
        for (label, values), colour in zip(curves.items(), palette(len(curves))):
            mean, lo, hi = confidence_band(values, confidence=confidence)
            x = np.arange(mean.size) if steps is None else np.asarray(steps, dtype=np.float64)
            if x.shape != mean.shape:
                raise DataError(
                    f"curve {label!r} has {mean.size} steps but steps has {x.size} values; "
                    "pass steps of the same length"
                )
            seeds = np.asarray(values).shape[0]
            ax.plot(x, mean, color=colour, lw=1.6, label=f"{label} (n={seeds})")
            ax.fill_between(x, lo, hi, color=colour, alpha=0.25, lw=0, where=np.isfinite(hi))
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title or f"mean and {confidence:.0%} confidence band over seeds")
        ax.legend(frameon=False)
    return fig
