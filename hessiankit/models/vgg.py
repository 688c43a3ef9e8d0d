"""CIFAR-style VGG with batch norm, built from ``torch.nn`` modules only.

The network is ``features -> pool -> flatten -> classifier``: ``features`` is a stack of
``Conv2d(3x3, padding 1) -> BatchNorm2d -> ReLU`` units with ``MaxPool2d(2)`` where the
configuration says ``"M"``; ``pool`` is ``AdaptiveAvgPool2d(1)`` (a 1x1 map whatever the input
size, so 28x28 Fashion-MNIST and 32x32 images both work); ``classifier`` is one ``Linear``
(the CIFAR VGG of the paper's experiments has a single linear head on the 512 features).

The model is a plain :class:`torch.nn.Sequential`, so ``torch.save(model)`` files load without
unpickling any code (``hessiankit.io.load_model``), and its blocks are ``features.0`` (conv +
BN + ReLU [+ pool]), ..., ``classifier``.

Example:
    >>> from hessiankit.models import vgg
    >>> net = vgg("small", in_channels=1, num_classes=10, seed=0)
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> [n for n, _ in net.named_children()]
    ['features', 'pool', 'flatten', 'classifier']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from hessiankit.models.init import check_init, initialised

__all__ = ["VGG_CONFIGS", "vgg", "vgg_config"]

Config = Sequence[int | str]

#: Layer configurations: an int is a conv layer's output channels, "M" a 2x2 max-pool.
#: vgg11..vgg19 are the standard ones (Simonyan & Zisserman, configs A, B, D, E);
#: "small" is the built-in default model of the command line (four blocks, 2,034 weights for
#: 1 input channel and 10 classes: small enough that `hessiankit spectrum` runs in seconds).
# fmt: off
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "small": (8, "M", 8, "M", 16, "M"),
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
# fmt: on


def vgg_config(cfg: str | Config, width: float = 1.0) -> tuple[int | str, ...]:
    """The layer list of ``cfg`` (a name of :data:`VGG_CONFIGS` or a list), widths scaled.

    A width multiplier ``w`` gives ``max(1, round(w * c))`` channels to a layer of ``c``.

    Raises:
        ValueError: unknown name, non-positive width, or an entry that is neither int nor "M".
    """
    if isinstance(cfg, str):
        try:
            layers: Sequence[int | str] = VGG_CONFIGS[cfg.lower()]
        except KeyError:
            raise ValueError(
                f"unknown VGG configuration {cfg!r}; use one of {sorted(VGG_CONFIGS)} or a list"
            ) from None
    else:
        layers = cfg
    if not width > 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    out: list[int | str] = []
    for c in layers:
        if c == "M":
            out.append("M")
        elif isinstance(c, int) and not isinstance(c, bool) and c > 0:
            out.append(max(1, round(width * c)))
        else:
            raise ValueError(f"VGG configuration entries are positive ints or 'M', got {c!r}")
    if not any(isinstance(c, int) for c in out):
        raise ValueError("a VGG configuration needs at least one conv layer")
    return tuple(out)


def vgg(
    cfg: str | Config = "small",
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    width: float = 1.0,
    batch_norm: bool = True,
    init: str = "he",
    seed: int | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """A CIFAR-style VGG (conv3x3 [+BN] + ReLU units, max-pools, global average pool, linear).

    Args:
        cfg: ``"small"``, ``"vgg11"``, ``"vgg13"``, ``"vgg16"``, ``"vgg19"`` or a list of ints
            (conv channels) and ``"M"`` (max-pool).
        in_channels: input channels (1 for Fashion-MNIST/MNIST, 3 for CIFAR).
        num_classes: outputs of the linear head.
        width: channel multiplier (0.25 divides compute by about 16).
        batch_norm: put ``BatchNorm2d`` after every conv. Convs then have no bias: a bias before
            BN only adds null directions to the Hessians (vgg13: 9,413,066 weights, the common
            CIFAR VGG13-BN's 9,416,010 less its 2,944 conv biases).
        init: ``"he"`` (default): Kaiming-normal (fan-out, ReLU) convs, linear
            ``N(0, 0.01^2)`` (torchvision's VGG recipe); ``"orthogonal"``: reshaped kernels
            ``sqrt(2) Q`` with ``Q Q^T = I``, linear ``Q``
            (:func:`hessiankit.models.init.init_weights`). BN weight 1, biases 0 under both.
        seed: seed of the initialisation (``None``: torch's global generator).
        dtype: parameter dtype (default: torch's default). ``"he"`` draws in float32 and
            converts; ``"orthogonal"`` writes its float64 factors into the converted model, so
            a float64 model is orthogonal to rounding.

    Raises:
        ValueError: an invalid configuration, size or ``init``.
    """
    layers = vgg_config(cfg, width)
    check_init(init)
    if in_channels < 1 or num_classes < 1:
        raise ValueError("in_channels and num_classes must be positive")
    mods: list[nn.Module] = []
    c_in = in_channels
    for c in layers:
        if c == "M":
            mods.append(nn.MaxPool2d(2))
            continue
        assert isinstance(c, int)  # vgg_config guarantees it
        mods.append(nn.Conv2d(c_in, c, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            mods.append(nn.BatchNorm2d(c))
        mods.append(nn.ReLU())
        c_in = c
    # Module paths features.0, features.1, ... match torchvision's layer indices.
    net = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*mods),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(c_in, num_classes),
        )
    )
    return initialised(net, init, seed, dtype)
