"""Shared look and file output of every hessiankit figure.

One seaborn theme (``whitegrid``, ``paper`` context, colour-blind palette) is applied inside a
context manager so that importing hessiankit never changes a user's own matplotlib settings.
Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: no backend is
selected or changed, no display is needed, and nothing accumulates in pyplot's figure list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # headless: never needs a display

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hessiankit.errors import HessiankitError
from hessiankit.io.atomic import atomic_file

__all__ = ["FORMATS", "new_axes", "palette", "save_figure", "style"]

FORMATS = ("png", "svg")


@contextmanager
def style() -> Iterator[None]:
    """Apply hessiankit's seaborn theme for the duration of the block only."""
    with plt.rc_context():
        sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
        plt.rcParams["svg.hashsalt"] = "hessiankit"  # reproducible SVG ids
        plt.rcParams["svg.fonttype"] = "none"  # text stays text in SVG
        yield


def palette(n: int) -> list[tuple[float, float, float]]:
    """``n`` colour-blind-safe colours."""
    return list(sns.color_palette("colorblind", max(n, 1)))


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """The axes to draw on: ``ax`` when given, else a new figure's single axes."""
    if ax is not None:
        return ax.get_figure(root=True), ax  # type: ignore[return-value]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def save_figure(
    fig: Figure, path: str | Path, formats: Sequence[str] = FORMATS, *, dpi: int = 150
) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats`` (``path``'s own suffix is dropped).

    Returns the written paths. Files are written completely or not at all (a temporary file
    renamed into place), so an interrupted run leaves no truncated figure behind.

    Raises:
        HessiankitError: an unknown format.
    """
    stem = Path(path)
    if stem.suffix.lower().lstrip(".") in FORMATS:
        stem = stem.with_suffix("")
    out = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise HessiankitError(f"unknown figure format {fmt!r}; use one of {', '.join(FORMATS)}")
        target = stem.with_name(stem.name + "." + fmt)
        target.parent.mkdir(parents=True, exist_ok=True)
        with style(), atomic_file(target) as f:
            fig.savefig(f, format=fmt, dpi=dpi, metadata=_metadata(fmt))
        out.append(target)
    return out


def _metadata(fmt: str) -> dict[str, str | None]:
    # No creation date: the same data gives byte-identical files.
    if fmt == "svg":
        return {"Date": None, "Creator": "hessiankit"}
    return {"Software": "hessiankit"}
