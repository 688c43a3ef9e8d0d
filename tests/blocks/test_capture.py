"""Capture: activations and back-propagated gradients against plain autograd; BN buffers."""

from __future__ import annotations

import copy

import pytest
import torch
from references import block_gradients

import hessiankit as hk
from hessiankit.errors import DataError, NumericalError


@pytest.mark.parametrize("bn", ["eval", "train"])
def test_activations_and_gradients_match_autograd(resnet_bn, bn):
    net, x, y = resnet_bn
    cap = hk.capture(net, x, y, bn=bn)
    cuts = [3, 6, 7]  # block boundaries of the Sequential
    grads = block_gradients(net, cuts, x, y, bn=bn)
    ref = copy.deepcopy(net).eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train(bn == "train")
            m.track_running_stats = bn == "eval"
    z = x
    start = 0
    for b, cut in enumerate(cuts, start=1):
        z = ref[start:cut](z)
        start = cut
        assert torch.allclose(cap.activations[b], z, rtol=0, atol=1e-12)
        assert torch.allclose(cap.grad_outputs[b - 1], grads[b - 1], rtol=0, atol=1e-14)
        blk = cap.split.block(b)
        assert torch.equal(cap.per_sample_grad(blk), grads[b - 1] * x.shape[0])
    assert cap.loss == pytest.approx(
        float(torch.nn.functional.cross_entropy(z, y).detach()), rel=1e-12
    )


@pytest.mark.slow  # six Lanczos runs on the ResNet
def test_bn_train_mode_leaves_model_bit_identical(resnet_bn):
    net, x, y = resnet_bn
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    cap = hk.capture(net, x, y, bn="train")
    for kind in ("gauss-newton", "exact", "loss"):
        for wrt in ("weights", "input"):
            op = hk.hessian_operator(cap, 2, wrt=wrt, kind=kind)
            hk.spectrum(op, top=2, bottom=1, method="lanczos", max_products=12)
    after = net.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k  # running_mean, running_var, num_batches_tracked too
        assert after[k].dtype == v.dtype
    assert [m.training for m in net.modules()] == flags
    assert all(p.grad is None for p in net.parameters())


def test_capture_without_labels_has_no_gradients(mlp_tanh):
    net, x, _ = mlp_tanh
    cap = hk.capture(net, x)
    assert cap.grad_outputs is None and cap.loss is None
    with pytest.raises(DataError, match="needs labels"):
        cap.per_sample_grad(cap.split.block(1))
    with pytest.raises(DataError, match="needs labels"):
        hk.LocalHessian(cap, 1, kind="exact")
    with pytest.raises(DataError, match="needs labels"):
        hk.LossHessian(cap, 1)


def test_bad_data_and_weights_give_user_errors(mlp_tanh):
    net, x, y = mlp_tanh
    with pytest.raises(DataError, match="does not fit block 1"):
        hk.capture(net, torch.randn(4, 9, dtype=torch.float64))
    with pytest.raises(DataError, match="floating-point"):
        hk.capture(net, torch.ones(4, 5, dtype=torch.long))
    with pytest.raises(DataError, match="labels of shape"):
        hk.capture(net, x, torch.zeros(3, dtype=torch.long))
    bad = copy.deepcopy(net)
    with torch.no_grad():
        bad[0].weight[0, 0] = float("nan")
    with pytest.raises(NumericalError, match="NaN/Inf"):
        hk.capture(bad, x)
    with pytest.raises(NumericalError, match="NaN/Inf activations"):
        hk.capture(net, x * float("inf"))


def test_capture_without_gradients_gives_the_same_loss_and_gauss_newton_operators(resnet_bn):
    net, x, y = resnet_bn
    full = hk.capture(net, x, y)
    lean = hk.capture(net, x, y, gradients=False)
    assert lean.grad_outputs is None and lean.loss == full.loss
    for a, b in zip(full.activations, lean.activations):
        assert torch.equal(a, b)
    V = torch.randn(sum(p.numel() for p in net.parameters()), 3, dtype=torch.float64)
    same = hk.LossHessian(full, "model").matmat(V), hk.LossHessian(lean, "model").matmat(V)
    assert torch.equal(*same)
    b = full.split.blocks[0]
    W = torch.randn(b.num_params, 2, dtype=torch.float64)
    assert torch.equal(hk.LocalHessian(full, 1).matmat(W), hk.LocalHessian(lean, 1).matmat(W))
    with pytest.raises(DataError, match="gradients=True"):
        lean.per_sample_grad(b)
    with pytest.raises(DataError, match="gradients=True"):
        hk.LocalHessian(lean, 1, kind="exact")
