"""Families of ``torch.nn`` modules that the structured routes recognise by type.

One home for the tuples that :mod:`hessiankit.analytic.scalar` (closed-form block scales) and
:mod:`hessiankit.solvers.separable_structure` (separable local Hessians) both test against.

Example:
    >>> isinstance(nn.Conv2d(1, 1, 3), CONV), isinstance(nn.Dropout2d(), DROPOUT)
    (True, True)
"""

from __future__ import annotations

from torch import nn

__all__ = ["ADAPTIVE_MAX_POOL", "BATCHNORM", "CONV", "DROPOUT", "MAX_POOL"]

#: Convolutions (not transposed).
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Batch normalisation of each rank (not SyncBatchNorm).
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Dropout of each rank: the identity in analysis mode, where dropout is off.
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
#: Max pooling of each rank.
MAX_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
#: Adaptive max pooling of each rank.
ADAPTIVE_MAX_POOL = (
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
