"""The spectrum() entry point: method choice, condition numbers, dense path, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from solvers import spectra

from hessiankit.errors import OperatorError
from hessiankit.operators import MatrixOperator
from hessiankit.solvers import condition_from_eigenvalues, dense_eigh, spectrum
from hessiankit.solvers.policy import choose_method


@pytest.mark.slow
def test_auto_dense_threshold_still_overrides_the_cost_rule():
    small = spectra.with_spectrum(spectra.distinct(50), seed=0)
    big = spectra.with_spectrum(spectra.distinct(150), seed=0)
    assert spectrum(small, top=2, bottom=1).method == "dense"
    r = spectrum(big, top=2, bottom=1, dense_threshold=100)
    assert r.method == "lanczos" and "dense_threshold" in r.method_reason
    assert spectrum(big, top=2, bottom=1, dense_threshold=400).method == "dense"
    assert spectrum(big, top=2, bottom=1, method="lanczos").method_reason == "lanczos: asked for"


def test_policy_prices_the_routes():
    op = spectra.with_spectrum(spectra.distinct(300), seed=0, psd=True)
    # bottom >= 1: the Krylov budget covers the whole space, so dense is no dearer
    c = choose_method(op, top=5, bottom=1)
    assert c.method == "dense" and "no shorter" in c.reason
    # top-only on a large operator with cheap products: a short Krylov run wins
    big = MatrixOperator(torch.eye(3000, dtype=torch.float64), is_psd=True)
    c = choose_method(big, top=1, bottom=0, product_seconds=1e-4)
    assert c.method == "lanczos" and "ms per product" in c.reason
    # with bottom the Krylov run is priced at 2 x 1,205 products and its eighs: slow products
    # favour it, fast ones favour 3,000 products and one eigh
    slow = choose_method(big, top=5, bottom=1, product_seconds=1.0)
    assert slow.method == "lanczos"
    fast = choose_method(big, top=5, bottom=1, product_seconds=1e-6)
    assert fast.method == "dense"
    # memory first: a matrix over the limit is never materialised
    c = choose_method(big, top=5, bottom=1, max_dense_bytes=2**20)
    assert c.method == "lanczos" and "max_dense_bytes" in c.reason


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_condition_number_on_range_of_singular_psd(method):
    ev = spectra.with_zeros(200, 60)
    op = spectra.with_spectrum(ev, seed=1, psd=True)
    r = spectrum(op, top=1, bottom=1, method=method, tol=1e-10, dense_threshold=10)
    nonzero = np.sort(ev[ev > 0])
    assert r.condition.kappa == pytest.approx(nonzero[-1] / nonzero[0], rel=1e-8)
    assert r.condition.kappa_plain is None
    assert r.bottom_on_range
    assert r.bottom.eigenvalues[0] == pytest.approx(nonzero[0], rel=1e-8)
    if method == "dense":
        assert (r.condition.rank, r.condition.nullity) == (140, 60)
    else:
        assert r.condition.rank is None and "rank unknown" in r.condition.note


@pytest.mark.slow
def test_condition_of_indefinite_by_lanczos_is_left_unknown_with_a_reason():
    op = spectra.with_spectrum(spectra.indefinite(), seed=2)
    r = spectrum(op, top=1, bottom=1, method="lanczos", tol=1e-8)
    assert r.condition.kappa is None and "interior" in r.condition.note
    d = spectrum(op, top=1, bottom=1, method="dense")
    ev = np.abs(spectra.indefinite())
    assert d.condition.kappa == pytest.approx(ev.max() / ev.min(), rel=1e-9)


def test_dense_matches_eigh_and_reports_asymmetry_as_precision():
    ev = spectra.indefinite(80)
    op = spectra.with_spectrum(ev, seed=3)
    d = dense_eigh(op)
    np.testing.assert_allclose(d.eigenvalues.numpy(), np.sort(ev), atol=1e-12)
    assert d.asymmetry < 1e-12 and d.num_products == 80
    op32 = type(op)(op.matrix.float())
    d32 = dense_eigh(op32)
    assert np.all(np.abs(d32.eigenvalues.numpy() - np.sort(ev)) <= d32.precision + 1e-5)


def test_power_method_through_spectrum():
    ev = np.concatenate([np.linspace(0.5, 1.0, 60), [3.0, 4.0]])
    op = spectra.with_spectrum(ev, seed=4, psd=True)
    r = spectrum(op, top=2, bottom=1, method="power", tol=1e-9, max_iter=3000)
    np.testing.assert_allclose(r.top.eigenvalues, [4.0, 3.0], rtol=1e-7)
    np.testing.assert_allclose(r.bottom.eigenvalues, [0.5], rtol=1e-5)
    assert r.condition.kappa == pytest.approx(8.0, rel=1e-5)


def test_errors_name_the_fix():
    op = spectra.with_spectrum(np.arange(1.0, 11.0), seed=0)
    with pytest.raises(OperatorError, match="at most 10"):
        spectrum(op, top=11)
    with pytest.raises(OperatorError, match="unknown method"):
        spectrum(op, method="qr")  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="GiB"):
        spectrum(op, method="dense", max_dense_bytes=10)


def test_condition_from_eigenvalues_closed_cases():
    c = condition_from_eigenvalues(np.array([1e-20, 2.0, 8.0]), rtol=1e-12)
    assert (c.rank, c.nullity, c.kappa, c.kappa_plain) == (2, 1, 4.0, None)
    c = condition_from_eigenvalues(np.array([-4.0, 1.0, 2.0]), rtol=1e-12)
    assert c.kappa == 4.0 and c.kappa_plain == 4.0 and c.lambda_min == -4.0
    c = condition_from_eigenvalues(np.zeros(3), rtol=1e-12)
    assert c.kappa is None and c.rank == 0


def test_result_is_frozen_and_serialisable():
    import json

    op = spectra.with_spectrum(spectra.distinct(30), seed=5)
    r = spectrum(op, top=3, bottom=1)
    with pytest.raises(ValueError):
        r.top.eigenvalues[0] = 1.0
    with pytest.raises(AttributeError):
        r.method = "x"  # type: ignore[misc]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["eigenvalues"] == r.top.eigenvalues.tolist() and d["dimension"] == 30
    assert torch.is_tensor(op.matrix)
