"""Hutchinson and Hutch++ against exact traces of dense test matrices, over repeated seeds."""

from __future__ import annotations

import numpy as np
import pytest
from solvers import spectra

from hessiankit.errors import OperatorError
from hessiankit.solvers.trace import hutch_plus_plus, hutchinson, trace


@pytest.mark.parametrize("estimator", ["hutchinson", "hutch++"])
@pytest.mark.parametrize("case", ["distinct", "with_zeros", "indefinite"])
def test_estimates_fall_within_three_standard_errors(estimator, case):
    ev = getattr(spectra, case)(120) if case != "with_zeros" else spectra.with_zeros(120, 30)
    op = spectra.with_spectrum(ev, seed=4)
    exact = float(ev.sum())
    z = []
    for seed in range(20):
        r = trace(op, method=estimator, num_products=30, seed=seed)
        assert r.std_error > 0
        z.append((r.trace - exact) / r.std_error)
    z = np.abs(np.array(z))
    # |z| > 3 has probability ~0.3% for a normal estimate; allow one in twenty.
    assert (z > 3).sum() <= 1
    assert z.mean() < 1.6  # errors are of the size the standard error claims, not far smaller


def test_hutch_plus_plus_beats_hutchinson_on_a_decaying_spectrum():
    ev = 1.0 / np.arange(1, 201) ** 2  # fast decay: the sketch catches most of the trace
    op = spectra.with_spectrum(ev, seed=1)
    exact = float(ev.sum())
    err_h = np.median([abs(hutchinson(op, num_probes=60, seed=s).trace - exact) for s in range(10)])
    err_pp = np.median(
        [abs(hutch_plus_plus(op, num_products=60, seed=s).trace - exact) for s in range(10)]
    )
    assert err_pp < 0.2 * err_h


def test_hutch_plus_plus_is_exact_when_the_sketch_spans_the_space():
    ev = np.linspace(-1.0, 3.0, 10)
    r = hutch_plus_plus(spectra.with_spectrum(ev, seed=0), num_products=60, seed=0)
    assert r.trace == pytest.approx(float(ev.sum()), rel=1e-12)
    assert r.std_error == 0.0


def test_bad_budgets_are_refused():
    op = spectra.with_spectrum(np.ones(5), seed=0)
    with pytest.raises(OperatorError, match="at least 2 probes"):
        hutchinson(op, num_probes=1)
    with pytest.raises(OperatorError, match="unknown trace method"):
        trace(op, method="magic")  # type: ignore[arg-type]
