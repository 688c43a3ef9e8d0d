"""Stochastic Lanczos quadrature against dense float64 spectra.

Tolerances come from the probe count: for a normalised Rademacher probe ``v = z / sqrt(n)``,
``Var(v^T B v) = 2 (||B||_F^2 - sum_i B_ii^2) / n^2``, so the mean over p probes has standard
error ``sqrt(Var / p)``; estimates must lie within 4 of them (fixed seeds).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid

from hessiankit.blocks import capture
from hessiankit.errors import OperatorError
from hessiankit.operators import MatrixOperator, hessian_operator
from hessiankit.solvers.slq import _rademacher, slq
from solvers import spectra


def _probe_se(B: np.ndarray, p: int) -> float:
    """Standard error of the p-probe mean of ``v^T B v`` (closed form, see module docstring)."""
    n = B.shape[0]
    var = 2.0 * (np.sum(B * B) - np.sum(np.diag(B) ** 2)) / n**2
    return math.sqrt(var / p)


CASES = {
    "distinct": spectra.distinct(200),
    "with_zeros": spectra.with_zeros(200, 60),
    "indefinite": spectra.indefinite(200),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_density_integrates_to_one_and_moments_match_the_exact_spectrum(
    case: str, seed: int
) -> None:
    ev = CASES[case]
    op = spectra.with_spectrum(ev, seed=10 + seed)
    A = op.matrix.numpy()
    p = 12
    d = slq(op, num_probes=p, num_steps=40, seed=seed)
    n = A.shape[0]
    g, phi = d.linear.grid, d.linear.density
    assert trapezoid(phi, g) == pytest.approx(1.0, abs=1e-6)
    # moments of the smoothed density: mean = tr/n, second moment = tr(A^2)/n + sigma^2
    m1, m2 = np.sum(ev) / n, np.sum(ev**2) / n
    tol1, tol2 = 4 * _probe_se(A, p), 4 * _probe_se(A @ A, p)
    assert abs(trapezoid(g * phi, g) - m1) <= tol1
    assert abs(trapezoid(g * g * phi, g) - d.linear.sigma**2 - m2) <= tol2
    # the quadrature moments themselves, with the reported standard error near the closed form
    est1, se1 = d.moment(1)
    assert abs(est1 - m1) <= tol1
    assert abs(d.moment(2)[0] - m2) <= tol2
    assert 0.4 < se1 / _probe_se(A, p) < 2.0
    assert trapezoid(g * phi, g) == pytest.approx(est1, abs=1e-9 * max(1.0, abs(est1)))


def test_nodes_and_weights_are_the_gauss_quadrature_of_each_probe() -> None:
    op = spectra.with_spectrum(spectra.distinct(120), seed=3)
    A = op.matrix
    m = 15
    d = slq(op, num_probes=3, num_steps=m, seed=7)
    V = _rademacher(120, 3, 7)
    for l in range(3):
        v = V[:, l]
        t, w = d.nodes[l], d.weights[l]
        assert w.sum() == pytest.approx(1.0, abs=1e-13) and (w >= 0).all()
        Akv = v.clone()
        for k in range(2 * m):  # exact for every degree up to 2m - 1
            ref = float(v @ Akv)
            assert np.sum(w * t**k) == pytest.approx(ref, rel=1e-8, abs=1e-12)
            Akv = A @ Akv
        assert (t[0] >= 1e-3 - 1e-9) and (t[-1] <= 1e2 + 1e-9)  # Ritz values inside the spectrum


def test_full_krylov_space_recovers_the_eigenvalues() -> None:
    ev = np.linspace(-1.0, 2.0, 30)
    op = spectra.with_spectrum(ev, seed=4)
    d = slq(op, num_probes=2, num_steps=30, seed=0)
    for t in d.nodes:
        assert np.abs(t[:, None] - ev[None, :]).min(axis=1).max() < 1e-9


def test_zero_and_negative_mass_estimate_the_eigenvalue_fractions() -> None:
    # few distinct eigenvalues: the Krylov space is invariant after 6 steps, so each probe's
    # zero/negative mass is exactly v^T P v for the spectral projector P
    rng = np.random.default_rng(0)
    ev = np.concatenate([np.zeros(50), rng.choice([-2.0, -0.5, 0.3, 1.0, 4.0], 150)])
    op = spectra.with_spectrum(ev, seed=5)
    p = 16
    d = slq(op, num_probes=p, num_steps=20, seed=2)
    assert max(d.steps) <= 6
    w, Q = np.linalg.eigh(op.matrix.numpy())
    P0 = Q[:, np.abs(w) < 1e-8] @ Q[:, np.abs(w) < 1e-8].T
    Pn = Q[:, w < -1e-8] @ Q[:, w < -1e-8].T
    assert abs(d.zero_mass - 50 / 200) <= 4 * _probe_se(P0, p)
    assert abs(d.negative_mass - np.mean(ev < 0)) <= 4 * _probe_se(Pn, p)
    assert trapezoid(d.log.density, d.log.grid) == pytest.approx(1.0 - d.zero_mass, abs=1e-6)
    assert d.log.mass == pytest.approx(1.0 - d.zero_mass, abs=1e-12)
    # the log curve sits on log10|lambda| of the nonzero eigenvalues
    peaks = d.log.grid[np.argsort(d.log.density)[-1]]
    assert np.min(np.abs(peaks - np.log10([2.0, 0.5, 0.3, 1.0, 4.0]))) < 0.05


def test_default_width_is_the_node_spread_over_the_steps() -> None:
    d = slq(
        spectra.with_spectrum(spectra.distinct(100), seed=6), num_probes=4, num_steps=25, seed=0
    )
    allt = np.concatenate(d.nodes)
    assert d.linear.sigma == pytest.approx((allt.max() - allt.min()) / 25, rel=1e-12)
    nz = np.log10(np.abs(allt[np.abs(allt) > d.zero_threshold]))
    assert d.log.sigma == pytest.approx((nz.max() - nz.min()) / 25, rel=1e-12)
    assert d.num_products == sum(d.steps) <= 4 * 25


def test_without_reorthogonalisation_the_low_moments_agree() -> None:
    op = spectra.with_spectrum(spectra.clustered(150), seed=8)
    full = slq(op, num_probes=4, num_steps=60, seed=1, reorthogonalize="full")
    none = slq(op, num_probes=4, num_steps=60, seed=1, reorthogonalize="none")
    assert full.reorthogonalized and not none.reorthogonalized
    for k in (1, 2, 3):
        assert none.moment(k)[0] == pytest.approx(full.moment(k)[0], rel=1e-8)


@pytest.mark.parametrize(
    ("wrt", "kind"), [("weights", "gauss-newton"), ("input", "exact"), ("weights", "loss")]
)
def test_local_and_loss_hessians_of_a_network(mlp_tanh, wrt: str, kind: str) -> None:
    net, x, y = mlp_tanh
    cap = capture(net, x, y)
    op = hessian_operator(cap, 2, wrt=wrt, kind=kind)
    H = op.to_dense().numpy()
    p = 10
    d = slq(op, num_probes=p, num_steps=op.dim, seed=0)
    n = H.shape[0]
    assert abs(d.moment(1)[0] - np.trace(H) / n) <= 4 * _probe_se(H, p) + 1e-12
    assert abs(d.moment(2)[0] - np.trace(H @ H) / n) <= 4 * _probe_se(H @ H, p) + 1e-12
    assert (d.operator["block"], d.operator["wrt"], d.operator["kind"]) == (2, wrt, kind)


def test_bad_options_are_refused() -> None:
    op = MatrixOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(OperatorError, match="at least one probe"):
        slq(op, num_probes=0)
    with pytest.raises(OperatorError, match="reorthogonalize"):
        slq(op, reorthogonalize="sometimes")  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="width"):
        slq(op, sigma=-1.0)
    with pytest.raises(OperatorError, match="GiB basis"):
        slq(op, reorthogonalize="full", max_basis_bytes=10)
    assert not slq(op, num_steps=3, max_basis_bytes=10).reorthogonalized  # auto falls back


def test_non_finite_products_raise_a_numerical_error() -> None:
    from hessiankit.errors import NumericalError

    A = torch.eye(5, dtype=torch.float64)
    A[2, 2] = float("nan")
    with pytest.raises(NumericalError, match="NaN or Inf"):
        slq(MatrixOperator(A), num_probes=2, num_steps=3)


def test_identity_has_all_mass_at_one() -> None:
    d = slq(MatrixOperator(torch.eye(50, dtype=torch.float64)), num_probes=3, num_steps=10, seed=0)
    assert d.steps == (1, 1, 1)
    assert d.moment(1) == pytest.approx((1.0, 0.0))
    assert d.linear.grid[np.argmax(d.linear.density)] == pytest.approx(1.0, abs=d.linear.sigma / 2)


def test_smallest_node_carries_at_least_the_null_mass() -> None:
    # many distinct eigenvalues and few steps: the null mass merges into the smallest node,
    # whose weight is at least v^T P0 v for every probe (Chebyshev-Markov-Stieltjes); once
    # that node lies below half the smallest nonzero eigenvalue, zero_threshold counts it
    ev = spectra.with_zeros(200, 60)
    op = spectra.with_spectrum(ev, seed=9)
    w, Q = np.linalg.eigh(op.matrix.numpy())
    P0 = Q[:, np.abs(w) < 1e-9] @ Q[:, np.abs(w) < 1e-9].T
    V = _rademacher(200, 6, 3).numpy()
    null = [float(V[:, l] @ P0 @ V[:, l]) for l in range(6)]
    for m in (12, 30):
        d = slq(op, num_probes=6, num_steps=m, seed=3, zero_threshold=0.5e-2)
        assert d.zero_threshold == 0.5e-2
        for l in range(6):
            assert d.weights[l][0] >= null[l] - 1e-10
    assert all(t[0] <= 0.5e-2 for t in d.nodes)  # m = 30 separates the null node
    assert d.zero_mass >= np.mean(null) - 1e-10
    assert d.zero_mass >= 60 / 200 - 4 * _probe_se(P0, 6)


@pytest.mark.slow
def test_reorthogonalisation_keeps_each_converged_node_single() -> None:
    # Long past the outliers' convergence, lost orthogonality makes ghost copies of them (the
    # plain recurrence shows a dozen); reorthogonalisation, whose second pass runs only where
    # the first removed much of the vector (DGKS), must keep exactly one, at the eigenvalue.
    ev = np.concatenate([np.linspace(0.0, 1.0, 397), [5.0, 8.0, 10.0]])
    op = spectra.with_spectrum(ev, seed=3)
    full = slq(op, num_probes=2, num_steps=150, seed=0, reorthogonalize="full")
    none = slq(op, num_probes=2, num_steps=150, seed=0, reorthogonalize="none")
    for outlier in (5.0, 8.0, 10.0):
        assert all(int((np.abs(t - outlier) < 1e-6).sum()) == 1 for t in full.nodes)
        assert all(int((np.abs(t - outlier) < 1e-6).sum()) > 1 for t in none.nodes)
