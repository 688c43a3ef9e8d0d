"""Batch norm with running statistics as an affine map in the loss Hessian's kept graph (issue
16): the same products as ``torch.func.hessian`` of the plain model, for both backends, and no
batch-norm node left in the graph (that node's double backward was 37% of a product)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

import hessiankit as hk
from hessiankit.operators._eval_bn import EvalBatchNormAsAffine


def _net() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        nn.BatchNorm1d(5),
        nn.Tanh(),
        nn.Linear(5, 3),
    ).double()
    g = torch.Generator().manual_seed(1)
    for bn in (net[1], net[5]):
        with torch.no_grad():
            c = bn.num_features
            bn.weight.copy_(1 + 0.3 * torch.randn(c, generator=g, dtype=torch.float64))
            bn.bias.copy_(0.2 * torch.randn(c, generator=g, dtype=torch.float64))
            bn.running_mean.copy_(0.3 * torch.randn(c, generator=g, dtype=torch.float64))
            bn.running_var.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
    x = torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64)
    return net.eval(), x, torch.randint(0, 3, (6,), generator=g)


def _reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(w: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = w[i : i + s.numel()].reshape(s)
            i += s.numel()
        return nn.functional.cross_entropy(functional_call(net, params, (x,)), y)

    return hessian(loss)(flat)


@pytest.mark.parametrize("backend", ["double-backprop", "forward-over-reverse"])
def test_eval_bn_loss_hessian_products_equal_the_plain_models_hessian(backend: str) -> None:
    net, x, y = _net()
    H = _reference(net, x, y)
    op = hk.LossHessian(hk.capture(net, x, y, bn="eval"), "model", backend=backend)  # type: ignore[arg-type]
    V = torch.randn(op.dim, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(op.matmat(V), H @ V, rtol=1e-10, atol=1e-12)


def test_the_affine_map_leaves_no_batch_norm_node_and_train_mode_alone() -> None:
    net, x, _ = _net()

    def nodes(out: torch.Tensor) -> set[str]:
        seen, todo = set(), [out.grad_fn]
        while todo:
            f = todo.pop()
            if f is None or f.name() in seen:
                continue
            seen.add(f.name())
            todo.extend(g for g, _ in f.next_functions)
        return seen

    with EvalBatchNormAsAffine():
        out = net(x)
    assert not any("BatchNorm" in n for n in nodes(out))
    torch.testing.assert_close(out, net(x), rtol=1e-12, atol=1e-12)
    net.train()
    with EvalBatchNormAsAffine():
        trained = net(x)  # batch statistics: not affine, left to batch_norm
    assert any("BatchNorm" in n for n in nodes(trained))
