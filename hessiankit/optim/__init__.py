"""Training by back-matching propagation and scale-amended SGD (paper digest, sections 2 and 5)."""

from hessiankit.optim.backmatching import BackMatchingPropagation, BackMatchingStep
from hessiankit.optim.scale_amended import (
    ScaleAmendedSGD,
    amendment_from_scales,
    block_param_groups,
)

__all__ = [
    "BackMatchingPropagation",
    "BackMatchingStep",
    "ScaleAmendedSGD",
    "amendment_from_scales",
    "block_param_groups",
]
