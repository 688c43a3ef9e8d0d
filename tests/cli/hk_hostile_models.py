"""Factories for the hostile-input tests (importable through PYTHONPATH as cli.hk_hostile_models)."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable


class OnceTanh(torch.autograd.Function):
    """tanh with a hand-written backward marked ``@once_differentiable``: right gradients,
    no second derivatives."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def, override]
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def, override]
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class TwiceTanh(torch.autograd.Function):
    """The same tanh with a backward written in differentiable torch operations."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def, override]
        y = torch.tanh(x)
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def, override]
        (x,) = ctx.saved_tensors
        return g * (1 - torch.tanh(x) ** 2)


class Act(nn.Module):
    def __init__(self, fn: type[torch.autograd.Function]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn.apply(x)  # type: ignore[no-any-return]


def once_diff() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), Act(OnceTanh), nn.Linear(6, 3)).double()


def twice_diff() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), Act(TwiceTanh), nn.Linear(6, 3)).double()
