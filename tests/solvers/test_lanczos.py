"""Block Lanczos against numpy.linalg.eigh on matrices with known spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from solvers import spectra

from hessiankit.errors import OperatorError
from hessiankit.operators import MatrixOperator
from hessiankit.solvers import lanczos

CASES = {
    "distinct": (spectra.distinct(), None),
    "clustered": (spectra.clustered(), None),
    "repeated": (spectra.repeated(), None),
    "indefinite": (spectra.indefinite(), None),
}


def _bounds_hold(found: np.ndarray, bounds: np.ndarray, exact: np.ndarray) -> None:
    assert np.all(np.abs(found - exact) <= bounds * (1 + 1e-6) + 1e-13)


# The distinct spectrum (1e-3..1e2 at tol 1e-10) runs the whole space: slow.
@pytest.mark.slow
@pytest.mark.parametrize(
    "k,name",
    [
        pytest.param(k, name, marks=pytest.mark.slow) if name == "distinct" else (k, name)
        for k in (1, 4)
        for name in sorted(CASES)
    ],
)
def test_top_and_bottom_match_eigh(name, k):
    ev, psd = CASES[name]
    op = spectra.with_spectrum(ev, seed=1, psd=psd)
    r = lanczos(op, top=k, bottom=k, block_size=k, tol=1e-10, seed=0)
    exact = np.sort(ev)
    assert r.top.all_converged and r.bottom.all_converged
    np.testing.assert_allclose(r.top.eigenvalues, exact[::-1][:k], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(r.bottom.eigenvalues, exact[:k], rtol=1e-8, atol=1e-12)
    _bounds_hold(r.top.eigenvalues, r.top.error_bounds, exact[::-1][:k])
    _bounds_hold(r.bottom.eigenvalues, r.bottom.error_bounds, exact[:k])


@pytest.mark.slow
def test_repeated_eigenvalue_needs_a_block_as_large_as_its_multiplicity():
    ev = spectra.repeated()
    op = spectra.with_spectrum(ev, seed=2)
    r = lanczos(op, top=5, block_size=5, tol=1e-10, seed=0)
    np.testing.assert_allclose(r.top.eigenvalues, np.sort(ev)[::-1][:5], rtol=1e-9)
    assert np.count_nonzero(np.isclose(r.top.eigenvalues, 3.0, rtol=1e-9)) == 4


@pytest.mark.slow
def test_psd_with_null_space_gives_smallest_nonzero_from_range_start():
    ev = spectra.with_zeros()
    op = spectra.with_spectrum(ev, seed=3, psd=True)
    r = lanczos(op, top=2, bottom=2, block_size=2, tol=1e-10, seed=0)
    assert r.range_start
    nonzero = np.sort(ev[ev > 0])
    np.testing.assert_allclose(r.bottom.eigenvalues, nonzero[:2], rtol=1e-8)
    np.testing.assert_allclose(r.top.eigenvalues, nonzero[::-1][:2], rtol=1e-10)


@pytest.mark.slow  # twenty seeds
def test_bottom_of_a_kronecker_weight_hessian_is_not_claimed_from_a_tiny_basis():
    # The weight GN Hessian of a final linear layer is A kron I (A: second moments of the
    # block's input with a bias column). A range start A r is dominated by A's top eigenvector,
    # so a 1-2 vector Krylov space held a converged Ritz pair at the *top* that was reported as
    # the smallest eigenvalue (found on the benchmark CNN's last block at tol 1e-2).
    checked = 0
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        a = torch.relu(torch.randn(32, 32, generator=g, dtype=torch.float64) + 2.0)
        a = torch.cat([a, torch.ones(32, 1, dtype=torch.float64)], 1)
        H = torch.kron(a.T @ a / 32, torch.eye(10, dtype=torch.float64))
        ev = torch.linalg.eigvalsh(H)
        smallest = float(ev[ev > 1e-10 * ev.max()].min())
        r = lanczos(MatrixOperator(H, is_psd=True), top=0, bottom=1, tol=1e-2, seed=seed)
        assert r.num_products >= 20
        if smallest < 2.5e-6 * float(ev.max()):
            continue  # 1e6 below the top: Lanczos converges to a larger one first (documented)
        checked += 1
        assert r.bottom.converged[0]
        _bounds_hold(r.bottom.eigenvalues, r.bottom.error_bounds, np.array([smallest]))
    assert checked >= 12


@pytest.mark.slow
def test_random_start_on_psd_finds_the_zeros():
    ev = spectra.with_zeros()
    op = spectra.with_spectrum(ev, seed=3, psd=True)
    r = lanczos(op, top=1, bottom=2, block_size=2, tol=1e-8, seed=0, start="random")
    assert np.all(np.abs(r.bottom.eigenvalues) <= r.bottom.error_bounds + 1e-12)


def test_unconverged_results_are_flagged_and_residuals_still_bound_some_eigenvalue():
    ev = spectra.clustered()
    op = spectra.with_spectrum(ev, seed=4)
    r = lanczos(op, top=3, bottom=1, tol=1e-12, seed=0, max_products=8)
    assert r.num_products <= 8
    assert not r.top.converged.all()
    for theta, res in zip(r.top.eigenvalues, r.top.residuals):
        assert np.min(np.abs(ev - theta)) <= res * (1 + 1e-8) + 1e-12


def test_breakdown_restarts_to_find_multiplicities():
    # Three distinct eigenvalues, each 20 times: a single start vector spans only 3 dimensions.
    ev = np.repeat([1.0, 2.0, 5.0], 20)
    op = spectra.with_spectrum(ev, seed=5)
    r = lanczos(op, top=6, block_size=6, tol=1e-10, seed=0)
    np.testing.assert_allclose(r.top.eigenvalues, [5.0] * 6, rtol=1e-10)
    r1 = lanczos(op, top=1, bottom=1, block_size=1, tol=1e-10, seed=0, max_products=60)
    assert r1.breakdowns == 0 or r1.basis_size > 3
    np.testing.assert_allclose(
        [r1.top.eigenvalues[0], r1.bottom.eigenvalues[0]], [5.0, 1.0], rtol=1e-10
    )


def test_k_close_to_the_dimension_exhausts_the_space():
    ev = np.linspace(1.0, 40.0, 40)
    op = spectra.with_spectrum(ev, seed=6)
    r = lanczos(op, top=39, block_size=1, tol=1e-10, seed=0, max_products=100)
    assert r.exhausted and r.basis_size == 40
    np.testing.assert_allclose(r.ritz_values, ev, rtol=1e-10)
    np.testing.assert_allclose(r.top.eigenvalues, ev[::-1][:39], rtol=1e-10)
    # A block that does not divide the dimension.
    r3 = lanczos(op, top=3, bottom=3, block_size=7, tol=1e-10, seed=0, max_products=200)
    np.testing.assert_allclose(r3.top.eigenvalues, ev[::-1][:3], rtol=1e-10)


def test_same_seed_same_result_and_float32_operator_precision():
    ev = spectra.distinct(150)
    op = spectra.with_spectrum(ev, seed=7)
    a = lanczos(op, top=3, seed=11, tol=1e-10)
    b = lanczos(op, top=3, seed=11, tol=1e-10)
    assert np.array_equal(a.top.eigenvalues, b.top.eigenvalues)
    op32 = type(op)(op.matrix.float())
    r = lanczos(op32, top=3, seed=11, tol=1e-10)
    assert r.precision > 1e-6 * ev.max()  # float32 products cannot do better than ~eps32 ||A||
    assert r.top.all_converged
    _bounds_hold(r.top.eigenvalues, r.top.error_bounds + 1e-5 * ev.max(), np.sort(ev)[::-1][:3])


def test_bad_requests_raise():
    op = spectra.with_spectrum(np.arange(1.0, 6.0), seed=0)
    with pytest.raises(OperatorError, match="at most 5"):
        lanczos(op, top=6)
    with pytest.raises(OperatorError, match="at least one"):
        lanczos(op, top=0, bottom=0)


def test_ritz_vectors_are_eigenvectors():
    ev = spectra.distinct(120)
    op = spectra.with_spectrum(ev, seed=8)
    r = lanczos(op, top=2, tol=1e-12, seed=0, keep_vectors=True)
    V = r.top.eigenvectors
    assert V is not None and V.shape == (120, 2)
    R = op.matrix @ V - V * torch.tensor(r.top.eigenvalues)
    np.testing.assert_allclose(
        torch.linalg.vector_norm(R, dim=0).numpy(), r.top.residuals, atol=1e-9
    )


@pytest.mark.slow
def test_a_given_start_near_the_top_eigenvector_saves_products_and_stays_exact():
    ev = spectra.distinct()
    op = spectra.with_spectrum(ev, seed=4)
    A = op.to_dense()
    _, vecs = torch.linalg.eigh(A)
    near = vecs[:, -1] + 0.05 * vecs[:, :-1].sum(dim=1) / np.sqrt(len(ev))  # 5% off the top
    cold = lanczos(op, top=1, tol=1e-10, seed=0)
    warm = lanczos(op, top=1, tol=1e-10, seed=0, start=near)
    assert warm.top.all_converged and cold.top.all_converged
    _bounds_hold(warm.top.eigenvalues, warm.top.error_bounds, np.array([ev.max()]))
    assert warm.num_products < cold.num_products
    # a start orthogonal to the top eigenvector still finds it (the random component)
    away = lanczos(op, top=1, tol=1e-10, seed=0, start=vecs[:, 0])
    _bounds_hold(away.top.eigenvalues, away.top.error_bounds, np.array([ev.max()]))


def test_a_bad_start_tensor_is_refused():
    op = spectra.with_spectrum(spectra.distinct(20), seed=0)
    for bad in (torch.ones(19), torch.zeros(20), torch.full((20,), float("nan"))):
        with pytest.raises(OperatorError, match="start"):
            lanczos(op, top=1, start=bad)


@pytest.mark.parametrize(("p", "start"), [(5, "range"), (5, "random"), (1, "range"), (7, "range")])
def test_default_budget_reaches_an_exhausted_space_whatever_the_start(p, start):
    # n <= the default budget's cap: the start block must not eat the products the last
    # Krylov block needs (n = 24 with p = 5 from a range start stopped at 20 + 4 vectors).
    ev = np.concatenate([np.zeros(3), np.geomspace(1e-3, 2.0, 21)])
    op = spectra.with_spectrum(ev, seed=9, psd=True)
    r = lanczos(op, top=5, bottom=1, block_size=p, tol=1e-14, seed=0, start=start)
    exact = np.sort(ev)
    assert r.top.all_converged and r.bottom.all_converged
    np.testing.assert_allclose(r.top.eigenvalues, exact[::-1][:5], rtol=1e-9)
    smallest = exact[3] if r.range_start else exact[0]
    np.testing.assert_allclose(r.bottom.eigenvalues, [smallest], rtol=1e-9, atol=1e-13)
    assert r.num_products <= 24 + (p if r.range_start else 0)
    if p == 5:  # converges only once the space is exhausted: the whole spectrum is exact
        assert r.exhausted and r.basis_size == 24
        np.testing.assert_allclose(r.ritz_values, exact, rtol=1e-9, atol=1e-13)
