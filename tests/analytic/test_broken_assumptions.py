"""For each closed form, a case where one of its assumptions is broken, and by how much the
prediction then misses the measured operator. The misses are results (documented in
``figures/claims.md``), so each test pins the size of the miss, not just that there is one.

Measured misses (seeded; relative Frobenius error unless stated):

=============================================  ===================================  ===========
closed form                                     broken assumption                    miss
=============================================  ===================================  ===========
linear ``I kron Z^T Z/m`` (weights)             a tanh follows the linear map        0.52
conv spectrum from the kernel DFT               zero instead of circular padding     0.37 (max)
Gauss-Newton local Hessian (tanh block)         exact kind, eta = 1 / 0.1 / 0.01     0.098 / 0.0098 / 0.00098
orthogonal ``H_z = I``                          narrowing layer, n_out < n_in        sqrt(1 - n_out/n_in)
Marchenko-Pastur kappa (ratio 1/4, limit 9)     finite width 32 / 128 (median)       6.3 / 7.5
skip-connection limit law                       He-init ReLU branch (s = 1.36)       lambda_max 17.3 vs 10.5
BN weight local Hessian                         eps = 1e-5, input scale 1e-2 / 1e-3  0.35 / 6.0
BN weight local Hessian                         eval mode (running statistics)       1.3, no null direction
BN input, projections dropped                   (approximation) m = 8 .. 64          ~ sqrt(2/m)
=============================================  ===================================  ===========
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hessiankit.analytic import batchnorm as bnf
from hessiankit.analytic import linear as lin
from hessiankit.analytic import orthogonal as orth
from hessiankit.analytic import residual as res
from tests.analytic.helpers import measured, rel


def test_linear_form_misses_on_tanh_block() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Tanh()).double()
    x = torch.randn(16, 5, dtype=torch.float64)
    miss = rel(lin.linear_weight_hessian(x, 4), measured(net, x, 1, "weights"))
    assert 0.4 < miss < 0.65


def test_conv_dft_spectrum_misses_with_zero_padding() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, bias=False)).double()
    x = torch.randn(1, 3, 5, 4, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(measured(net, x, 1, "input"))
    pred = lin.conv_input_spectrum_circular(net[0].weight, 5, 4)
    miss = float((pred - ev).abs().max() / ev[-1])
    assert 0.25 < miss < 0.5


def test_gauss_newton_misses_exact_by_order_eta() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    G = measured(net, x, 1, "weights", y=y)
    misses = [
        rel(measured(net, x, 1, "weights", kind="exact", y=y, eta=e), G) for e in (1.0, 0.1, 0.01)
    ]
    assert 0.05 < misses[0] < 0.2
    assert misses[0] / misses[1] == pytest.approx(10, rel=1e-6)  # exactly linear in eta
    assert misses[1] / misses[2] == pytest.approx(10, rel=1e-6)
    # a linear block: the exact local Hessian is Gauss-Newton (no miss)
    G3 = measured(net, x, 2, "weights", y=y)
    assert rel(measured(net, x, 2, "weights", kind="exact", y=y, eta=1.0), G3) < 1e-12


def test_orthogonal_identity_misses_on_narrowing_layer() -> None:
    torch.manual_seed(3)
    lay = nn.Linear(8, 5, bias=False).double()
    nn.init.orthogonal_(lay.weight)  # orthonormal rows: W^T W is a rank-5 projection, not I
    H = measured(nn.Sequential(lay), torch.randn(1, 8, dtype=torch.float64), 1, "input")
    assert rel(H, torch.eye(8, dtype=torch.float64)) == pytest.approx(math.sqrt(3 / 8), rel=1e-10)


def test_marchenko_pastur_misses_at_finite_width() -> None:
    medians = {}
    for n_out in (32, 512):
        ks = []
        for s in range(15):
            g = torch.Generator().manual_seed(s)
            W = torch.randn(n_out, n_out // 4, generator=g, dtype=torch.float64) / math.sqrt(n_out)
            e = lin.linear_input_spectrum(W)
            ks.append(float(e[-1] / e[0]))
        medians[n_out] = float(np.median(ks))
    limit = orth.marchenko_pastur_condition(0.25)
    assert 0.55 * limit < medians[32] < 0.8 * limit  # narrow layers: edges pulled in
    assert 0.88 * limit < medians[512] < limit  # approaches the limit from below


def test_square_gaussian_condition_follows_edelman() -> None:
    for n in (32, 64):
        ks = []
        for s in range(150):
            g = torch.Generator().manual_seed(s)
            e = torch.linalg.svdvals(torch.randn(n, n, generator=g, dtype=torch.float64))
            ks.append(float((e[0] / e[-1]) ** 2))
        pred = orth.square_gaussian_condition_quantile(n, 0.5)
        assert 0.7 < float(np.median(ks)) / pred < 1.3


@pytest.mark.parametrize("s", [0.25, 0.5])
def test_residual_limit_law_holds_for_gaussian_branch(s: float) -> None:
    g = torch.Generator().manual_seed(0)
    n = 300
    A = s * torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    e = torch.linalg.eigvalsh(res.residual_input_hessian(A))
    lo, hi = res.residual_support(s)
    assert float(e[0]) == pytest.approx(lo, rel=0.08)
    assert float(e[-1]) == pytest.approx(hi, rel=0.03)


@pytest.mark.slow  # a wide residual branch, measured densely
def test_residual_limit_law_misses_for_he_relu_branch() -> None:
    torch.manual_seed(4)
    n = 64
    br = nn.Sequential(nn.Linear(n, n, bias=False), nn.ReLU(), nn.Linear(n, n, bias=False)).double()
    for mod in br:
        if isinstance(mod, nn.Linear):
            nn.init.kaiming_normal_(mod.weight)
    A = torch.func.jacrev(br)(torch.randn(n, dtype=torch.float64))
    s = res.branch_scale(A)
    assert 1.2 < s < 1.5  # s > 1: outside the law's bounded regime
    e = torch.linalg.eigvalsh(res.residual_input_hessian(A))
    lo, hi = res.residual_support(s)
    assert lo == 0.0 and res.residual_condition_limit(s) == math.inf
    assert 1.4 < float(e[-1]) / hi < 1.9  # the ReLU structure is not Ginibre: top edge off by ~65%


@pytest.mark.parametrize("scale,lo,hi", [(1.0, 0.0, 1e-3), (1e-2, 0.2, 0.5), (1e-3, 4.0, 8.0)])
def test_bn_weight_form_misses_with_eps(scale: float, lo: float, hi: float) -> None:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3, eps=1e-5)).double()
    x = torch.randn(8, 4, dtype=torch.float64) * scale
    H = measured(net, x, 1, "weights", bn="train")
    miss = rel(bnf.bn_block_weight_hessian(net[0].weight, net[1].weight, x), H)
    assert lo <= miss < hi


def test_bn_weight_form_misses_in_eval_mode() -> None:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3, eps=1e-5)).double()
    x = torch.randn(8, 4, dtype=torch.float64)
    H = measured(net, x, 1, "weights", bn="eval")
    assert rel(bnf.bn_block_weight_hessian(net[0].weight, net[1].weight, x), H) > 1.0
    w = net[0].weight.detach().reshape(-1)
    Hw = H[:12, :12]
    assert (
        float((Hw @ w).norm() / (torch.linalg.matrix_norm(Hw, 2) * w.norm())) > 0.2
    )  # no null direction


@pytest.mark.parametrize("m", [8, *(pytest.param(m, marks=pytest.mark.slow) for m in (32, 64))])
def test_bn_input_approximation_error_is_sqrt_2_over_m(m: int) -> None:
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(6, 6, bias=False), nn.BatchNorm1d(6, eps=1e-14)).double()
    x = torch.randn(m, 6, dtype=torch.float64)
    H = measured(net, x, 1, "input", bn="train")
    miss = rel(bnf.bn_input_hessian_approx(net[0].weight, net[1].weight, x), H)
    assert miss == pytest.approx(math.sqrt(2 / m), rel=0.15)
