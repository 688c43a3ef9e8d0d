"""LossHessian.gradient() against plain autograd on the nn.Module (eval-mode batch norm)."""

from __future__ import annotations

import pytest
import torch
from references import block_gradients

import hessiankit as hk


@pytest.mark.parametrize("backend", ["double-backprop", "forward-over-reverse"])
@pytest.mark.parametrize("fixture", ["conv_bn", "resnet_bn"])
def test_gradient_of_the_model_and_of_a_block_input(request, fixture, backend):
    net, x, y = request.getfixturevalue(fixture)
    net.eval()
    cap = hk.capture(net, x, y)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    params = list(net.parameters())
    expect = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
    got = hk.LossHessian(cap, "model", backend=backend).gradient()
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-12)
    # input of block 2: m dL/dz_1, z_1 the output of block 1 (the operator's scale)
    cut = {"conv_bn": 4, "resnet_bn": 3}[fixture]  # block 1 is net[:cut] (test_against_dense)
    (g_z,) = block_gradients(net, [cut], x, y, bn="eval")
    got = hk.LossHessian(cap, 2, wrt="input", backend=backend).gradient()
    torch.testing.assert_close(got, g_z.reshape(-1) * x.shape[0], rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # the ResNet dense loss Hessian (see conftest)
def test_lanczos_from_the_gradient_finds_the_top_of_the_loss_hessian(resnet_bn):
    net, x, y = resnet_bn
    op = hk.LossHessian(hk.capture(net.eval(), x, y), "model")
    exact = torch.linalg.eigvalsh(op.to_dense()).numpy()
    r = hk.solvers.lanczos(op, top=3, block_size=1, tol=1e-10, seed=0, start=op.gradient())
    assert r.top.all_converged
    assert (abs(r.top.eigenvalues - exact[::-1][:3]) <= r.top.error_bounds * (1 + 1e-6)).all()
