"""Training curves: the plotted mean and band equal the Student-t interval computed by scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from hessiankit.errors import DataError
from hessiankit.plots import confidence_band, plot_training_curves, save_figure
from plots.files import assert_written


def _curves() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(30)
    return {
        "SGD": np.exp(-0.05 * t) + 0.05 * rng.standard_normal((5, 30)),
        "scale-amended SGD": np.exp(-0.1 * t) + 0.05 * rng.standard_normal((4, 30)),
    }


def test_band_matches_scipy_t_interval() -> None:
    x = _curves()["SGD"]
    mean, lo, hi = confidence_band(x, confidence=0.9)
    for j in range(x.shape[1]):
        ref_lo, ref_hi = stats.t.interval(
            0.9, x.shape[0] - 1, loc=x[:, j].mean(), scale=stats.sem(x[:, j])
        )
        assert mean[j] == pytest.approx(x[:, j].mean(), rel=1e-13)
        assert (lo[j], hi[j]) == pytest.approx((ref_lo, ref_hi), rel=1e-12)


def test_non_finite_seed_is_left_out_and_single_value_has_no_band() -> None:
    x = np.array([[1.0, 2.0, 5.0], [3.0, np.inf, np.nan], [5.0, 6.0, np.nan]])
    mean, lo, hi = confidence_band(x)
    assert mean.tolist() == [3.0, 4.0, 5.0]
    ref = stats.t.interval(0.95, 1, loc=4.0, scale=stats.sem([2.0, 6.0]))
    assert (lo[1], hi[1]) == pytest.approx(ref, rel=1e-12)
    assert np.isnan(lo[2]) and np.isnan(hi[2])


def test_plotted_data_equals_band(tmp_path: Path) -> None:
    curves = _curves()
    steps = np.arange(30) * 10.0
    fig = plot_training_curves(curves, steps=steps, logy=True)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 2
    for line, band, (label, values) in zip(ax.get_lines(), ax.collections, curves.items()):
        mean, lo, hi = confidence_band(values)
        assert line.get_label().startswith(label)
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), mean, rtol=0, atol=0)
        verts = np.concatenate([p.vertices for p in band.get_paths()])
        # the band's outline visits (step, lower) and (step, upper) for every step
        for x, a, b in zip(steps, lo, hi):
            ys = verts[np.isclose(verts[:, 0], x), 1]
            assert np.isclose(ys, a).any() and np.isclose(ys, b).any()
        assert verts[:, 1].min() == pytest.approx(lo.min()) and verts[:, 1].max() == pytest.approx(
            hi.max()
        )
    assert ax.get_yscale() == "log"
    assert_written(save_figure(fig, tmp_path / "curves"))


def test_bad_input_is_a_one_line_error() -> None:
    with pytest.raises(DataError, match="seeds, steps"):
        plot_training_curves({"a": np.zeros(5)})
    with pytest.raises(DataError, match="steps"):
        plot_training_curves({"a": np.zeros((2, 5))}, steps=np.arange(4))
    with pytest.raises(DataError, match="at least one"):
        plot_training_curves({})


def test_plots_leave_pyplot_and_rc_settings_alone() -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    backend, rc = matplotlib.get_backend(), dict(matplotlib.rcParams)
    fig = plot_training_curves(_curves())
    assert plt.get_fignums() == []  # not registered with pyplot: nothing leaks
    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == rc  # the seaborn theme applied only while drawing
    assert fig.axes[0].get_lines()
