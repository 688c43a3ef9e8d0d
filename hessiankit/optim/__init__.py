"""Training by back-matching propagation and scale-amended SGD (paper digest, sections 2 and 5),
and the measured block scales the latter runs on."""

from hessiankit.optim.backmatching import BackMatchingPropagation, BackMatchingStep
from hessiankit.optim.pace import BlockPace, block_pace, pace_capture
from hessiankit.optim.scales import BlockScale, ScaleMethod, block_scales
from hessiankit.optim.scale_amended import (
    ScaleAmendedSGD,
    amendment_from_scales,
    block_param_groups,
)

__all__ = [
    "BackMatchingPropagation",
    "BackMatchingStep",
    "BlockPace",
    "BlockScale",
    "ScaleMethod",
    "ScaleAmendedSGD",
    "amendment_from_scales",
    "block_pace",
    "block_param_groups",
    "block_scales",
    "pace_capture",
]
