"""Procedure 1: one back-matching iteration with unit inner steps is one SGD step (Proposition 1)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessiankit.errors import OperatorError
from hessiankit.optim import BackMatchingPropagation
from conftest import randomise_bn

D = torch.float64


def sgd_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, groups: list[dict]) -> None:
    opt = torch.optim.SGD(groups)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()


def max_diff(a: nn.Module, b: nn.Module) -> float:
    diffs = [float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters())]
    diffs += [
        float((p.double() - q.double()).abs().max()) for p, q in zip(a.buffers(), b.buffers())
    ]
    return max(diffs)


def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)
    ).double()
    return net, torch.randn(8, 5, dtype=D), torch.randint(0, 3, (8,))


def cnn_bn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    ).double()
    randomise_bn(net, 1)
    return net, torch.randn(6, 2, 4, 4, dtype=D), torch.randint(0, 3, (6,))


@pytest.mark.parametrize("make", [mlp, cnn_bn])
def test_one_unit_step_equals_sgd(make) -> None:
    net, x, y = make()
    net.train()
    ref = copy.deepcopy(net)
    bm = BackMatchingPropagation(net, lr=0.3)
    res = bm.step(x, y)
    sgd_step(ref, x, y, [{"params": ref.parameters(), "lr": 0.3}])
    assert max_diff(net, ref) < 1e-10  # weights and batch-norm running statistics
    assert len(res.matching_before) == len(bm.split)
    # top block: l_B = eta^2 mean_i ||g_B^i||^2 / 2 with g_B = m dL/dz_B
    net0, x0, y0 = make()
    net0.train()
    out = net0(x0).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(out, y0), [out])
    m = x0.shape[0]
    expected = 0.5 * 0.3**2 * float((m * g).pow(2).sum()) / m
    assert res.matching_before[-1] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("make", [mlp, cnn_bn])
def test_step_sizes_give_block_rates(make) -> None:
    """Generalised Proposition 1: block rate eta a_{W,b} prod_{c>b} a_{z,c}."""
    net, x, y = make()
    net.train()
    ref = copy.deepcopy(net)
    a_w, a_z = [0.5, 2.0, 1.5], [3.0, 0.25, 0.7]
    eta = 0.2
    bm = BackMatchingPropagation(net, lr=eta, step_w=a_w, step_z=a_z)
    assert len(bm.split) == 3
    bm.step(x, y)
    groups = []
    for b in bm.split:
        rate = eta * a_w[b.index - 1]
        for c in range(b.index + 1, 4):
            rate *= a_z[c - 1]
        names = set(b.param_names)
        groups.append({"params": [p for n, p in ref.named_parameters() if n in names], "lr": rate})
    sgd_step(ref, x, y, groups)
    assert max_diff(net, ref) < 1e-10


def small_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 3)
    ).double()
    x = 0.4 * torch.randn(12, 4, dtype=D)
    return net, x, torch.randint(0, 3, (12,))


def test_more_inner_steps_solve_matching_better() -> None:
    """The paper's prediction: solving each matching problem more exactly lowers every block's
    matching loss below BP's single step; least squares (linear top block) reaches the minimum.
    The input targets use one step in every run, so all runs give each block the same target."""
    runs = {}
    for solver, steps in [("one-step", 1), ("k-steps", 5), ("k-steps", 200)]:
        net, x, y = small_net()
        res = BackMatchingPropagation(
            net, lr=0.5, weight_solver=solver, input_solver="one-step", steps=steps
        ).step(x, y)
        runs[(solver, steps)] = res
    before = runs[("one-step", 1)].matching_before
    for res in runs.values():
        assert res.matching_before == pytest.approx(before, rel=1e-12)  # same targets
    one = runs[("one-step", 1)].matching_after
    k5 = runs[("k-steps", 5)].matching_after
    k200 = runs[("k-steps", 200)].matching_after
    for b in range(3):
        assert one[b] < before[b]
        assert k5[b] < one[b]
        assert k200[b] < k5[b]
    net, x, y = small_net()
    with pytest.raises(OperatorError, match="one nn.Linear"):  # tanh blocks have no least squares
        BackMatchingPropagation(net, lr=0.5, weight_solver="least-squares")


def test_least_squares_linear_network() -> None:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 3)).double()
    x, y = torch.randn(10, 4, dtype=D), torch.randint(0, 3, (10,))
    ls = BackMatchingPropagation(copy.deepcopy(net), lr=0.5, weight_solver="least-squares").step(
        x, y
    )
    k = BackMatchingPropagation(
        copy.deepcopy(net),
        lr=0.5,
        weight_solver="k-steps",
        input_solver="least-squares",
        steps=3000,
        step_w=0.5,
    ).step(x, y)
    # same input targets (least squares for z in both); the weights' least squares is the minimum
    assert ls.matching_before == pytest.approx(k.matching_before, rel=1e-12)
    assert ls.matching_after[1] <= k.matching_after[1] + 1e-12
    assert k.matching_after[1] == pytest.approx(ls.matching_after[1], rel=1e-6, abs=1e-12)
    # top block has more samples (10) than inputs+1 (7): least squares leaves a residual
    assert ls.matching_after[1] > 0


def test_orthogonal_block_input_target_is_one_step() -> None:
    """H_z = I for an orthogonal linear block: one unit input step is already the least squares."""
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4, bias=False)).double()
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=D))
        net[1].weight.copy_(q)
    x, y = torch.randn(6, 4, dtype=D), torch.randint(0, 4, (6,))
    a = copy.deepcopy(net)
    BackMatchingPropagation(
        net, lr=0.4, weight_solver="one-step", input_solver="least-squares"
    ).step(x, y)
    BackMatchingPropagation(a, lr=0.4).step(x, y)
    assert max_diff(net, a) < 1e-12


def test_gauss_seidel_differs_and_options_checked() -> None:
    net, x, y = mlp()
    a = copy.deepcopy(net)
    BackMatchingPropagation(net, lr=0.3, z_update="gauss-seidel").step(x, y)
    BackMatchingPropagation(a, lr=0.3).step(x, y)
    assert max_diff(net, a) > 1e-8  # the lower blocks see targets made with the new weights
    with pytest.raises(OperatorError, match="inner solver"):
        BackMatchingPropagation(net, lr=0.1, weight_solver="newton")  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="z_update"):
        BackMatchingPropagation(net, lr=0.1, z_update="both")  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="one value per block"):
        BackMatchingPropagation(net, lr=0.1, step_w=[1.0, 2.0])
