"""Hutchinson / Hutch++ on the network operators (local GN, exact, loss Hessian): the estimate
lies within 3 standard errors of the dense reference trace over repeated seeds."""

from __future__ import annotations

import numpy as np
import pytest
from references import dense_reference

from hessiankit.blocks import capture
from hessiankit.operators import hessian_operator
from hessiankit.solvers.trace import trace


@pytest.mark.parametrize(
    ("wrt", "kind"), [("weights", "gauss-newton"), ("input", "exact"), ("weights", "loss")]
)
@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_of_network_operators(mlp_tanh, wrt: str, kind: str, method: str) -> None:
    net, x, y = mlp_tanh
    op = hessian_operator(capture(net, x, y), 2, wrt=wrt, kind=kind, eta=0.5)
    exact = float(
        np.trace(dense_reference(net, 2, 4, x, y, bn="eval", wrt=wrt, kind=kind, eta=0.5).numpy())
    )
    z = []
    for seed in range(12):
        r = trace(op, method=method, num_products=12, seed=seed)  # few products: a real error
        assert r.std_error > 0
        z.append(abs(r.trace - exact) / r.std_error)
    assert sum(v > 3 for v in z) <= 1
