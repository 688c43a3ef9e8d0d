"""Krylov memory budget (thick restart) and checkpoint/resume, against numpy.linalg.eigh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from solvers.spectra import Interrupt as _Interrupt
from solvers.spectra import gapped as _gapped
from solvers.spectra import stop_after as _stop_after
from solvers import spectra

from hessiankit.errors import OperatorError
from hessiankit.solvers import LanczosIteration, lanczos
from hessiankit.solvers.options import KrylovOptions


@pytest.mark.parametrize(("p", "columns"), [(1, 24), (3, 40)])
def test_basis_budget_restarts_and_still_matches_eigh(p, columns):
    ev = _gapped()
    op = spectra.with_spectrum(ev, seed=4)
    budget = columns * 8 * op.dim
    r = lanczos(
        op,
        top=3,
        bottom=2,
        block_size=p,
        tol=1e-10,
        seed=0,
        max_basis_bytes=budget,
        max_products=3000,
    )
    exact = np.sort(ev)
    assert r.restarts > 0
    assert r.basis_bytes <= budget and r.max_basis_bytes == budget
    assert r.top.all_converged and r.bottom.all_converged
    np.testing.assert_allclose(r.top.eigenvalues, exact[::-1][:3], rtol=1e-8)
    np.testing.assert_allclose(r.bottom.eigenvalues, exact[:2], rtol=1e-8)
    assert np.all(
        np.abs(r.top.eigenvalues - exact[::-1][:3]) <= r.top.error_bounds * (1 + 1e-6) + 1e-13
    )


@pytest.mark.slow  # a restarted run to the smallest nonzero eigenvalue
def test_restart_from_range_start_keeps_smallest_nonzero():
    ev = spectra.with_zeros()
    op = spectra.with_spectrum(ev, seed=3, psd=True)
    r = lanczos(
        op,
        top=2,
        bottom=2,
        block_size=2,
        tol=1e-10,
        seed=0,
        max_basis_bytes=60 * 8 * op.dim,
        max_products=4000,
    )
    assert r.restarts > 0 and r.range_start
    nonzero = np.sort(ev[ev > 0])
    np.testing.assert_allclose(r.bottom.eigenvalues, nonzero[:2], rtol=1e-7)
    np.testing.assert_allclose(r.top.eigenvalues, nonzero[::-1][:2], rtol=1e-10)


def test_budget_too_small_is_refused_with_the_size_needed():
    op = spectra.with_spectrum(spectra.distinct(), seed=4)
    with pytest.raises(OperatorError, match="raise max_basis_bytes"):
        lanczos(op, top=3, block_size=2, max_basis_bytes=4 * 8 * op.dim)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"top": 4, "bottom": 2, "block_size": 2}, marks=pytest.mark.slow),
        {"top": 3, "bottom": 3, "block_size": 1, "max_basis_bytes": 30 * 8 * 250},
    ],
)
def test_interrupted_run_resumes_to_the_same_result(tmp_path, kwargs):
    op = spectra.with_spectrum(spectra.indefinite(), seed=5)
    ref = lanczos(op, tol=1e-10, seed=1, **kwargs)
    path = tmp_path / "krylov.pt"
    with pytest.raises(_Interrupt):
        lanczos(op, tol=1e-10, seed=1, checkpoint=path, progress=_stop_after(7), **kwargs)
    assert path.exists()
    used = op.num_products
    got = lanczos(op, tol=1e-10, seed=1, checkpoint=path, **kwargs)
    # The resumed run only pays for what the interrupted one had not done.
    assert op.num_products - used < ref.num_products
    assert got.num_products == ref.num_products
    np.testing.assert_array_equal(got.top.eigenvalues, ref.top.eigenvalues)
    np.testing.assert_array_equal(got.bottom.eigenvalues, ref.bottom.eigenvalues)
    np.testing.assert_array_equal(got.top.residuals, ref.top.residuals)
    # A finished checkpoint answers again without a single product.
    before = op.num_products
    again = lanczos(op, tol=1e-10, seed=1, checkpoint=path, **kwargs)
    assert op.num_products == before
    np.testing.assert_array_equal(again.top.eigenvalues, ref.top.eigenvalues)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    op = spectra.with_spectrum(spectra.distinct(), seed=4)
    path = tmp_path / "krylov.pt"
    lanczos(op, top=2, seed=0, checkpoint=path)
    with pytest.raises(OperatorError, match="other settings"):
        lanczos(op, top=2, seed=1, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(OperatorError, match="delete it"):
        lanczos(op, top=2, seed=0, checkpoint=path)


def test_iterations_driven_by_hand_equal_lanczos():
    op = spectra.with_spectrum(spectra.clustered(), seed=6)
    it = LanczosIteration(
        op.dim, op.dtype, op.device, KrylovOptions(top=2, block_size=2, tol=1e-9, seed=3)
    )
    while (X := it.pending()) is not None:
        it.feed(op.matmat(X))
    ref = lanczos(op, top=2, block_size=2, tol=1e-9, seed=3)
    np.testing.assert_array_equal(it.result().top.eigenvalues, ref.top.eigenvalues)
    with pytest.raises(OperatorError):
        it.feed(torch.zeros(op.dim, 2, dtype=torch.float64))
