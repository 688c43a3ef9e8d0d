"""``z + branch(z)``: a residual unit, the smallest block with a skip connection.

The block split makes the whole unit one block (:mod:`hessiankit.blocks.split`); its input
local Hessian is ``(I + J_branch)^T (I + J_branch)`` (:mod:`hessiankit.analytic.residual`).

Example:
    >>> unit = Residual(nn.Linear(3, 3, bias=False))
    >>> nn.init.zeros_(unit.branch.weight)  # doctest: +ELLIPSIS
    Parameter containing:
    ...
    >>> bool(torch.equal(unit(torch.ones(2, 3)), torch.ones(2, 3)))
    True
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Residual"]


class Residual(nn.Module):
    """``z + branch(z)``; ``branch`` must keep the shape of its input.

    Args:
        branch: the residual branch.
    """

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = z + self.branch(z)
        return out
