"""Measured block scales m_{b,W}, m_{b,z} (Hutch++ trace, power iteration) against dense float64."""

from __future__ import annotations

import pytest
import torch

import hessiankit as hk
from hessiankit.errors import OperatorError
from hessiankit.optim.scales import BlockScale, block_scales
from references import jacobian


def test_trace_and_lambda_max_match_dense(mlp_tanh) -> None:
    net, x, y = mlp_tanh
    cap = hk.capture(net, x, y)
    W1, b1 = net[0].weight.detach(), net[0].bias.detach()
    J_w = jacobian(lambda w: torch.tanh(x @ w.T + b1), W1)
    J_z = jacobian(lambda z: torch.tanh(z @ W1.T + b1), x)
    H_w = J_w.T @ J_w / x.shape[0]
    H_z = J_z.T @ J_z
    (s,) = block_scales(cap, method="trace", num_products=120, blocks=[1])
    assert isinstance(s, BlockScale) and s.index == 1 and s.method == "trace"
    assert s.m_w == pytest.approx(float(torch.trace(H_w)) / H_w.shape[0], rel=1e-10)
    assert s.m_z == pytest.approx(float(torch.trace(H_z)) / H_z.shape[0], rel=1e-10)
    assert s.m_w_std_error == 0.0  # Hutch++ sketch spans the space: exact
    (t,) = block_scales(cap, method="lambda-max", num_products=2000, blocks=[1])
    top_w = float(torch.linalg.eigvalsh(H_w)[-1])
    top_z = float(torch.linalg.eigvalsh(H_z)[-1])
    assert (
        t.m_w == pytest.approx(top_w, rel=1e-3)
        and abs(t.m_w - top_w) <= 10 * t.m_w_std_error + 1e-12
    )
    assert t.m_z == pytest.approx(top_z, rel=1e-3)


def test_params_all_takes_every_parameter_of_the_block(mlp_tanh) -> None:
    """params='all': the weight Hessian over weight and bias, against the dense Jacobian."""
    net, x, y = mlp_tanh
    cap = hk.capture(net, x, y)
    W1, b1 = net[0].weight.detach(), net[0].bias.detach()
    wb = torch.cat([W1.reshape(-1), b1])
    n = W1.numel()

    def f(v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ v[:n].reshape(W1.shape).T + v[n:])

    J = jacobian(f, wb)
    H = J.T @ J / x.shape[0]
    (s,) = block_scales(cap, method="trace", num_products=200, params="all", blocks=[1])
    assert s.m_w == pytest.approx(float(torch.trace(H)) / H.shape[0], rel=1e-10)
    with pytest.raises(OperatorError, match="main weight"):
        block_scales(cap, method="closed-form", params="all")


def test_old_import_path_still_works() -> None:
    from hessiankit.analytic import scalar

    assert scalar.block_scales is block_scales and scalar.BlockScale is BlockScale
    assert hk.block_scales is block_scales
