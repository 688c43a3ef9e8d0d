"""The claims' figures redraw from the committed results and keep the fixes of issue 15.

kappa vs depth: one panel per (architecture, Hessian, init) with the four variants each, one
legend outside the panels, confidence bands inside the measurable range [0, log10(1/RANK_RTOL)]
(a condition number is at least 1) and no empty depth range for the CNN. The optimizer sweep
redraws from ``results.json`` alone, with error bars equal to the binomial interval of the
validation split.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from scipy import stats
import pytest
from tests.analyses.scripts import load_script

pytestmark = pytest.mark.slow  # draws the analyses' figures with their scripts

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "figures"


@pytest.fixture()
def analyses(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "analyses"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    kept: list = []
    close = pyplot.close
    monkeypatch.setattr(pyplot, "close", lambda fig=None: kept.append(fig))
    yield kept
    for fig in kept:  # registered with pyplot: leave nothing behind for later tests
        close(fig)


def test_kappa_vs_depth_grid_from_committed_results(analyses, tmp_path: Path) -> None:
    import depth
    from _common import RANK_RTOL

    d = json.loads((FIGURES / "depth" / "results.json").read_text())
    archs = d["args"]["archs"].split(",")
    depth.figure(d["summary"], archs, [int(x) for x in d["args"]["depths"].split(",")], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kappa_vs_depth_init.png",
        "kappa_vs_depth_trained.png",
    ]
    cap = -math.log10(RANK_RTOL)
    for fig in analyses:
        axes = fig.axes
        assert len(axes) == 4 * len(archs) and len(fig.legends) == 1
        for ax in axes:
            assert ax.get_legend() is None
            assert 1 <= len(ax.get_lines()) - 2 <= 4  # the variants, plus the floor and cap lines
            for band in ax.collections:
                y = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
                assert y.min() >= 0.0 and y.max() <= cap + 1e-12
            xs = np.concatenate([ln.get_xdata() for ln in ax.get_lines()[:-2]])
            lo, hi = ax.get_xlim()
            assert lo <= xs.min() and xs.max() <= hi <= 1.25 * xs.max() + 1e-9  # no empty range
        assert all(ax.get_ylabel() for ax in axes[::4])


def test_sweep_redraws_from_results_with_seed_or_binomial_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hessiankit.plots as hp

    exp = load_script("scale_amended_sgd")
    shutil.copy(FIGURES / "optimizer" / "results.json", tmp_path / "results.json")
    summary = json.loads((tmp_path / "results.json").read_text())
    drawn: list = []
    save = hp.save_figure
    monkeypatch.setattr(hp, "save_figure", lambda fig, path: (drawn.append(fig), save(fig, path)))
    exp.replot(tmp_path)  # no curves.json: only the sweep can be drawn
    assert {p.name for p in tmp_path.iterdir()} == {"results.json", "sweep.png", "sweep.svg"}
    (ax,) = drawn[0].axes
    assert ax.get_ylabel()
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == len(summary["optimizers"])
    for bar, res in zip(bars, summary["optimizers"].values(), strict=True):
        rows = [r for r in res["sweep"] if r["final_val_acc"] is not None]
        segs = bar.lines[2][0].get_segments()  # a rate with no finite seed draws no bar
        half = np.array(
            [np.ptp(g[:, 1]) / 2 if np.ndim(g) == 2 and len(g) else np.nan for g in segs]
        )
        if len(rows[0].get("final_val_acc_seeds", [0])) > 1:  # t-interval over the sweep seeds
            expected = []
            for r in rows:
                v = np.array([a for a in r["final_val_acc_seeds"] if a is not None], float)
                v = v[np.isfinite(v)]
                ok = v.size > 1
                t = stats.t.ppf(0.975, v.size - 1) if ok else np.nan
                expected.append(t * v.std(ddof=1) / np.sqrt(v.size) if ok else np.nan)
            finite = np.isfinite(expected)
            np.testing.assert_allclose(half[finite], np.array(expected)[finite], rtol=1e-9)
        else:  # one seed per rate: the binomial interval of the validation split
            acc = np.array([r["final_val_acc"] for r in rows])
            expected = 1.959964 * np.sqrt(acc * (1 - acc) / summary["config"]["n_val"])
            np.testing.assert_allclose(half, expected, rtol=1e-9)
