"""The network under analysis: load it (or build the built-in default) and say what it is.

Example:
    >>> from hessiankit.pipeline import ModelSource, open_model
    >>> info = open_model(ModelSource(), torch.device("cpu"))
    >>> info.builtin, info.input_shape
    (True, (1, 28, 28))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hessiankit.blocks.modes import is_batchnorm
from hessiankit.errors import ModelLoadError, OperatorError
from hessiankit.io import load_model
from hessiankit.models import DEFAULT_INPUT_SHAPE, default_model
from hessiankit.pipeline.options import ModelSource

__all__ = ["ModelInfo", "check_torchscript_bn", "open_model"]


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """The network under analysis and what the commands print about it."""

    model: nn.Module
    source: str
    label: str
    builtin: bool
    input_shape: tuple[int, ...] | None
    num_outputs: int | None
    channels_only: bool = False  # input_shape is (C,) of a conv net: spatial size from the data


def open_model(
    source: ModelSource, device: torch.device, input_shape: tuple[int, ...] | None = None
) -> ModelInfo:
    """Load the model of ``source`` (or build the built-in default) and move it to ``device``.

    ``input_shape`` (without the batch dimension) overrides the one read off the first layer.
    """
    if source.path is None and source.arch is None:
        model: nn.Module = default_model(seed=0)
        info = ("built-in", "built-in small VGG with BN (hessiankit.models.default_model)", True)
    else:
        if source.trust_pickle and source.arch:
            raise ModelLoadError("give either trust_pickle=True or arch=, not both")
        loaded = load_model(
            source.path,
            trust_pickle=source.trust_pickle,
            trust_torchscript=source.trust_pickle,  # one flag trusts the file, whatever its format
            arch=source.arch,
            max_input_bytes=source.max_input_bytes,
        )
        model = loaded.model
        label = (
            source.path
            if source.arch is None
            else f"{source.arch}" + (f" + {source.path}" if source.path else "")
        )
        info = (loaded.source, str(label), False)
    model = model.to(device)
    shape = input_shape or (DEFAULT_INPUT_SHAPE if info[2] else _infer_input_shape(model))
    channels_only = input_shape is None and not info[2] and _first_is_conv(model)
    return ModelInfo(model, info[0], info[1], info[2], shape, _infer_outputs(model), channels_only)


def _weighted_leaves(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in model.modules()
        if not any(True for _ in m.children()) and any(True for _ in m.parameters(recurse=False))
    ]


def _infer_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    leaves = _weighted_leaves(model)
    if not leaves:
        return None
    first = leaves[0]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    if isinstance(first, nn.Conv2d):
        return (first.in_channels,)  # spatial size: the data's own
    return None


def _first_is_conv(model: nn.Module) -> bool:
    leaves = _weighted_leaves(model)
    return bool(leaves) and isinstance(leaves[0], nn.Conv2d)


def _infer_outputs(model: nn.Module) -> int | None:
    leaves = _weighted_leaves(model)
    if leaves and isinstance(leaves[-1], nn.Linear):
        return leaves[-1].out_features
    return None


def check_torchscript_bn(info: ModelInfo, bn: str) -> None:
    """Scripted batch norm cannot be switched to batch statistics from outside."""
    if info.source != "torchscript" or bn != "train":
        return
    for m in info.model.modules():
        if "BatchNorm" in str(getattr(m, "original_name", "")) and not is_batchnorm(m):
            raise OperatorError(
                "this TorchScript model's batch norm cannot run with batch statistics here; "
                "use bn='eval', or save the eager model with torch.save(model)"
            )
