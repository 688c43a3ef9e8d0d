"""A ResNet-20-style network for 32x32 inputs whose residual units are single blocks.

"ResNet-20-style", not the exact ResNet-20 of He et al. (2016a): the three stages of 16, 32
and 64 channels (times ``width``) hold three residual units each, and every unit is a
:class:`~hessiankit.models.residual.Residual`, ``z + phi(z)`` with the identity on the skip
path and the pre-activation branch of He et al. (2016b)

``phi(z) = conv3x3(relu(bn(conv3x3(relu(bn(z))))))``  (without BN: the ``bn`` are left out),

so the block split (:mod:`hessiankit.blocks.split`) makes each unit one block of the paper's
form ``z_b = z_{b-1} + phi_b(W_b, z_{b-1})``. The stage transitions, where ResNet-20 puts a
strided unit with a projection shortcut, are plain blocks outside the units here:
``conv3x3(stride 2, c -> 2c) [-> BN] -> ReLU``. Layout (13 blocks)::

    stem        conv3x3(in -> c) [BN] ReLU                         block 1
    stage 1     3 x Residual(c)                                    blocks 2-4
    down 2      conv3x3/2(c -> 2c) [BN] ReLU                       block 5
    stage 2     3 x Residual(2c)                                   blocks 6-8
    down 3      conv3x3/2(2c -> 4c) [BN] ReLU                      block 9
    stage 3     3 x Residual(4c)  (+ global average pool, flatten) blocks 10-12
    classifier  Linear(4c -> classes)                              block 13

(22 weighted layers, c = ``max(1, round(16 width))``; the parameter-free pool and flatten
join the last unit's block, as the split rule puts every parameter-free module.)

``skip=False`` builds the same network, module for module and weight for weight under the
same seed, with the identity path removed: each unit computes ``phi(z)`` alone (a plain
``nn.Sequential`` in the unit's place, same module paths inside ``branch``).

Example:
    >>> net = resnet20(in_channels=1, width=0.25, seed=0)
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    >>> len(hk.split_blocks(net))
    13
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from hessiankit.models.init import check_init, initialised
from hessiankit.models.residual import Residual

__all__ = ["RESNET20_STAGES", "Plain", "resnet20"]

#: Base channels of the three stages (ResNet-20 for CIFAR).
RESNET20_STAGES: tuple[int, int, int] = (16, 32, 64)
#: Residual units per stage.
UNITS_PER_STAGE = 3


class Plain(nn.Module):
    """``branch(z)`` alone: a residual unit with its identity path removed (``skip=False``).

    It holds its branch under the same name as :class:`Residual`, so both networks have the
    same module and parameter paths.
    """

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.branch(z)
        return out


def _branch(c: int, batch_norm: bool) -> nn.Sequential:
    mods: list[nn.Module] = []
    for _ in range(2):
        if batch_norm:
            mods.append(nn.BatchNorm2d(c))
        mods.append(nn.ReLU())
        mods.append(nn.Conv2d(c, c, 3, padding=1, bias=not batch_norm))
    return nn.Sequential(*mods)


def _conv_block(c_in: int, c_out: int, stride: int, batch_norm: bool) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        mods.append(nn.BatchNorm2d(c_out))
    mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def resnet20(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    width: float = 1.0,
    skip: bool = True,
    batch_norm: bool = True,
    init: str = "he",
    seed: int | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """A ResNet-20-style network (see the module docstring for the layout).

    Args:
        in_channels: input channels (1 for Fashion-MNIST, 3 for CIFAR).
        num_classes: outputs of the linear head.
        width: channel multiplier: stages of ``max(1, round(w c))`` channels, c = 16, 32, 64.
        skip: keep the identity path of every residual unit (``False``: ``phi(z)`` alone).
        batch_norm: ``BatchNorm2d`` in the branches and the transitions; convs then have no
            bias (a bias before BN only adds null directions to the Hessians).
        init: ``"he"``: Kaiming-normal (fan-out) convs, linear ``N(0, 0.01^2)``;
            ``"orthogonal"``: reshaped kernels ``sqrt(2) Q`` with ``Q Q^T = I`` (``Q^T Q = I``
            for a kernel with more rows than columns), linear ``Q``
            (:func:`hessiankit.models.init.init_weights`). BN weight 1, biases 0.
        seed: seed of the initialisation (``None``: torch's global generator).
        dtype: parameter dtype (default: torch's default); as :func:`hessiankit.models.vgg`.

    Raises:
        ValueError: a non-positive size or width, or an unknown ``init``.
    """
    check_init(init)
    if in_channels < 1 or num_classes < 1:
        raise ValueError("in_channels and num_classes must be positive")
    if not width > 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    c1, c2, c3 = (max(1, round(width * c)) for c in RESNET20_STAGES)
    unit = Residual if skip else Plain
    parts: list[tuple[str, nn.Module]] = [("stem", _conv_block(in_channels, c1, 1, batch_norm))]
    for s, (c_prev, c) in enumerate(((c1, c1), (c1, c2), (c2, c3)), start=1):
        if s > 1:
            parts.append((f"down{s}", _conv_block(c_prev, c, 2, batch_norm)))
        parts.append(
            (
                f"stage{s}",
                nn.Sequential(*(unit(_branch(c, batch_norm)) for _ in range(UNITS_PER_STAGE))),
            )
        )
    parts += [
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Linear(c3, num_classes)),
    ]
    net = nn.Sequential(OrderedDict(parts))
    return initialised(net, init, seed, dtype)
