"""ScaleAmendedSGD: SGD bit for bit without the amendment; the amendment equals Algorithm 2's formula."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessiankit import split_blocks
from hessiankit.analytic.scalar import BlockScale
from hessiankit.errors import OperatorError
from hessiankit.optim import ScaleAmendedSGD, amendment_from_scales, block_param_groups
from conftest import randomise_bn

D = torch.float64


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 3),
    )
    randomise_bn(net, seed)
    return net


def batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 2, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g))
        for _ in range(n)
    ]


def train(net: nn.Module, opt: torch.optim.Optimizer, data, sched=None) -> None:
    net.train()
    for x, y in data:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(momentum=0.9),
        dict(momentum=0.9, weight_decay=5e-4, nesterov=True),
        dict(momentum=0.5, dampening=0.3, weight_decay=1e-2, maximize=True),
    ],
)
def test_without_amendment_is_sgd_bit_for_bit(kw) -> None:
    a, b = bn_net(), bn_net()
    data = batches(4)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.05, **kw)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=2, gamma=0.3)
    opt_b = ScaleAmendedSGD.for_model(b, lr=0.05, amend=False, **kw)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=2, gamma=0.3)
    train(a, opt_a, data, sched_a)
    train(b, opt_b, data, sched_b)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_amendment_formula_hand_checked() -> None:
    sc = [
        BlockScale(1, "a", 2.0, 10.0, "closed-form", 0, 0),
        BlockScale(2, "b", 0.5, 4.0, "closed-form", 0, 0),
        BlockScale(3, "c", 0.25, 0.5, "closed-form", 0, 0),
    ]
    # s_3 = 1, s_2 = 1/0.5 = 2, s_1 = 2/4 = 0.5; r_b = s_b / m_bW
    assert amendment_from_scales(sc, normalize="none") == pytest.approx({1: 0.25, 2: 4.0, 3: 4.0})
    mean = amendment_from_scales(sc, normalize="mean")
    assert mean == pytest.approx({1: 0.25 / 2.75, 2: 4 / 2.75, 3: 4 / 2.75})
    geo = amendment_from_scales(sc, normalize="geometric")
    assert geo[1] * geo[2] * geo[3] == pytest.approx(1.0)
    clipped = amendment_from_scales(sc, normalize="geometric", clip=2.0)
    assert clipped == pytest.approx({1: 0.5, 2: 2.0, 3: 2.0})  # 0.25/4^(1/3) -> 1/2, 4/4^(1/3) -> 2


def test_amended_step_uses_block_rates_of_linear_closed_forms() -> None:
    """Two linear blocks: m_1W = mean input square, m_2z = ||W_2||^2/n_1, m_2W = mean square of
    z_1; the update of W_b is exactly lr * s_b/m_bW * grad (momentum 0, normalize none)."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False)).double()
    x, y = torch.randn(6, 4, dtype=D) * 2, torch.randint(0, 3, (6,))
    W1, W2 = net[0].weight.detach().clone(), net[1].weight.detach().clone()
    opt = ScaleAmendedSGD.for_model(net, lr=0.1, normalize="none")
    F.cross_entropy(net(x), y).backward()
    g1, g2 = net[0].weight.grad.clone(), net[1].weight.grad.clone()
    opt.step()
    z1 = x @ W1.T
    m1w = float(x.pow(2).mean())
    m2w = float(z1.pow(2).mean())
    m2z = float(W2.pow(2).sum()) / 5
    r1, r2 = (1 / m2z) / m1w, 1 / m2w
    assert torch.allclose(net[0].weight, W1 - 0.1 * r1 * g1, rtol=0, atol=1e-14)
    assert torch.allclose(net[1].weight, W2 - 0.1 * r2 * g2, rtol=0, atol=1e-14)
    assert [s.m_z for s in opt.last_scales][1] == pytest.approx(m2z)


def test_state_dict_resume_and_refresh_period() -> None:
    data = batches(6, seed=1)
    kw = dict(momentum=0.9, weight_decay=1e-3, refresh_every=2, ema=0.5, per_channel=True)
    a = bn_net(1)
    opt_a = ScaleAmendedSGD.for_model(a, lr=0.05, **kw)
    train(a, opt_a, data)
    b = bn_net(1)
    opt_b = ScaleAmendedSGD.for_model(b, lr=0.05, **kw)
    train(b, opt_b, data[:3])
    saved = copy.deepcopy(opt_b.state_dict())
    model_saved = copy.deepcopy(b.state_dict())
    c = bn_net(1)
    c.load_state_dict(model_saved)
    opt_c = ScaleAmendedSGD.for_model(c, lr=0.05, **kw)
    opt_c.load_state_dict(saved)
    train(c, opt_c, data[3:])
    for p, q in zip(a.parameters(), c.parameters()):
        assert torch.equal(p, q)
    assert opt_a._refreshes == 3  # steps 0, 2, 4
    mains = [g["amendment"] for g in opt_a.param_groups if g["role"] == "main"]
    assert len(mains) == 3 and all(m > 0 for m in mains) and len(set(mains)) == 3


def test_per_channel_shares_and_groups() -> None:
    net = bn_net(2)
    groups = block_param_groups(net)
    roles = [(g["block"], g["role"], g["amend"]) for g in groups]
    assert roles == [
        (1, "main", True),
        (1, "other", False),
        (2, "main", True),
        (2, "other", False),
        (3, "main", True),
        (3, "other", False),
    ]
    opt = ScaleAmendedSGD.for_model(net, lr=0.1, per_channel=True)
    x, _ = batches(1)[0]
    net.train()
    opt.refresh(x)
    w, bn = net[3].weight.detach(), net[4].weight.detach()
    share = opt.state[net[3].weight]["channel_amendment"].flatten()
    expect = w.reshape(6, -1).pow(2).sum(1) / bn.pow(2)
    assert torch.allclose(share, expect / expect.mean(), rtol=1e-6)
    assert float(share.mean()) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.slow  # Hutch++ with 90 products on every block
def test_closed_form_tracks_trace_multipliers() -> None:
    net = bn_net(3).double()
    split = split_blocks(net)
    x, _ = batches(1, seed=3)[0]
    net.train()
    cf = ScaleAmendedSGD(block_param_groups(split), lr=0.1, split=split)
    tr = ScaleAmendedSGD(
        block_param_groups(split), lr=0.1, split=split, method="trace", num_products=90
    )
    cf.refresh(x.double())
    tr.refresh(x.double())
    a = [g["amendment"] for g in cf.param_groups if g["role"] == "main"]
    b = [g["amendment"] for g in tr.param_groups if g["role"] == "main"]
    assert a == pytest.approx(b, rel=0.3)


def test_errors() -> None:
    net = bn_net()
    with pytest.raises(OperatorError, match="block split"):
        ScaleAmendedSGD(block_param_groups(net), lr=0.1)
    split = split_blocks(net)
    opt = ScaleAmendedSGD(block_param_groups(split), lr=0.1, split=split)
    F.cross_entropy(net(batches(1)[0][0]), batches(1)[0][1]).backward()
    with pytest.raises(OperatorError, match="refresh"):
        opt.step()
    with pytest.raises(OperatorError, match="normalize"):
        ScaleAmendedSGD(net.parameters(), lr=0.1, normalize="max")  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="Nesterov"):
        ScaleAmendedSGD(net.parameters(), lr=0.1, nesterov=True)
