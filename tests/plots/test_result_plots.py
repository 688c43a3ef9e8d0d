"""Eigenvalue, density and condition-number plots: what the artists hold equals the results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from solvers import spectra

import hessiankit as hk
from hessiankit.errors import DataError
from hessiankit.plots import (
    plot_condition_per_block,
    plot_condition_vs_depth,
    plot_density,
    plot_eigenvalues,
    save_figure,
)
from hessiankit.plots.eigenvalues import eigenvalue_positions
from hessiankit.solvers.slq import slq
from plots.files import assert_written


@pytest.fixture(scope="module")
def block_results() -> dict[str, hk.SpectrumResult]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6),
        torch.nn.Tanh(),
        torch.nn.Linear(6, 5),
        torch.nn.ReLU(),
        torch.nn.Linear(5, 3),
    ).double()
    x, y = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 3, (9,))
    cap = hk.capture(net, x, y)
    return {
        str(b): hk.spectrum(hk.LocalHessian(cap, b), top=4, bottom=2, seed=0) for b in (1, 2, 3)
    }


def test_eigenvalue_stems_and_error_bars(block_results, tmp_path: Path) -> None:
    r = block_results["2"]
    fig = plot_eigenvalues(r)
    ax = fig.axes[0]
    stems = [c for c in ax.containers if type(c).__name__ == "StemContainer"]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(stems) == len(bars) == 2
    for stem, bar, pairs, x in zip(stems, bars, (r.top, r.bottom), eigenvalue_positions(r)):
        np.testing.assert_array_equal(stem.markerline.get_xdata(), x)
        np.testing.assert_array_equal(stem.markerline.get_ydata(), pairs.eigenvalues)
        segs = bar.lines[2][0].get_segments()
        half = np.array([(s[1, 1] - s[0, 1]) / 2 for s in segs])
        # y +- r is stored, so r comes back only to the rounding of y
        atol = 4 * np.finfo(np.float64).eps * np.abs(pairs.eigenvalues)
        assert (np.abs(half - pairs.residuals) <= atol + 1e-12 * pairs.residuals).all()
    assert_written(save_figure(fig, tmp_path / "eig"))


def test_unconverged_eigenvalues_are_marked() -> None:
    op = spectra.with_spectrum(spectra.distinct(300), seed=0)
    r = hk.spectrum(op, top=3, bottom=0, method="lanczos", max_products=6, block_size=1, seed=0)
    assert not r.top.converged.all()
    ax = plot_eigenvalues(r).axes[0]
    crosses = [ln for ln in ax.get_lines() if ln.get_label() == "not converged"]
    assert len(crosses) == 1
    np.testing.assert_array_equal(crosses[0].get_ydata(), r.top.eigenvalues[~r.top.converged])


def test_density_curves_equal_the_result(tmp_path: Path) -> None:
    op = spectra.with_spectrum(spectra.with_zeros(120, 30), seed=1)
    d = slq(op, num_probes=4, num_steps=30, seed=0)
    fig = plot_density(d)
    assert len(fig.axes) == 2
    for ax, curve in zip(fig.axes, (d.linear, d.log)):
        (line,) = ax.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), curve.grid)
        np.testing.assert_array_equal(line.get_ydata(), curve.density)
    assert fig.axes[0].get_yscale() == "log"
    only_log = plot_density(d, scale="log")
    np.testing.assert_array_equal(only_log.axes[0].get_lines()[0].get_ydata(), d.log.density)
    assert_written(save_figure(fig, tmp_path / "density.png"))  # the suffix is replaced


def test_condition_bars_equal_the_results(block_results, tmp_path: Path) -> None:
    fig = plot_condition_per_block(block_results)
    ax_l, ax_k = fig.axes
    rs = list(block_results.values())
    np.testing.assert_array_equal(
        [p.get_height() for p in ax_l.patches], [r.condition.lambda_max for r in rs]
    )
    np.testing.assert_array_equal(
        [p.get_height() for p in ax_k.patches], [r.condition.kappa for r in rs]
    )
    assert [t.get_text() for t in ax_k.get_xticklabels()] == list(block_results)
    assert ax_l.get_yscale() == ax_k.get_yscale() == "log"
    assert_written(save_figure(fig, tmp_path / "cond"))


def test_condition_against_depth(block_results, tmp_path: Path) -> None:
    rs = list(block_results.values())
    fig = plot_condition_vs_depth({"a": rs, "b": rs[:2]}, depths={"a": [1, 2, 3], "b": [1, 3]})
    a, b = fig.axes[0].get_lines()
    np.testing.assert_array_equal(a.get_ydata(), [r.condition.kappa for r in rs])
    np.testing.assert_array_equal(b.get_xdata(), [1, 3])
    assert (a.get_label(), b.get_label()) == ("a", "b")
    assert_written(save_figure(fig, tmp_path / "depth"))
    with pytest.raises(DataError, match="depths"):
        plot_condition_vs_depth({"a": rs}, depths={"a": [1]})
    with pytest.raises(DataError):
        plot_condition_per_block({})
