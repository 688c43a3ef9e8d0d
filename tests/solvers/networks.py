"""Local Hessians of small networks with the dimensions the solver acceptance cases name."""

from __future__ import annotations

import torch
from torch import nn

import hessiankit as hk
from hessiankit.operators import SymmetricOperator


def _operator(
    model: nn.Module, x: torch.Tensor, classes: int, block: int, wrt: str
) -> SymmetricOperator:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, classes, (x.shape[0],), generator=g)
    cap = hk.capture(hk.split_blocks(model), x, y, bn="train")
    return hk.LocalHessian(cap, block, wrt=wrt)  # type: ignore[arg-type]


def linear_tanh_24(dtype: torch.dtype = torch.float64) -> SymmetricOperator:
    """Weights of Linear(5, 4) + Tanh (20 weights and 4 biases): the 24-dim weight block."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)
    return _operator(model, torch.randn(16, 5, dtype=dtype), 3, 1, "weights")


def linear_tanh_330(dtype: torch.dtype = torch.float64) -> SymmetricOperator:
    """Weights of Linear(10, 30) + Tanh: a 330-dim weight block."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 30), nn.Tanh(), nn.Linear(30, 5)).to(dtype)
    return _operator(model, torch.randn(32, 10, dtype=dtype), 5, 1, "weights")


def conv_relu_1200(dtype: torch.dtype = torch.float64) -> SymmetricOperator:
    """Weights of Conv2d(1, 24, 7) + ReLU (24 x 49 weights and 24 biases): 1,200 dims, 2 samples
    (rank 843: singular, kappa about 900 on the range)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 24, 7), nn.ReLU(), nn.Flatten(), nn.Linear(24 * 6 * 6, 4)
    ).to(dtype)
    return _operator(model, torch.randn(2, 1, 12, 12, dtype=dtype), 4, 1, "weights")


def readme_2048(dtype: torch.dtype = torch.float32) -> SymmetricOperator:
    """The README's "Library in one screen" operator: block 2's input local Hessian (64 x 32),
    float32 as the README runs it, or the same model and data cast to ``dtype``."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10)
    )
    x, y = torch.randn(64, 20), torch.randint(0, 10, (64,))
    model, x = model.to(dtype), x.to(dtype)
    cap = hk.capture(hk.split_blocks(model), x, y, bn="train")
    return hk.LocalHessian(cap, 2, wrt="input")


def loss_hessian_whole_model(dtype: torch.dtype = torch.float64) -> SymmetricOperator:
    """The training-loss Hessian w.r.t. a tanh MLP's middle block (272 weights, indefinite)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 5)
    )
    model = model.to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, dtype=dtype)
    y = torch.randint(0, 5, (64,), generator=g)
    cap = hk.capture(hk.split_blocks(model), x, y, bn="train")
    return hk.LossHessian(cap, 2)
