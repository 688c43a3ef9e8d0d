"""The ResNet-20-style builder and the orthogonal init against independent references:
parameter counts from the layout, the block split, a hand-written forward, Q Q^T = I."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hessiankit as hk
from hessiankit.models import Residual, resnet20, vgg
from hessiankit.models.resnet import Plain


def _expected_params(c: tuple[int, int, int], c_in: int, classes: int) -> int:
    # BN: conv without bias + BN (2 per channel); units: 2 x (BN(c) + conv c->c); transitions.
    c1, c2, c3 = c
    total = 9 * c_in * c1 + 2 * c1
    for k in (c1, c2, c3):
        total += 3 * 2 * (2 * k + 9 * k * k)
    total += 9 * c1 * c2 + 2 * c2 + 9 * c2 * c3 + 2 * c3
    return total + c3 * classes + classes


@pytest.mark.parametrize("width", [1.0, 0.25, 0.125])
def test_shapes_counts_and_blocks(width: float) -> None:
    net = resnet20(in_channels=1, num_classes=7, width=width, seed=0)
    c = tuple(max(1, round(width * k)) for k in (16, 32, 64))
    assert sum(p.numel() for p in net.parameters()) == _expected_params(c, 1, 7)  # type: ignore[arg-type]
    assert net(torch.zeros(3, 1, 32, 32)).shape == (3, 7)
    split = hk.split_blocks(net)
    # stem, 3 units, transition, 3 units, transition, 3 units, classifier
    assert len(split) == 13
    units = [b for b in split if b.has_skip]
    assert [b.name for b in units] == [f"stage{s}.{u}" for s in (1, 2, 3) for u in range(3)]
    assert [b.name for b in split if not b.has_skip] == [
        "stem.0",
        "down2.0",
        "down3.0",
        "classifier",
    ]
    # every residual unit is exactly one block holding both of its convs
    for b in units:
        assert sorted(n.rsplit(".", 2)[-2] for n in b.param_names if n.endswith("weight")) == [
            "0",
            "2",
            "3",
            "5",
        ]


def test_full_width_is_the_resnet20_layout() -> None:
    net = resnet20()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 18 + 2  # stem, 9 units of 2, 2 transitions (+ the linear: 22)
    assert [m.stride for m in convs if m.stride != (1, 1)] == [(2, 2), (2, 2)]
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, Residual) for m in net.modules()) == 9


def _hand_forward(net: nn.Sequential, x: torch.Tensor, skip: bool) -> torch.Tensor:
    """The network computed by hand from its parameters (BN in train mode, batch statistics)."""

    def bn(m: nn.BatchNorm2d, z: torch.Tensor) -> torch.Tensor:
        mu = z.mean(dim=(0, 2, 3), keepdim=True)
        var = z.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        w = m.weight.reshape(1, -1, 1, 1)
        b = m.bias.reshape(1, -1, 1, 1)
        return (z - mu) / torch.sqrt(var + m.eps) * w + b

    def conv(m: nn.Conv2d, z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, m.weight, m.bias, stride=m.stride, padding=1)

    def down(seq: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(bn(seq[1], conv(seq[0], z)))

    z = down(net.stem, x)
    for s in (1, 2, 3):
        if s > 1:
            z = down(getattr(net, f"down{s}"), z)
        for unit in getattr(net, f"stage{s}"):
            br = unit.branch
            phi = conv(br[2], torch.relu(bn(br[0], z)))
            phi = conv(br[5], torch.relu(bn(br[3], phi)))
            z = z + phi if skip else phi
    return z.mean(dim=(2, 3)) @ net.classifier.weight.T + net.classifier.bias


@pytest.mark.parametrize("init", ["he", "orthogonal"])
def test_skip_false_removes_only_the_identity_path(init: str) -> None:
    a = resnet20(in_channels=1, width=0.25, init=init, seed=3, dtype=torch.float64)
    b = resnet20(in_channels=1, width=0.25, init=init, seed=3, dtype=torch.float64, skip=False)
    # same modules, same parameter names and values
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert sum(isinstance(m, Plain) for m in b.modules()) == 9
    assert not any(isinstance(m, Residual) for m in b.modules())
    x = torch.randn(6, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for net, skip in ((a, True), (b, False)):
        torch.testing.assert_close(net(x), _hand_forward(net, x, skip), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(a(x), b(x))


def test_without_batch_norm() -> None:
    net = resnet20(in_channels=1, width=0.25, batch_norm=False, seed=0)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def _reshaped(net: nn.Module) -> list[torch.Tensor]:
    return [
        m.weight.detach().reshape(m.weight.shape[0], -1)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]


@pytest.mark.parametrize(
    "build",
    [
        lambda: resnet20(in_channels=1, width=0.25, init="orthogonal", seed=1, dtype=torch.float64),
        lambda: vgg(
            "vgg13", in_channels=1, width=0.125, init="orthogonal", seed=1, dtype=torch.float64
        ),
    ],
)
def test_orthogonal_init_is_orthogonal(build) -> None:
    # Each weight reshaped to (out, in * k * k) is gain * Q with Q Q^T = I (Q^T Q = I when it
    # has more rows than columns): gain sqrt(2) for the ReLU convs, 1 for the linear head.
    net = build()
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        w = m.weight.detach().reshape(m.weight.shape[0], -1)
        rows, cols = w.shape
        g = w @ w.T if rows <= cols else w.T @ w
        gain2 = 2.0 if isinstance(m, nn.Conv2d) else 1.0
        eye = torch.eye(min(rows, cols), dtype=torch.float64)
        assert float((g / gain2 - eye).abs().max()) < 1e-10


@pytest.mark.parametrize("init", ["he", "orthogonal"])
def test_seed_reproduces_and_distinguishes(init: str) -> None:
    a, b = resnet20(init=init, seed=5), resnet20(init=init, seed=5)
    c = resnet20(init=init, seed=6)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)


def test_he_init_statistics() -> None:
    # Kaiming fan-out: std sqrt(2 / (c_out 9)) on the widest conv (36,864 draws at width 1).
    w = resnet20(seed=0).stage3[2].branch[5].weight.detach()
    assert abs(float(w.std()) / (2.0 / (64 * 9)) ** 0.5 - 1) < 0.02


def test_vgg_default_init_unchanged_and_orthogonal_option() -> None:
    # The default is the He recipe drawn from one generator in module order (as before init=).
    net = vgg("small", in_channels=1, seed=0)
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            ref = torch.empty_like(m.weight).normal_(
                0.0, (2.0 / (m.out_channels * 9)) ** 0.5, generator=gen
            )
            assert torch.equal(m.weight, ref)
        elif isinstance(m, nn.Linear):
            assert torch.equal(
                m.weight, torch.empty_like(m.weight).normal_(0.0, 0.01, generator=gen)
            )
    assert torch.equal(
        vgg("small", seed=0, init="he").features[0].weight, vgg("small", seed=0).features[0].weight
    )
    with pytest.raises(ValueError, match="init"):
        vgg("small", init="xavier")
    with pytest.raises(ValueError, match="init"):
        resnet20(init="xavier")
