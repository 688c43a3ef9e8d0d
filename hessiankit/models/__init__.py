"""Model zoo: networks the command line and the experiments build by name.

:func:`vgg` builds a CIFAR-style VGG with batch norm (``"small"``, ``"vgg11"``, ``"vgg13"``,
``"vgg16"``, ``"vgg19"``), with ``in_channels``, ``num_classes`` and a width multiplier. The
command line's built-in model is :func:`default_model`: ``vgg("small", in_channels=1,
num_classes=10, seed=0)`` for Fashion-MNIST's 1x28x28 images. :class:`Residual` is the
residual unit ``z + branch(z)`` the analyses and tests build skip connections from;
:func:`resnet20` a ResNet-20-style network for 32x32 inputs whose residual units are
:class:`Residual` blocks (``skip=False``: the same network without the identity paths). Both
builders take ``init="he"`` (default) or ``"orthogonal"`` (:mod:`hessiankit.models.init`).
"""

from __future__ import annotations

from torch import nn

from hessiankit.models.residual import Residual
from hessiankit.models.resnet import resnet20
from hessiankit.models.vgg import VGG_CONFIGS, vgg, vgg_config

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "VGG_CONFIGS",
    "Residual",
    "default_model",
    "resnet20",
    "vgg",
    "vgg_config",
]

#: Input shape (without the batch dimension) of :func:`default_model`.
DEFAULT_INPUT_SHAPE: tuple[int, ...] = (1, 28, 28)


def default_model(seed: int = 0) -> nn.Sequential:
    """The built-in model: a small VGG with BN for 1x28x28 images and 10 classes, seeded."""
    return vgg("small", in_channels=1, num_classes=10, seed=seed)
