"""Blocks: the split of a network into ``z_b = F_b(W_b, z_{b-1})`` and the capture of a batch."""

from hessiankit.blocks.capture import BlockCapture, LossFn, capture, resolve_loss, run_block
from hessiankit.blocks.modes import BNMode, FunctionalState, analysis_mode
from hessiankit.blocks.split import Block, BlockSpec, BlockSplit, split_blocks

__all__ = [
    "BNMode",
    "Block",
    "BlockCapture",
    "BlockSpec",
    "BlockSplit",
    "FunctionalState",
    "LossFn",
    "analysis_mode",
    "capture",
    "resolve_loss",
    "run_block",
    "split_blocks",
]
