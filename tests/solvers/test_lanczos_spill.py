"""A Krylov basis kept within a memory budget by spilling to float32 storage, against dense
float64 eigendecompositions (numpy.linalg.eigh of the same matrix)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from solvers.spectra import Interrupt as _Interrupt
from solvers.spectra import gapped as _gapped
from solvers.spectra import stop_after as _stop_after
from solvers import spectra

from hessiankit.errors import OperatorError
from hessiankit.operators import MatrixOperator
from hessiankit.solvers import LanczosIteration, lanczos, spectrum
from hessiankit.solvers.options import KrylovOptions
from hessiankit.solvers.lanczos import _Basis

EPS32 = float(torch.finfo(torch.float32).eps)


def _within_bounds(values: np.ndarray, bounds: np.ndarray, exact: np.ndarray) -> None:
    assert len(values) == len(exact)
    assert np.all(np.abs(values - exact) <= bounds), (values - exact, bounds)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 8])
def test_spill_converts_in_place_and_keeps_every_vector(size):
    n = 37
    basis = _Basis(n, torch.device("cpu"), torch.float64, capacity=8)
    X = torch.randn(n, size, dtype=torch.float64, generator=torch.Generator().manual_seed(size))
    if size:
        basis.append(X)
    where = basis._V.data_ptr()
    basis.spill()
    assert basis.dtype == torch.float32 and basis._V.data_ptr() == where  # no new memory
    assert basis._V.shape[0] == 16  # the capacity doubled
    torch.testing.assert_close(basis.Q, X.to(torch.float32), rtol=0, atol=0)
    assert basis.nbytes == 4 * n * size


def test_float32_basis_projections_accumulate_in_float64():
    # Orthogonalising against a float32 basis removes its span to float64 accuracy: what is left
    # is orthogonal to the stored vectors far below eps(float32).
    n = 500
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(n, 40, dtype=torch.float64, generator=g))
    basis = _Basis(n, torch.device("cpu"), torch.float32, capacity=40)
    basis.append(Q)
    W = torch.randn(n, 3, dtype=torch.float64, generator=g)
    W0 = W.clone()
    H = basis.project_out(W)
    Q32 = basis.Q.to(torch.float64)
    assert float((Q32.T @ W).abs().max()) < 1e-13
    torch.testing.assert_close(W0, W + Q32 @ H, rtol=0, atol=1e-13)


def _unlimited(op, **kw):
    return lanczos(op, seed=0, **kw)


@pytest.mark.parametrize("p", [1, 3])
def test_budget_forces_a_spill_but_no_restart(p):
    ev = _gapped()
    op = spectra.with_spectrum(ev, seed=4)
    kw = {"top": 3, "bottom": 2, "block_size": p, "tol": 1e-4, "max_products": 3000}
    free = _unlimited(op, **kw)
    # float64 holds two thirds of what the run needs; float32 holds 4/3 of it.
    budget = (2 * free.basis_size // 3) * 8 * op.dim
    r = lanczos(op, seed=0, max_basis_bytes=budget, **kw)
    assert free.basis_dtype == "float64" and free.restarts == 0
    assert r.basis_dtype == "float32" and r.restarts == 0
    assert r.basis_bytes <= budget and r.max_basis_bytes == budget
    assert r.basis_bytes > 4 * op.dim * (2 * free.basis_size // 3)  # grew past float64's room
    assert r.precision == pytest.approx(100 * EPS32 * r.anorm)
    assert r.top.all_converged and r.bottom.all_converged
    exact = np.sort(ev)
    _within_bounds(r.top.eigenvalues, r.top.error_bounds, exact[::-1][:3])
    _within_bounds(r.bottom.eigenvalues, r.bottom.error_bounds, exact[:2])


def test_budget_forces_a_spill_and_restarts():
    ev = spectra.indefinite()
    op = spectra.with_spectrum(ev, seed=5)
    budget = 12 * 8 * op.dim  # float64: 12 vectors, float32: 24; the run needs 65
    r = lanczos(op, top=3, bottom=2, tol=1e-4, seed=0, max_basis_bytes=budget, max_products=3000)
    assert r.basis_dtype == "float32" and r.restarts > 0
    assert r.basis_bytes <= budget
    assert r.top.all_converged and r.bottom.all_converged
    exact = np.sort(ev)
    _within_bounds(r.top.eigenvalues, r.top.error_bounds, exact[::-1][:3])
    _within_bounds(r.bottom.eigenvalues, r.bottom.error_bounds, exact[:2])


@pytest.mark.slow
def test_tolerance_finer_than_float32_restarts_instead_of_spilling():
    op = spectra.with_spectrum(spectra.indefinite(), seed=5)
    r = lanczos(
        op, top=3, bottom=2, tol=1e-10, seed=0, max_basis_bytes=30 * 8 * op.dim, max_products=3000
    )
    assert r.basis_dtype == "float64" and r.restarts > 0
    assert r.precision < 1e-12 * r.anorm
    forced = lanczos(
        op,
        top=3,
        bottom=2,
        tol=1e-10,
        seed=0,
        basis_dtype="float32",
        max_basis_bytes=30 * 8 * op.dim,
        max_products=3000,
    )
    assert forced.basis_dtype == "float32"
    assert forced.precision == pytest.approx(100 * EPS32 * forced.anorm)


@pytest.mark.slow
@pytest.mark.parametrize("psd", [False, True])
def test_float32_storage_floor_covers_the_true_error(psd):
    # Eigenvalues from 1e-9 to 1e3 (or a null space): the smallest ones sit far below what a
    # float32 basis resolves. Every reported bound must still cover the true error, and the
    # computed residuals must match the true ones to the precision floor.
    if psd:
        ev = spectra.with_zeros()
        op = spectra.with_spectrum(ev, seed=6, psd=True)
    else:
        ev = np.geomspace(1e-9, 1e3, 400)
        op = spectra.with_spectrum(ev, seed=5)
    A = op.to_dense()
    exact = np.linalg.eigvalsh(A.numpy())
    r = spectrum(
        op,
        top=5,
        bottom=3,
        method="lanczos",
        tol=1e-12,
        basis_dtype="float32",
        keep_vectors=True,
        max_products=2000,
    )
    assert r.basis_dtype == "float32"
    scale = float(np.abs(exact).max())
    assert r.precision >= 100 * EPS32 * scale * (1 - 1e-6)
    _within_bounds(r.top.eigenvalues, r.top.error_bounds, exact[::-1][:5])
    if psd:  # null directions leaked in by float32 rounding do not count as eigenvalues
        nonzero = exact[exact > 1e-9 * scale]
        _within_bounds(r.bottom.eigenvalues, r.bottom.error_bounds, nonzero[:3])
    else:
        _within_bounds(r.bottom.eigenvalues, r.bottom.error_bounds, exact[:3])
    for pairs in (r.top, r.bottom):
        Y = pairs.eigenvectors
        assert Y is not None
        theta = torch.as_tensor(pairs.eigenvalues.copy())
        true_res = (A @ Y - Y * theta).norm(dim=0).numpy() / Y.norm(dim=0).numpy()
        assert np.all(np.abs(true_res - pairs.residuals) <= r.precision)


@pytest.mark.slow  # two full runs on a 300-dimensional float32 operator
def test_float32_operator_stores_its_basis_in_float32():
    op64 = spectra.with_spectrum(spectra.distinct(), seed=2)
    op32 = MatrixOperator(op64.to_dense().to(torch.float32))
    exact = np.linalg.eigvalsh(op32.to_dense().double().numpy())
    r = lanczos(op32, top=3, bottom=2, tol=1e-4, seed=0)
    ref = lanczos(op32, top=3, bottom=2, tol=1e-4, seed=0, basis_dtype="float64")
    assert r.basis_dtype == "float32" and ref.basis_dtype == "float64"
    assert r.basis_bytes == 4 * op32.dim * r.basis_size  # no restart: the peak is the end
    assert ref.basis_bytes == 8 * op32.dim * ref.basis_size
    assert r.precision == pytest.approx(ref.precision, rel=1e-6)  # float32 products set both
    _within_bounds(r.top.eigenvalues, r.top.error_bounds, exact[::-1][:3])
    _within_bounds(r.bottom.eigenvalues, r.bottom.error_bounds, exact[:2])


@pytest.mark.parametrize("steps", [4, 30])  # interrupted before and after the spill
def test_resume_of_a_spilled_run_is_bit_identical(tmp_path, steps):
    op = spectra.with_spectrum(spectra.indefinite(), seed=5)
    kw = {"top": 3, "bottom": 3, "tol": 1e-4, "max_basis_bytes": 20 * 8 * op.dim}
    ref = lanczos(op, seed=1, **kw)
    assert ref.basis_dtype == "float32" and ref.restarts > 0
    path = tmp_path / "krylov.pt"
    with pytest.raises(_Interrupt):
        lanczos(op, seed=1, checkpoint=path, progress=_stop_after(steps), **kw)
    saved = torch.load(path, weights_only=True)
    assert saved["Q"].dtype == (torch.float64 if steps == 4 else torch.float32)
    got = lanczos(op, seed=1, checkpoint=path, **kw)
    assert got.num_products == ref.num_products and got.restarts == ref.restarts
    assert got.basis_bytes == ref.basis_bytes and got.basis_dtype == "float32"
    for a, b in ((got.top, ref.top), (got.bottom, ref.bottom)):
        np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
        np.testing.assert_array_equal(a.residuals, b.residuals)
        np.testing.assert_array_equal(a.error_bounds, b.error_bounds)


def test_spectrum_reports_the_basis_budget():
    op = spectra.with_spectrum(spectra.indefinite(), seed=5)
    budget = 12 * 8 * op.dim
    r = spectrum(
        op, top=3, bottom=2, method="lanczos", tol=1e-4, max_basis_bytes=budget, max_products=3000
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert d["max_basis_bytes"] == budget and 0 < d["basis_bytes"] <= budget
    assert d["basis_dtype"] == "float32" and d["restarts"] == r.restarts > 0
    exact = np.sort(spectra.indefinite())
    _within_bounds(r.top.eigenvalues, r.top.error_bounds, exact[::-1][:3])
    _within_bounds(r.bottom.eigenvalues, r.bottom.error_bounds, exact[:2])
    dense = spectrum(op, top=3, bottom=2, method="dense").to_dict()
    assert dense["basis_dtype"] is None and dense["max_basis_bytes"] is None


@pytest.mark.slow  # an interrupted and a resumed run
def test_spectrum_resumes_from_a_checkpoint(tmp_path):
    op = spectra.with_spectrum(spectra.distinct(), seed=4)
    path = tmp_path / "k.pt"
    first = spectrum(op, top=2, bottom=1, method="lanczos", checkpoint=path)
    before = op.num_products
    again = spectrum(op, top=2, bottom=1, method="lanczos", checkpoint=path)
    assert op.num_products == before  # a finished checkpoint answers without a product
    np.testing.assert_array_equal(again.top.eigenvalues, first.top.eigenvalues)


def test_bad_basis_options_are_refused():
    op = spectra.with_spectrum(spectra.distinct(), seed=4)
    with pytest.raises(OperatorError, match="basis_dtype"):
        lanczos(op, basis_dtype="float16")  # type: ignore[arg-type]
    # A spilling run is refused only when even float32 cannot hold what it needs.
    with pytest.raises(OperatorError, match="in float32.*raise max_basis_bytes"):
        lanczos(op, top=3, block_size=2, tol=1e-4, max_basis_bytes=4 * 6 * op.dim)
    it = LanczosIteration(
        op.dim,
        op.dtype,
        op.device,
        KrylovOptions(top=3, block_size=2, tol=1e-4, max_basis_bytes=4 * 7 * op.dim),
    )
    assert it.pending() is not None
    # Asking for the smallest eigenvalues, Lanczos waits for 20 vectors before a claim: a budget
    # that never holds them would restart until the product budget is spent.
    with pytest.raises(OperatorError, match="needs at least 20"):
        lanczos(op, top=3, bottom=2, tol=1e-4, max_basis_bytes=4 * 12 * op.dim)
