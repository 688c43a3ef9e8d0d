"""Full float32 arithmetic while hessiankit computes (no TF32 on NVIDIA GPUs).

By default PyTorch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa, relative
error ~1e-3) on Ampere and later GPUs. Every error bound hessiankit reports assumes the
operator's dtype is what the arithmetic carries (``eps(float32) ~ 1.2e-7``), so captures and
products run with TF32 off for convolutions and matrix products, and the caller's settings are
restored afterwards. Nothing changes on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["full_precision"]


@contextmanager
def full_precision() -> Iterator[None]:
    """Turn TF32 off for cuDNN and cuBLAS inside the block, restoring the settings after.

    >>> before = torch.backends.cuda.matmul.allow_tf32
    >>> with full_precision():
    ...     torch.backends.cuda.matmul.allow_tf32
    False
    >>> torch.backends.cuda.matmul.allow_tf32 == before
    True
    """
    matmul = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled,
            benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.backends.cudnn.deterministic,
            allow_tf32=False,
        ):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
