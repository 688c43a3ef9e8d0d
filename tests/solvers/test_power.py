"""Power iteration with deflation against numpy.linalg.eigh."""

from __future__ import annotations

import numpy as np
import pytest
from solvers import spectra

from hessiankit.solvers import power_iteration


def test_top_k_with_deflation_on_spd():
    ev = np.concatenate([np.linspace(0.1, 1.0, 100), [2.0, 3.0, 4.5]])
    op = spectra.with_spectrum(ev, seed=0, psd=True)
    # Deflation against eigenvectors known to ~tol limits later residuals to about tol too.
    r = power_iteration(op, k=3, which="LA", tol=1e-8, max_iter=2000, seed=0)
    assert r.pairs.all_converged
    np.testing.assert_allclose(r.pairs.eigenvalues, [4.5, 3.0, 2.0], rtol=1e-8)


def test_largest_algebraic_on_indefinite_needs_the_shift():
    ev = np.concatenate([[-10.0], np.linspace(-1.0, 1.0, 50), [3.0]])
    op = spectra.with_spectrum(ev, seed=1)
    lm = power_iteration(op, k=1, which="LM", tol=1e-10, max_iter=2000, seed=0)
    la = power_iteration(op, k=1, which="LA", tol=1e-10, max_iter=5000, seed=0)
    sa = power_iteration(op, k=1, which="SA", tol=1e-10, max_iter=5000, seed=0)
    np.testing.assert_allclose(lm.pairs.eigenvalues, [-10.0], rtol=1e-8)
    np.testing.assert_allclose(la.pairs.eigenvalues, [3.0], rtol=1e-8)
    np.testing.assert_allclose(sa.pairs.eigenvalues, [-10.0], rtol=1e-8)
    assert la.shift > 0 and sa.shift > 0


def test_not_converged_is_reported_when_eigenvalues_are_close():
    ev = np.concatenate([np.linspace(0.1, 1.0, 50), [1.999, 2.0]])
    op = spectra.with_spectrum(ev, seed=2, psd=True)
    r = power_iteration(op, k=1, which="LA", tol=1e-12, max_iter=30, seed=0)
    assert not r.pairs.converged[0]
    assert r.num_products == 30
    # The residual still bounds the distance to some eigenvalue.
    assert np.min(np.abs(ev - r.pairs.eigenvalues[0])) <= r.pairs.residuals[0]


def test_rejects_bad_arguments():
    op = spectra.with_spectrum(np.arange(1.0, 4.0), seed=0)
    with pytest.raises(Exception, match="dimension 3"):
        power_iteration(op, k=4)
    with pytest.raises(Exception, match="which"):
        power_iteration(op, which="XX")  # type: ignore[arg-type]
