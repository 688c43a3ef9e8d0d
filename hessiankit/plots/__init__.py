"""Figures of hessiankit: one module per plot family.

Every plot function takes result objects (or plain arrays of results), never recomputes
anything, draws with hessiankit's seaborn theme and returns a :class:`matplotlib.figure.Figure`;
:func:`save_figure` writes it as PNG and SVG; :func:`style`, :func:`palette` and
:func:`new_axes` are the theme, colours and axes for figures drawn elsewhere (reports,
analyses). Nothing here touches pyplot's global state, so plots work headless and in threads.
"""

from hessiankit.plots._style import FORMATS, new_axes, palette, save_figure, style
from hessiankit.plots.condition import plot_condition_per_block, plot_condition_vs_depth
from hessiankit.plots.density import plot_density
from hessiankit.plots.eigenvalues import plot_eigenvalues
from hessiankit.plots.training import confidence_band, plot_training_curves

__all__ = [
    "FORMATS",
    "confidence_band",
    "new_axes",
    "palette",
    "plot_condition_per_block",
    "plot_condition_vs_depth",
    "plot_density",
    "plot_eigenvalues",
    "plot_training_curves",
    "save_figure",
    "style",
]
