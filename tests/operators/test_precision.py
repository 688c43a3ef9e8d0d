"""Captures and products run with TF32 off (cuDNN and cuBLAS), the caller's flags restored."""

from __future__ import annotations

import torch
from torch import nn

import hessiankit as hk


class Spy(nn.Module):
    """Identity that records the TF32 flags each time it runs (forward or recomputation)."""

    seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Spy.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return x


def test_tf32_is_off_while_hessiankit_computes_and_restored_after():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), Spy(), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,))
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        Spy.seen.clear()
        cap = hk.capture(net, x, y)
        for backend in ("double-backprop", "forward-over-reverse"):
            op = hk.LossHessian(cap, "model", backend=backend)
            op.matmat(torch.randn(op.dim, 2, dtype=torch.float64))
            op.gradient()
            gn = hk.LocalHessian(cap, 1, backend=backend)
            gn.matmat(torch.randn(gn.dim, 1, dtype=torch.float64))
        assert len(Spy.seen) >= 5 and set(Spy.seen) == {(False, False)}
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
