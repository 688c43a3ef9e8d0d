"""Product counts of the default paths (issue 16): budgets that a regression would exceed,
each with the answer checked against a dense float64 eigendecomposition. Counts, never times."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import hessiankit as hk
from hessiankit.pipeline import SolverOptions, block_operators, run_blocks

from .test_pipeline import _trained_free_mlp

# The structured route spends only its probe: three products, whatever the block's size.
PROBE_PRODUCTS = 3
# Loss Hessian top-1 from the gradient start at tol 1e-8: 16 Lanczos products on this network
# (18-20 from random starts) plus the one product method="auto" times to price its routes.
LOSS_TOP1_PRODUCTS = 17
# Loss Hessian top-10 at tol 1e-8: single-vector Lanczos from the gradient, 71 products plus the
# pricing one (a block of 10, the default before, spent 171).
LOSS_TOP10_PRODUCTS = 72


@pytest.mark.slow  # every block of the default network, each separable one densely
def test_separable_blocks_cost_the_probe_only_and_equal_dense() -> None:
    net = hk.default_model(seed=0).double()
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cap = hk.capture(net, x, bn="train", gradients=False)
    rows = run_blocks(block_operators(cap), "all", SolverOptions(top=3, bottom=1))
    separable = [r for r in rows if r.spectrum.method.startswith("separable")]
    assert len(separable) >= 2  # the conv-BN-ReLU-pool blocks above 256 weights
    for r in separable:
        s = r.spectrum
        assert s.num_products == PROBE_PRODUCTS
        ev = torch.linalg.eigvalsh(hk.LocalHessian(cap, r.index).to_dense()).numpy()
        top = float(ev[-1])
        nonzero = ev[ev > s.condition.rtol * top]
        assert s.condition.converged and s.condition.rank == nonzero.size
        assert s.condition.kappa == pytest.approx(top / nonzero[0], rel=1e-8)
        np.testing.assert_allclose(s.top.eigenvalues, ev[::-1][:3], rtol=1e-9)


@pytest.mark.slow
def test_loss_top1_from_the_gradient_stays_within_its_product_budget() -> None:
    net, x, y = _trained_free_mlp()
    cap = hk.capture(net, x, y)
    lam = float(torch.linalg.eigvalsh(hk.LossHessian(cap, "model").to_dense())[-1])
    opts = SolverOptions(top=1, bottom=0, method="auto", tol=1e-8, seed=0)
    [r] = run_blocks(block_operators(cap, kind="loss"), "model", opts)
    s = r.spectrum
    assert s.method == "lanczos" and s.top.all_converged
    assert float(s.top.eigenvalues[0]) == pytest.approx(lam, rel=1e-8)
    assert s.num_products <= LOSS_TOP1_PRODUCTS


@pytest.mark.slow
def test_loss_top10_runs_single_vector_lanczos_within_its_product_budget() -> None:
    net, x, y = _trained_free_mlp()
    cap = hk.capture(net, x, y)
    ev = torch.linalg.eigvalsh(hk.LossHessian(cap, "model").to_dense()).flip(0).numpy()
    opts = SolverOptions(top=10, bottom=0, method="auto", tol=1e-8, seed=0)
    [r] = run_blocks(block_operators(cap, kind="loss"), "model", opts)
    s = r.spectrum
    assert s.method == "lanczos" and s.block_size == 1 and s.top.all_converged
    np.testing.assert_allclose(s.top.eigenvalues, ev[:10], rtol=1e-8)
    assert s.num_products <= LOSS_TOP10_PRODUCTS
    # block_size= still asks for blocks (to find repeated eigenvalues): same answer, more products
    [b] = run_blocks(block_operators(cap, kind="loss"), "model", replace(opts, block_size=10))
    assert b.spectrum.block_size == 10
    np.testing.assert_allclose(b.spectrum.top.eigenvalues, ev[:10], rtol=1e-8)
    assert b.spectrum.num_products > s.num_products
