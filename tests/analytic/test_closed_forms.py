"""Every closed form of :mod:`hessiankit.analytic` equals the core's measured dense operator
(float64, 1e-8 relative) on random instances where its assumptions hold exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hessiankit.analytic import batchnorm as bnf
from hessiankit.analytic import linear as lin
from hessiankit.analytic import nonlinear as nl
from hessiankit.analytic import residual as res
from hessiankit.models import Residual
from tests.analytic.helpers import measured, rel

TOL = 1e-8


def _seed(s: int) -> None:
    torch.manual_seed(s)


@pytest.mark.parametrize("bias", [False, True])
def test_linear_weight_kronecker(bias: bool) -> None:
    _seed(0)
    net = nn.Sequential(nn.Linear(5, 4, bias=bias)).double()
    x = torch.randn(7, 5, dtype=torch.float64) * 2 + 0.5
    H = measured(net, x, 1, "weights")
    assert rel(lin.linear_weight_hessian(x, 4, bias=bias), H) < TOL
    ev = torch.linalg.eigvalsh(H)
    assert torch.allclose(
        lin.linear_weight_spectrum(x, 4, bias=bias), ev, rtol=0, atol=1e-10 * float(ev[-1])
    )


def test_linear_weight_hessian_ignores_w() -> None:
    _seed(1)
    net = nn.Sequential(nn.Linear(4, 3, bias=False)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    H1 = measured(net, x, 1, "weights")
    with torch.no_grad():
        net[0].weight.mul_(10).add_(1)
    assert rel(measured(net, x, 1, "weights"), H1) < TOL


def test_linear_input_kronecker() -> None:
    _seed(2)
    net = nn.Sequential(nn.Linear(4, 6)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    H = measured(net, x, 1, "input")
    assert rel(lin.linear_input_hessian(net[0].weight, 3), H) < TOL
    assert torch.allclose(
        lin.linear_input_spectrum(net[0].weight), torch.linalg.eigvalsh(H[:4, :4])
    )


@pytest.mark.parametrize("stride,padding,bias", [(1, 1, False), (2, 1, True), (1, 0, True)])
def test_conv_weight_kronecker(stride: int, padding: int, bias: bool) -> None:
    _seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, stride=stride, padding=padding, bias=bias)).double()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    H = measured(net, x, 1, "weights")
    pred = lin.conv_weight_hessian(x, 3, 3, stride=stride, padding=padding, bias=bias)
    assert rel(pred, H) < TOL
    ev = torch.linalg.eigvalsh(H)
    spec = lin.conv_weight_spectrum(x, 3, 3, stride=stride, padding=padding, bias=bias)
    assert float((spec - ev).abs().max()) < TOL * float(ev[-1])


def test_conv_input_spectrum_circular() -> None:
    _seed(4)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular", bias=False)).double()
    x = torch.randn(1, 3, 5, 4, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(measured(net, x, 1, "input"))
    pred = lin.conv_input_spectrum_circular(net[0].weight, 5, 4)
    assert float((pred - ev).abs().max()) < TOL * float(ev[-1])


@pytest.mark.parametrize("act,mod", [("tanh", nn.Tanh), ("relu", nn.ReLU), ("sigmoid", nn.Sigmoid)])
def test_nonlinear_derivative_factor(act: str, mod: type[nn.Module]) -> None:
    _seed(5)
    net = nn.Sequential(nn.Linear(4, 5), mod()).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    W, b = net[0].weight, net[0].bias
    assert rel(nl.nonlinear_input_hessian(W, b, x, act), measured(net, x, 1, "input")) < TOL
    assert rel(nl.nonlinear_weight_hessian(W, b, x, act), measured(net, x, 1, "weights")) < TOL


def test_relu_rank_is_active_units() -> None:
    _seed(6)
    lay = nn.Linear(8, 8, bias=False).double()
    nn.init.orthogonal_(lay.weight)
    net = nn.Sequential(lay, nn.ReLU())
    x = torch.randn(1, 8, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(measured(net, x, 1, "input"))
    rank = int((ev > 1e-10).sum())
    assert rank == int(nl.relu_active_units(lay.weight, None, x)[0]) < 8
    assert torch.allclose(ev[ev > 1e-10], torch.ones(rank, dtype=torch.float64))  # kappa 1 on range


def test_orthogonal_input_is_identity() -> None:
    _seed(7)
    lay = nn.Linear(5, 9, bias=False).double()
    nn.init.orthogonal_(lay.weight)
    x = torch.randn(4, 5, dtype=torch.float64)
    H = measured(nn.Sequential(lay), x, 1, "input")
    assert rel(torch.eye(20, dtype=torch.float64), H) < TOL


@pytest.mark.parametrize("branch", ["linear", "relu"])
def test_residual_input_hessian(branch: str) -> None:
    _seed(8)
    if branch == "linear":
        br = nn.Linear(6, 6, bias=False)
    else:
        br = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 6))
    net = nn.Sequential(Residual(br)).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    H = measured(net, x, 1, "input")
    blocks = []
    for i in range(3):
        A = torch.func.jacrev(br)(x[i])
        blocks.append(res.residual_input_hessian(A))
    assert rel(torch.block_diag(*blocks), H) < TOL
    plain = nn.Sequential(br).double()
    Hp = measured(plain, x, 1, "input") if branch == "linear" else None
    if Hp is not None:
        assert rel(res.plain_input_hessian(br.weight), Hp[:6, :6]) < TOL


def _bn_net(n_in: int, n_out: int, seed: int, bias: bool = True) -> nn.Sequential:
    _seed(seed)
    net = nn.Sequential(
        nn.Linear(n_in, n_out, bias=bias), nn.BatchNorm1d(n_out, eps=1e-14)
    ).double()
    with torch.no_grad():
        net[1].weight.copy_(1 + 0.5 * torch.randn(n_out))
        net[1].bias.copy_(0.3 * torch.randn(n_out))
    return net


@pytest.mark.parametrize("bias", [False, True])
def test_bn_weight_hessian(bias: bool) -> None:
    net = _bn_net(4, 3, 9, bias)
    x = torch.randn(8, 4, dtype=torch.float64) * 3 + 1
    H = measured(net, x, 1, "weights", bn="train")
    pred = bnf.bn_block_weight_hessian(net[0].weight, net[1].weight, x, linear_bias=bias)
    assert rel(pred, H) < TOL


def test_bn_weight_scale_invariance_and_null_direction() -> None:
    net = _bn_net(5, 2, 10, bias=False)
    x = torch.randn(9, 5, dtype=torch.float64)
    H = measured(net, x, 1, "weights", bn="train")[:10, :10]
    w = net[0].weight.detach().reshape(-1)
    assert float((H @ w).norm()) < TOL * float(torch.linalg.matrix_norm(H, 2) * w.norm())
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    H3 = measured(net, x, 1, "weights", bn="train")[:10, :10]
    assert rel(H3 * 9.0, H) < TOL
    # independent of the input's scale and mean (claim 11)
    H_shift = measured(net, 5.0 * x - 2.0, 1, "weights", bn="train")[:10, :10]
    assert rel(H_shift, H3) < TOL


def test_bn_input_hessian() -> None:
    net = _bn_net(3, 4, 11)
    x = torch.randn(6, 3, dtype=torch.float64)
    H = measured(net, x, 1, "input", bn="train")
    assert rel(bnf.bn_input_hessian(net[0].weight, net[1].weight, x), H) < TOL


def test_marchenko_pastur_density_integrates_to_one() -> None:
    import numpy as np

    from hessiankit.analytic.orthogonal import marchenko_pastur_density, marchenko_pastur_support

    for lam in (0.25, 0.5, 2.0):
        a, b = marchenko_pastur_support(lam, 1.3)
        xs = np.linspace(a, b, 200001)
        mass = float(np.trapezoid(marchenko_pastur_density(xs, lam, 1.3), xs))
        assert abs(mass - 1) < 1e-3
