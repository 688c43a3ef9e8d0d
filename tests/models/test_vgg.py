"""The VGG builder against independent counts: layer structure, parameter numbers, shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hessiankit as hk
from hessiankit.models import VGG_CONFIGS, default_model, vgg, vgg_config


def _expected_params(cfg: tuple[int | str, ...], c_in: int, classes: int) -> int:
    # conv 3x3 without bias + BN (weight, bias) per conv layer, then Linear(c_last, classes).
    total = 0
    for c in cfg:
        if c != "M":
            total += 9 * c_in * c + 2 * c
            c_in = c
    return total + c_in * classes + classes


@pytest.mark.parametrize("name", ["small", "vgg11", "vgg13", "vgg16", "vgg19"])
def test_parameter_count_matches_formula(name: str) -> None:
    net = vgg(name, in_channels=3, num_classes=10)
    assert sum(p.numel() for p in net.parameters()) == _expected_params(VGG_CONFIGS[name], 3, 10)


def test_vgg13_is_the_cifar_vgg13_bn() -> None:
    net = vgg("vgg13")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 10 and len(bns) == 10 and len(pools) == 5
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert all(c.bias is None and c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    # The common CIFAR VGG13-BN with one linear head has 9,416,010 weights, 2,944 of them conv
    # biases that BN makes redundant (they only add null directions); ours has none.
    assert sum(p.numel() for p in net.parameters()) == 9_416_010 - 2_944
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_width_in_channels_and_classes() -> None:
    net = vgg("vgg13", in_channels=1, num_classes=7, width=0.25)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 1
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 128, 128, 128, 128]
    assert net(torch.zeros(3, 1, 32, 32)).shape == (3, 7)
    assert vgg_config([3, "M", 5], width=0.5) == (2, "M", 2)  # round(1.5)=2, round(2.5)=2


def test_without_batch_norm_convs_have_bias() -> None:
    net = vgg("small", batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))


def test_invalid_configurations() -> None:
    with pytest.raises(ValueError, match="unknown VGG"):
        vgg("vgg7")
    with pytest.raises(ValueError, match="width"):
        vgg("small", width=0)
    with pytest.raises(ValueError, match="positive ints"):
        vgg([8, "X"])


def test_seed_determines_the_initialisation() -> None:
    a, b, c = default_model(seed=3), default_model(seed=3), default_model(seed=4)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    # Kaiming fan-out: std sqrt(2 / (c_out * 9)) for the widest conv of vgg13 (2.4M draws).
    w = [m for m in vgg("vgg13", seed=0).modules() if isinstance(m, nn.Conv2d)][-1].weight
    assert abs(float(w.detach().std()) / (2.0 / (512 * 9)) ** 0.5 - 1) < 0.01


def test_default_model_blocks_and_input_sizes() -> None:
    net = default_model()
    split = hk.split_blocks(net)
    assert [b.name for b in split] == ["features.0", "features.4", "features.8", "classifier"]
    assert all(b.has_bn for b in list(split)[:3]) and not list(split)[3].has_bn
    for size in (28, 32):
        assert net(torch.zeros(2, 1, size, size)).shape == (2, 10)
    # vgg13: one block per conv plus the head.
    assert len(hk.split_blocks(vgg("vgg13", width=0.125))) == 11
