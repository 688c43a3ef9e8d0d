"""Unconverged results name their real cause; float32 condition numbers are honest about
what float64 would give."""

from __future__ import annotations

import numpy as np
import pytest
from solvers import spectra

from hessiankit.operators import MatrixOperator
from hessiankit.solvers import spectrum


def test_budget_spent_in_float64_names_the_budget_not_float64():
    op = spectra.with_spectrum(spectra.distinct(400), seed=1, psd=True)
    r = spectrum(op, top=2, bottom=1, method="lanczos", tol=1e-10, max_products=40)
    assert not r.condition.converged and not r.bottom.all_converged
    note = r.condition.note
    assert "max_products=40" in note and "ran out" in note
    assert "float64" not in note and "--" not in note


def test_a_cluster_is_named_with_the_block_size_remedy():
    ev = np.linspace(0.1, 1.0, 300)
    ev[-3:] = 5.0 + np.array([0.0, 1e-4, 2e-4])  # three within 2e-4 at the top
    op = spectra.with_spectrum(ev, seed=2)
    r = spectrum(op, top=3, bottom=0, method="lanczos", block_size=1, tol=1e-12, max_products=15)
    assert not r.top.all_converged
    assert "cluster" in r.condition.note and "block_size=" in r.condition.note


def _float32_cases():
    rng = np.random.default_rng(0)
    cases = []
    for kappa in (1e2, 1e4, 3e5, 1e7):
        for zeros in (0, 20):
            ev = np.concatenate([np.zeros(zeros), np.geomspace(1.0 / kappa, 1.0, 200 - zeros)])
            ev[zeros : zeros + 5] *= 1 + 0.1 * rng.random(5)  # a few near the smallest
            cases.append((kappa, zeros, ev))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    ["dense", pytest.param("lanczos", marks=pytest.mark.slow)],  # Lanczos: many runs
)
def test_float32_kappa_marked_converged_lies_within_its_error_of_float64(method):
    claimed = 0
    for kappa, zeros, ev in _float32_cases():
        op64 = spectra.with_spectrum(ev, seed=3, psd=True)
        ref = spectrum(op64, top=1, bottom=1, method="dense").condition
        op32 = MatrixOperator(op64.matrix.float(), is_psd=True)
        c = spectrum(op32, top=1, bottom=1, method=method, tol=1e-5, seed=0).condition
        if not c.converged:
            assert "float64" in c.note
            continue
        claimed += 1
        assert c.kappa is not None and c.kappa_error is not None and ref.kappa is not None
        assert abs(c.kappa - ref.kappa) <= c.kappa_error * c.kappa, (kappa, zeros, c, ref)
    assert claimed >= 2  # the well-conditioned ones are still answered


@pytest.mark.slow
def test_float32_eigenvalues_under_the_null_threshold_are_not_taken_for_zeros():
    # The README snippet's case: in float32 the 64 smallest eigenvalues (2e-5 ||A||) fall
    # under the null threshold 10 sqrt(n) eps32 ||A|| and kappa came out 45x too small.
    ev = np.concatenate([np.geomspace(2e-5, 3.5e-5, 64), np.geomspace(1e-3, 1.0, 1936)])
    op64 = spectra.with_spectrum(ev, seed=4, psd=True)
    op32 = MatrixOperator(op64.matrix.float(), is_psd=True)
    c = spectrum(op32, top=1, bottom=1, method="dense").condition
    assert not c.converged and "compute in float64" in c.note
    c64 = spectrum(op64, top=1, bottom=1, method="dense").condition
    assert c64.converged and c64.kappa == pytest.approx(1 / 2e-5, rel=1e-8)
    assert c64.note == ""
