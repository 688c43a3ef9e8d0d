"""Condition numbers of rank-deficient local Hessians (more weights than samples)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import dense_reference
from torch import nn

import hessiankit as hk


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_rank_deficient_gauss_newton_condition_is_finite_and_exact(method):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(8, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    x = torch.randn(4, 8, dtype=torch.float64)  # 4 samples, 27 weights in block 1
    op = hk.LocalHessian(hk.capture(net, x), 1, wrt="weights")
    ref = np.linalg.eigvalsh(
        dense_reference(net, 0, 2, x, None, bn="eval", wrt="weights", kind="gauss-newton").numpy()
    )
    r = hk.spectrum(op, top=3, bottom=2, method=method, tol=1e-10, seed=1)
    thr = r.condition.threshold
    nonzero = ref[ref > thr]
    # J_W is 3 m x 27: rank at most 3 * 4 = 12.
    assert len(nonzero) == 12
    assert np.isfinite(r.condition.kappa)
    assert r.condition.kappa == pytest.approx(nonzero[-1] / nonzero[0], rel=1e-8)
    assert r.condition.kappa_plain is None
    np.testing.assert_allclose(r.bottom.eigenvalues, nonzero[:2], rtol=1e-8)
    if method == "dense":
        assert (r.condition.rank, r.condition.nullity) == (12, 15)
