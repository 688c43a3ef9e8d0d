"""Local Hessians of small networks through spectrum(), against dense float64 eigh (1e-8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from solvers import networks

from hessiankit.solvers import spectrum


def _reference(op):
    ev = torch.linalg.eigvalsh(op.to_dense()).numpy()
    return ev


def _kappa(ev: np.ndarray, rtol: float) -> float:
    nz = ev[np.abs(ev) > rtol * np.abs(ev).max()]
    return float(np.abs(nz).max() / np.abs(nz).min())


def _agrees(r, ev: np.ndarray) -> None:
    top = np.sort(ev)[::-1][: len(r.top)]
    np.testing.assert_allclose(r.top.eigenvalues, top, rtol=1e-8)
    assert r.condition.converged and r.top.all_converged and r.bottom.all_converged
    assert r.condition.kappa == pytest.approx(_kappa(ev, r.condition.rtol), rel=1e-8)


@pytest.mark.parametrize("method", ["lanczos", "auto"])
def test_24_dim_weight_block_with_top_5_is_exact(method):
    # Linear(5, 4) + Tanh: block size 5 from a range start spent 5 of the old 29-product
    # budget on the start, so the Krylov space was one block short of exhausted.
    op = networks.linear_tanh_24()
    ev = _reference(op)
    r = spectrum(op, top=5, bottom=1, method=method, seed=0)
    _agrees(r, ev)
    assert r.exhausted and r.condition.rank == 24
    np.testing.assert_allclose(np.sort(r.eigenvalues), np.sort(ev), rtol=1e-8, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        networks.linear_tanh_330,
        pytest.param(networks.conv_relu_1200, marks=pytest.mark.slow),  # 1200 columns, twice
    ],
)
def test_weight_blocks_through_auto_and_lanczos(make):
    op = make()
    ev = _reference(op)
    # Both blocks are separable (one output unit/channel per part): auto takes the exact
    # structured route; dense is checked on its own.
    auto = spectrum(op, top=5, bottom=1, method="auto", seed=0)
    assert auto.method.startswith("separable-")
    _agrees(auto, ev)
    assert auto.condition.rank + auto.condition.nullity == op.dim
    dense = spectrum(op, top=5, bottom=1, method="dense", seed=0)
    _agrees(dense, ev)
    assert dense.condition.rank == auto.condition.rank
    kr = spectrum(op, top=5, bottom=1, method="lanczos", tol=1e-12, seed=0)
    _agrees(kr, ev)
    assert kr.bottom.eigenvalues[0] == pytest.approx(auto.bottom.eigenvalues[0], rel=1e-8)


@pytest.mark.slow  # 2,048 dims: dense twice and Lanczos over the whole space
def test_readme_operator_in_float64_through_auto_and_lanczos():
    # The README's "Library in one screen" operator, 2,048 dims (64 samples x 32 inputs).
    op = networks.readme_2048(torch.float64)
    ev = _reference(op)
    # Without batch norm the input local Hessian is a direct sum over samples: auto solves
    # the 64 per-sample 32 x 32 blocks exactly; the dense route is checked on its own.
    auto = spectrum(op, top=5, bottom=1, seed=0)
    assert auto.method == "separable-primal" and "separable" in auto.method_reason
    _agrees(auto, ev)
    dense = spectrum(op, top=5, bottom=1, method="dense", seed=0)
    _agrees(dense, ev)
    # Lanczos with a budget that allows it: the space is exhausted before the budget is spent
    # (the default, 1,205, leaves this kappa of 4.7e4 unconverged and says so)
    kr = spectrum(op, top=5, bottom=1, method="lanczos", tol=1e-12, max_products=op.dim + 5, seed=0)
    _agrees(kr, ev)
    assert kr.num_products <= op.dim + 5


@pytest.mark.slow
def test_top_only_stops_at_the_tolerance_a_looser_tol_costs_fewer_products():
    # issue 16: no minimum Krylov size for top-only requests beyond what the tolerance needs
    op = networks.loss_hessian_whole_model()
    top = np.sort(_reference(op))[::-1]
    runs = {
        tol: spectrum(op, top=1, bottom=0, method="lanczos", tol=tol, seed=0)
        for tol in (1e-3, 1e-8)
    }
    assert runs[1e-3].num_products < runs[1e-8].num_products
    for tol, r in runs.items():
        assert r.top.all_converged
        assert abs(r.top.eigenvalues[0] - top[0]) <= tol * abs(top[0])
        assert abs(r.top.eigenvalues[0] - top[0]) <= r.top.error_bounds[0] * (1 + 1e-6)


def test_float32_separable_kappa_is_not_converged_when_float64_disagrees():
    # The README operator in float32: 64 eigenvalues near 2e-5 lambda_max fall under float32's
    # null threshold; counting them as zeros gives kappa 1034 where float64 gives 4.7e4.
    op32 = networks.readme_2048(torch.float32)
    ev64 = _reference(networks.readme_2048(torch.float64))
    r32 = spectrum(op32, top=1, bottom=1, method="separable", seed=0)
    k64 = _kappa(ev64, 10 * np.sqrt(ev64.size) * np.finfo(np.float64).eps)
    c = r32.condition
    if c.converged:
        assert abs(c.kappa - k64) <= c.kappa_error * c.kappa
    else:
        assert "float64" in c.note
    assert k64 > 10 * c.kappa and not c.converged
