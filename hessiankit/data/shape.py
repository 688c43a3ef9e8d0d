"""Fit image batches to a model's input shape: channels, spatial size, flattening.

Rules (applied to a batch ``x`` of shape ``(N, C, H, W)``, target shape without the batch
dimension):

* target ``(C', H', W')``: channels 1 -> C' by repetition (grey to RGB); spatial size by
  zero-padding when the target is larger by an even margin on both sides (28 -> 32, as
  CIFAR-style VGGs need), else by bilinear resizing (with antialiasing when shrinking);
* target ``(D,)``: the image fitted to ``(1, s, s)`` with ``s*s = D`` (or kept as is when
  ``C*H*W = D``), then flattened;
* anything else that does not match is a :class:`~hessiankit.errors.DataError`.

Example:
    >>> from hessiankit.data import fit_to_shape
    >>> fit_to_shape(torch.ones(2, 1, 28, 28), (3, 32, 32)).shape
    torch.Size([2, 3, 32, 32])
    >>> fit_to_shape(torch.ones(2, 1, 8, 8), (64,)).shape
    torch.Size([2, 64])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from hessiankit.errors import DataError

__all__ = ["fit_to_shape"]


def fit_to_shape(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Fit a batch of images ``(N, C, H, W)`` to ``shape`` (without the batch dimension).

    Raises:
        DataError: the images cannot sensibly be made into that shape.
    """
    target = tuple(int(s) for s in shape)
    if x.ndim != 4:
        raise DataError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")
    if tuple(x.shape[1:]) == target:
        return x
    if len(target) == 1:
        d = target[0]
        if x[0].numel() == d:
            return x.reshape(x.shape[0], d)
        s = math.isqrt(d)
        if s * s != d:
            raise DataError(
                f"cannot fit images of shape {tuple(x.shape[1:])} to a flat input of {d} "
                "features (not a square image); pass data of the right shape"
            )
        return fit_to_shape(x, (1, s, s)).reshape(x.shape[0], d)
    if len(target) != 3:
        raise DataError(
            f"cannot fit images of shape {tuple(x.shape[1:])} to input shape {target}; give "
            "input_shape=C,H,W or C*H*W, or pass data of the right shape"
        )
    c, h, w = target
    if min(target) < 1:
        raise DataError(f"input shape {target} has an empty dimension")
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif c == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise DataError(
                f"cannot map {x.shape[1]} image channels to {c}; pass data of the right shape"
            )
    H, W = x.shape[2], x.shape[3]
    if (h, w) == (H, W):
        return x.contiguous()
    dh, dw = h - H, w - W
    if dh >= 0 and dw >= 0 and dh % 2 == 0 and dw % 2 == 0 and dh <= H // 4 and dw <= W // 4:
        # A small even margin: pad with the background value (zeros before normalisation).
        return F.pad(x, (dw // 2, dw // 2, dh // 2, dh // 2)).contiguous()
    shrink = h < H or w < W
    return F.interpolate(
        x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink
    ).contiguous()
