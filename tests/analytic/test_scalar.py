"""Closed forms of the scalars m_{b,W}, m_{b,z} against dense float64 traces and the measured ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hessiankit as hk
from hessiankit.analytic.scalar import (
    batchnorm_m_w,
    batchnorm_m_z,
    conv_m_w,
    conv_m_z,
    linear_m_w,
    linear_m_z,
)
from hessiankit.errors import OperatorError
from hessiankit.optim.scales import block_scales
from references import jacobian

D = torch.float64


def mean_eig_weights(f, w: torch.Tensor, m: int) -> float:
    """tr((1/m) J^T J)/dim for the weight local Hessian (batch-mean normalisation)."""
    J = jacobian(f, w)
    return float(J.pow(2).sum()) / m / w.numel()


def mean_eig_input(f, z: torch.Tensor) -> float:
    """tr(J^T J)/dim for the per-sample input local Hessian."""
    J = jacobian(f, z)
    return float(J.pow(2).sum()) / z.numel()


def test_linear_closed_forms_exact() -> None:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 5, generator=g, dtype=D)
    b = torch.randn(4, generator=g, dtype=D)
    Z = torch.randn(7, 5, generator=g, dtype=D) + 0.7
    assert linear_m_w(Z) == pytest.approx(mean_eig_weights(lambda w: Z @ w.T, W, 7), rel=1e-12)
    assert linear_m_z(W) == pytest.approx(mean_eig_input(lambda z: z @ W.T + b, Z), rel=1e-12)
    Wb = torch.cat([W, b[:, None]], 1)
    ref = mean_eig_weights(lambda wb: Z @ wb[:, :5].T + wb[:, 5], Wb, 7)
    assert linear_m_w(Z, bias=True) == pytest.approx(ref, rel=1e-12)


# (2, 2, 2), every option away from its default, is the quick run's case.
@pytest.mark.slow
@pytest.mark.parametrize(
    "stride,padding,dilation",
    [
        pytest.param(1, 1, 1, marks=pytest.mark.slow),
        pytest.param(2, 1, 1, marks=pytest.mark.slow),
        pytest.param(1, 0, 1, marks=pytest.mark.slow),
        (2, 2, 2),
    ],
)
def test_conv_closed_forms_exact(stride: int, padding: int, dilation: int) -> None:
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, dilation=dilation).double()
    Z = torch.randn(3, 2, 6, 5, generator=g, dtype=D)
    W = conv.weight.detach()

    def f_w(w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(Z, w, None, stride, padding, dilation)

    def f_z(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, W, conv.bias, stride, padding, dilation)

    assert conv_m_w(Z, conv) == pytest.approx(mean_eig_weights(f_w, W, 3), rel=1e-12)
    assert conv_m_z(W, conv, (6, 5)) == pytest.approx(mean_eig_input(f_z, Z), rel=1e-12)
    Wb = torch.cat([W.reshape(3, -1), conv.bias.detach()[:, None]], 1)

    def f_wb(wb: torch.Tensor) -> torch.Tensor:
        return F.conv2d(Z, wb[:, :-1].reshape(W.shape), wb[:, -1], stride, padding, dilation)

    assert conv_m_w(Z, conv, bias=True) == pytest.approx(mean_eig_weights(f_wb, Wb, 3), rel=1e-12)


def isotropic_batch(m: int, n: int, s: float, seed: int) -> torch.Tensor:
    """m x n inputs whose centred covariance is exactly s^2 I (plus a nonzero mean)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=g, dtype=D)
    A = A - A.mean(0)
    Q, _ = torch.linalg.qr(A)
    return (s * (m**0.5) * Q + torch.randn(n, generator=g, dtype=D)).contiguous()


@pytest.mark.parametrize("eps", [1e-9, 1e-2])
def test_batchnorm_closed_forms_exact_for_isotropic_input(eps: float) -> None:
    m, n, n_out, s = 9, 4, 3, 1.7
    Z = isotropic_batch(m, n, s, seed=2)
    g = torch.Generator().manual_seed(3)
    W = torch.randn(n_out, n, generator=g, dtype=D) * torch.tensor([[0.5], [1.0], [3.0]], dtype=D)
    gamma = 1 + 0.5 * torch.randn(n_out, generator=g, dtype=D)
    beta = torch.randn(n_out, generator=g, dtype=D)

    def bn(u: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(u, None, None, gamma, beta, training=True, eps=eps)

    ref_w = mean_eig_weights(lambda w: bn(Z @ w.T), W, m)
    ref_z = mean_eig_input(lambda z: bn(z @ W.T), Z)
    assert batchnorm_m_w(W, gamma, input_variance=s**2, eps=eps) == pytest.approx(ref_w, rel=1e-10)
    got_z = batchnorm_m_z(W, gamma, s**2, eps=eps, batch_entries=m)
    assert got_z == pytest.approx(ref_z, rel=1e-10)
    if eps < 1e-6:  # scale invariance: H(a W) = H(W) / a^2, and m_W = gamma^2 (n-1)/(n ||w||^2)
        ref_3w = mean_eig_weights(lambda w: bn(Z @ w.T), 3 * W, m)
        assert ref_3w == pytest.approx(ref_w / 9, rel=1e-6)
        rows = W.pow(2).sum(1)
        assert batchnorm_m_w(W, gamma) == pytest.approx(
            float((gamma**2 * (n - 1) / (n * rows)).mean()), rel=1e-12
        )


@pytest.mark.slow  # two 8-channel conv blocks, Hutch++ on each
def test_closed_form_tracks_trace_on_conv_bn_relu_pool() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).double()
    cap = hk.capture(net, torch.randn(16, 3, 8, 8, dtype=D), bn="train")
    closed = block_scales(cap, method="closed-form")
    traced = block_scales(cap, method="trace", num_products=60, seed=1)
    for c, t in zip(closed, traced):
        assert c.m_w is not None and t.m_w is not None
        assert c.m_w == pytest.approx(t.m_w, rel=0.2)  # isotropic-input approximation
        assert c.m_z == pytest.approx(t.m_z, rel=0.2)
    # linear block: exact, up to the Hutch++ error
    assert abs(closed[2].m_w - traced[2].m_w) <= 5 * traced[2].m_w_std_error


def test_errors(resnet_bn, mlp_tanh) -> None:
    net, x, y = mlp_tanh
    cap = hk.capture(net, x)
    with pytest.raises(OperatorError, match="Tanh"):
        block_scales(cap, method="closed-form")
    with pytest.raises(OperatorError, match="unknown method"):
        block_scales(cap, method="frobenius")  # type: ignore[arg-type]
    rnet, rx, _ = resnet_bn
    with pytest.raises(OperatorError, match="skip connection"):
        block_scales(hk.capture(rnet, rx, bn="train"), method="closed-form")
    bnet = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    with pytest.raises(OperatorError, match="train"):
        block_scales(hk.capture(bnet, torch.randn(5, 3, dtype=D), bn="eval"), method="closed-form")


def test_average_pooling_only_as_identity() -> None:
    """Adaptive average pooling of a 1x1 map (VGG's head at 32x32) is the identity: allowed and
    exact; a 2x2 average pool is not covered by the closed forms."""
    torch.manual_seed(5)
    ok = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)
    ).double()
    x = torch.randn(4, 2, 1, 1, dtype=D)
    cap = hk.capture(ok, x)
    closed = block_scales(cap, method="closed-form")
    exact = block_scales(cap, method="trace", num_products=200)
    for c, t in zip(closed, exact):
        assert c.m_w == pytest.approx(t.m_w, rel=1e-10) and c.m_z == pytest.approx(t.m_z, rel=1e-10)
    bad = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3, 2)
    ).double()
    with pytest.raises(OperatorError, match="averages"):
        block_scales(hk.capture(bad, torch.randn(4, 2, 2, 2, dtype=D)), method="closed-form")
