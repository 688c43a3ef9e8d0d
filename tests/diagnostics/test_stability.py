"""Per-block lr x lambda_max against dense references, and the rates read from optimizers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hessiankit as hk
from diagnostics.dense import Flat, loss_hessian, mlp
from hessiankit.diagnostics import block_stability, parameter_rates
from hessiankit.errors import OperatorError
from hessiankit.optim import ScaleAmendedSGD
from references import dense_reference

# mlp(): Linear(5, 8) - Tanh - Linear(8, 8) - Tanh - Linear(8, C); blocks end after each Tanh
CUTS = [(0, 2), (2, 4), (4, 5)]


def _point() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(8)
    return mlp(3, seed=8), torch.randn(20, 5, dtype=torch.float64), torch.arange(20) % 3


def test_one_rate_is_lr_times_lambda_max() -> None:
    net, x, y = _point()
    lr = 0.7
    rows = block_stability(hk.capture(net, x, y), lr=lr, tol=1e-10, seed=0)
    H = loss_hessian(net, x, y, "cross-entropy")
    flat = Flat(net)
    full = float(torch.linalg.eigvalsh(H)[-1])
    assert [r.index for r in rows] == [1, 2, 3]
    for r, (lo, hi) in zip(rows, CUTS):
        local = dense_reference(net, lo, hi, x, y, bn="eval", wrt="weights", kind="gauss-newton")
        idx = flat.slice(
            [
                n
                for n, _ in net.named_parameters()
                if n.split(".")[0] in {str(i) for i in range(lo, hi)}
            ]
        )
        glob = float(torch.linalg.eigvalsh(H[idx][:, idx])[-1])
        assert r.converged and r.rate_min == r.rate_max == lr
        assert abs(r.local_sharpness - lr * float(torch.linalg.eigvalsh(local)[-1])) < 1e-8
        assert r.global_sharpness is not None
        assert abs(r.global_sharpness - lr * glob) < 1e-8
        # a diagonal block's top eigenvalue never exceeds the whole Hessian's
        assert r.global_sharpness <= lr * full + 1e-10
        assert r.local_stable == (r.local_sharpness < 2.0)


def test_per_parameter_rates_scale_the_operator_symmetrically() -> None:
    net, x, y = _point()
    rates = {n: 0.1 * (i + 1) for i, (n, _) in enumerate(net.named_parameters())}
    (r,) = block_stability(hk.capture(net, x, y), lr=rates, blocks=[3], tol=1e-10, seed=0)
    local = dense_reference(net, 4, 5, x, y, bn="eval", wrt="weights", kind="gauss-newton")
    d = torch.cat(
        [
            torch.full((p.numel(),), rates[n], dtype=torch.float64)
            for n, p in net.named_parameters()
            if n.startswith("4.")
        ]
    )
    ref = torch.linalg.eigvalsh(d.sqrt()[:, None] * local * d.sqrt()[None, :])[-1]
    assert abs(r.local_sharpness - float(ref)) < 1e-8
    assert r.rate_min == rates["4.weight"] and r.rate_max == rates["4.bias"]


def test_rates_read_from_optimizers_are_the_steps_they_take() -> None:
    net, x, y = _point()
    opt = ScaleAmendedSGD.for_model(net, lr=0.05, method="trace", refresh_every=2)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()  # computes the amendment (refreshed every 2nd step), then steps with it
    rates = parameter_rates(opt, net)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}
    opt.step()  # same gradients, no momentum: p_new = p - rate * grad
    for n, p in net.named_parameters():
        step = before[n] - p.detach()
        assert torch.allclose(
            step, torch.as_tensor(rates[n], dtype=torch.float64) * grads[n], rtol=1e-9, atol=1e-15
        )
    assert len({round(float(rates[n]), 12) for n in ("0.weight", "2.weight", "4.weight")}) > 1
    sgd = torch.optim.SGD(net.parameters(), lr=0.3)
    assert set(parameter_rates(sgd, net).values()) == {0.3}
    with pytest.raises(OperatorError, match="Adam"):
        parameter_rates(torch.optim.Adam(net.parameters()), net)


def test_missing_rate_is_refused() -> None:
    net, x, y = _point()
    with pytest.raises(OperatorError, match="no rate"):
        block_stability(hk.capture(net, x, y), lr={"0.weight": 0.1}, blocks=[1])
