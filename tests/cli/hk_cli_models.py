"""Architecture factories for the ``--arch`` tests (importable through PYTHONPATH)."""

from __future__ import annotations

import torch
from torch import nn


class Custom(nn.Module):
    """A model class outside torch.nn: pickles of it must not load without an explicit choice."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Detach(nn.Module):
    """A layer whose output does not depend on its input differentiably."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


def custom() -> nn.Module:
    torch.manual_seed(3)
    return Custom().double()


def detached() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 6), Detach(), nn.Tanh(), nn.Linear(6, 3)).double()
