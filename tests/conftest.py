"""Shared fixtures: small float64 networks with every kind of block the core must handle.

Also the one rule for the ``slow`` marker (``pytest -m "not slow"`` is the quick run): a test
that runs the installed ``hessiankit`` executable (the ``hk`` fixture of ``tests/cli``) or lives
in an end-to-end file (``*_e2e.py``: torchrun, whole CLI runs) is slow. Tests that run an
analysis script or spawn processes carry the marker themselves (``tests/analyses``, the
analyses' smoke test, two gloo ranks in ``tests/operators/test_distributed.py``), and so do the
convolution and ResNet dense references of ``tests/operators``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        runs_executable = "hk" in getattr(item, "fixturenames", ())
        if runs_executable or item.path.name.endswith("_e2e.py"):
            item.add_marker(pytest.mark.slow)


class BasicBlock(nn.Module):
    """A ResNet basic block with batch norm: relu(x + bn(conv(relu(bn(conv(x))))))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + x)


def randomise_bn(net: nn.Module, seed: int) -> nn.Module:
    """Give batch norm nontrivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return net


@pytest.fixture
def mlp_tanh() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)
    ).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    return net, x, y


@pytest.fixture
def conv_bn() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 3),
    ).double()
    randomise_bn(net, 1)
    x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    return net, x, y


@pytest.fixture
def resnet_bn() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        BasicBlock(3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 3),
    ).double()
    randomise_bn(net, 2)
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    return net, x, y
