"""Block pace (hessiankit.optim.pace) against closed forms built from dense float64 Jacobians."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

import hessiankit as hk
from hessiankit.errors import DataError
from hessiankit.optim.pace import block_pace, pace_capture


def _net() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4)).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (7,))
    return net, x, y


def _last_block_closed_form(
    net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, s: float
) -> float:
    """1 - ||(I - s K) g||^2 / ||g||^2, K = J J^T / m for the last Linear (its output is
    linear in its weights), g = m dL/dz from a hand-written forward."""
    m = x.shape[0]
    with torch.no_grad():
        z1 = torch.tanh(x @ net[0].weight.T + net[0].bias)
    z2 = (z1 @ net[2].weight.T + net[2].bias).requires_grad_(True)
    (dz,) = torch.autograd.grad(nn.functional.cross_entropy(z2, y), z2)
    g = (m * dz).reshape(-1)
    params = {k: v.detach() for k, v in net[2].named_parameters()}

    def out(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(net[2], p, (z1,)).reshape(-1)

    jac = jacrev(out)(params)
    J = torch.cat([jac[k].reshape(g.numel(), -1) for k in params], dim=1)
    K = J @ J.T / m
    r = g - s * (K @ g)
    return float(1 - r.dot(r) / g.dot(g))


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_linear_block_pace_is_the_closed_form(scale: float) -> None:
    net, x, y = _net()
    lr = 0.05
    expected = _last_block_closed_form(net, x, y, scale)
    cap = pace_capture(net, x, y)
    # SGD on the whole net; the last block at scale x the base rate (scale-amended style).
    opt = torch.optim.SGD(
        [
            {"params": net[0].parameters(), "lr": lr},
            {"params": net[2].parameters(), "lr": scale * lr},
        ]
    )
    w0 = [p.detach().clone() for p in net[2].parameters()]
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    pace = block_pace(cap, net, eta=lr)
    assert [p.index for p in pace] == [1, 2]
    last = pace[1]
    assert last.matched == pytest.approx(expected, rel=1e-10, abs=1e-12)
    g = cap.per_sample_grad(cap.split.blocks[1])
    assert last.loss_before == pytest.approx(lr**2 * float(g.pow(2).sum()) / (2 * x.shape[0]))
    step = math.sqrt(
        sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(net[2].parameters(), w0))
    )
    norm = math.sqrt(sum(float(q.pow(2).sum()) for q in w0))
    assert last.relative_change == pytest.approx(step / norm, rel=1e-12)


def test_nonlinear_block_against_a_hand_written_forward() -> None:
    net, x, y = _net()
    lr = 0.2
    m = x.shape[0]
    cap = pace_capture(net, x, y)
    W, b = net[0].weight.detach().clone(), net[0].bias.detach().clone()
    z = x @ W.T + b
    z1 = torch.tanh(z).requires_grad_(True)
    (dz1,) = torch.autograd.grad(nn.functional.cross_entropy(net[2](z1), y), z1)
    target = torch.tanh(z) - lr * m * dz1
    nn.functional.cross_entropy(net(x), y).backward()
    torch.optim.SGD(net.parameters(), lr=lr).step()
    with torch.no_grad():
        after = 0.5 * (target - torch.tanh(x @ net[0].weight.T + net[0].bias)).pow(2).sum() / m
    before = 0.5 * (lr * m * dz1).pow(2).sum() / m
    first = block_pace(cap, net, eta=lr)[0]
    assert first.loss_after == pytest.approx(float(after), rel=1e-12)
    assert first.matched == pytest.approx(1 - float(after / before), rel=1e-10)


def test_an_exact_back_matching_solve_matches_fully() -> None:
    # Minimising l_b of the last (linear) block exactly reaches its target when the block has
    # at least as many weights per output as samples: pace 1.
    net, x, y = _net()
    lr = 0.3
    cap = pace_capture(net, x, y)
    blk = cap.split.blocks[1]
    z1 = torch.cat([cap.block_input(blk), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
    t = backmatching = cap.block_output(blk) - lr * cap.per_sample_grad(blk)
    sol = torch.linalg.lstsq(z1, backmatching).solution  # (7 x 4): exact, 7 samples, 7 weights
    new = dict(net.named_parameters())
    new = {**{k: v.detach() for k, v in new.items()}, "2.weight": sol[:-1].T, "2.bias": sol[-1]}
    assert torch.allclose(z1 @ sol, t, atol=1e-10)
    assert block_pace(cap, new, eta=lr, blocks=[blk])[0].matched == pytest.approx(1.0, abs=1e-10)


def test_bad_arguments() -> None:
    net, x, y = _net()
    cap = pace_capture(net, x, y)
    with pytest.raises(DataError, match="eta"):
        block_pace(cap, net, eta=float("nan"))
    with pytest.raises(DataError, match="no '2.bias'"):
        block_pace(cap, {k: v for k, v in net.named_parameters() if k != "2.bias"}, eta=0.1)
    with pytest.raises(DataError, match="labels"):
        block_pace(pace_capture(net, x, None), net, eta=0.1)
    with pytest.raises(DataError, match="pace_capture"):
        block_pace(hk.capture(net, x, y), net, eta=0.1)
