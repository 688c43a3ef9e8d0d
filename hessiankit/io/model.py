"""Load a model a colleague sent, without running its code unless the user says so.

Four sources, tried in this order:

``arch="package.module:factory"`` (+ optional state-dict file)
    imports the user's own installed code, calls ``factory()`` and loads the file's tensors
    into it (``load_state_dict(strict=True)``). The file is read safely; it may hold a state
    dict, a checkpoint dict with ``"state_dict"`` / ``"model_state_dict"`` / ``"model"``, or a
    whole ``torch.nn`` model.
TorchScript archive (``torch.jit.save``), only with ``trust_torchscript=True``
    loaded with ``torch.jit.load``, which **runs the archive's compiled code**: every
    ``__setstate__`` method while loading, its ``forward`` on every product. TorchScript cannot
    call arbitrary Python, but it can call ``torch.save`` (``aten::save``: write any file) and
    ``torch.from_file`` (``aten::from_file``: read or map any file). Without the opt-in the
    archive is refused after reading only its zip directory and code text (nothing loaded).
    Blocks are found when the scripted model is a (nested) ``Sequential``: its layers are traced
    as leaves.
``torch.save(model)`` whose classes all come from ``torch.nn``
    loaded with ``torch.load(weights_only=True)`` and an allow-list of ``torch.nn`` classes.
    A class from elsewhere, or a callable that runs code (a payload), stops loading with a
    one-line error naming it.
``trust_pickle=True``
    plain ``torch.load(weights_only=False)``: **runs the file's code**. Only for files you made
    or trust; the classes it names must be importable.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hessiankit.errors import ModelLoadError
from hessiankit.io.sniff import (
    DEFAULT_MAX_INPUT_BYTES,
    check_declared_size,
    is_torchscript,
    readable_file,
)
from hessiankit.io.torchfile import read_torch_file, torchscript_refusal

__all__ = ["LoadedModel", "is_torchscript", "load_arch", "load_model", "unscript"]

_FIX = (
    "pass trust_pickle=True if you trust the file (it runs the file's code), or rebuild the model "
    "with arch=package.module:factory and a state dict"
)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A loaded network and how it was loaded (``"torch.nn"``, ``"trusted pickle"``,
    ``"torchscript"``, ``"arch"``)."""

    model: nn.Module
    source: str
    path: str | None


def load_model(
    path: str | Path | None,
    *,
    trust_pickle: bool = False,
    trust_torchscript: bool = False,
    arch: str | None = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> LoadedModel:
    """Load a model file (see the module docstring for the sources and their safety).

    Args:
        path: the model file (a state dict with ``arch``; may be ``None`` with ``arch``).
        trust_pickle: unpickle anything (runs the file's code).
        trust_torchscript: load a TorchScript archive (runs its compiled code).
        arch: ``package.module:factory`` building the model the state dict fits.
        max_input_bytes: cap on the bytes the file declares (its tensors).

    Raises:
        ModelLoadError: missing, unreadable, oversized or damaged file, payload pickle, class
            outside ``torch.nn`` without ``trust_pickle``, TorchScript without
            ``trust_torchscript``, a state dict without ``arch``, a bad factory, or tensors
            without data (meta device).
    """
    if arch is not None:
        model = load_arch(arch, path, max_input_bytes=max_input_bytes)
        return LoadedModel(_checked(model, arch), "arch", None if path is None else str(path))
    if path is None:
        raise ModelLoadError("no model given; pass a model file or arch=package.module:factory")
    p = readable_file(path, ModelLoadError, "model file")
    if is_torchscript(p):
        if not trust_torchscript:
            raise ModelLoadError(torchscript_refusal(p))
        check_declared_size(p, max_input_bytes, ModelLoadError, "model file")
        try:
            scripted = torch.jit.load(str(p), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - a damaged archive: torch raises many kinds
            raise ModelLoadError(
                f"{p.name} is a damaged TorchScript archive ({_line(exc)})"
            ) from None
        return LoadedModel(_checked(unscript(scripted, p.name), p.name), "torchscript", str(p))
    obj = read_torch_file(p, trust=trust_pickle, fix=_FIX, max_bytes=max_input_bytes)
    if isinstance(obj, nn.Module):
        return LoadedModel(
            _checked(obj, p.name), "trusted pickle" if trust_pickle else "torch.nn", str(p)
        )
    if isinstance(obj, dict) and _state_dict_of(obj) is not None:
        raise ModelLoadError(
            f"{p.name} holds a state dict, not a model; give the architecture with "
            "arch=package.module:factory"
        )
    raise ModelLoadError(
        f"{p.name} holds a {type(obj).__name__} object, not a model; save it with torch.save(model)"
    )


def _checked(model: nn.Module, name: str) -> nn.Module:
    """Refuse a model whose tensors hold no data (meta device) or are sparse.

    Tied tensors (one ``nn.Parameter`` under several names) are fine: each block takes the
    tensor once, by its first name (:func:`hessiankit.blocks.split.split_blocks`).
    """
    tensors: list[tuple[str, torch.Tensor]] = [*model.named_parameters(), *model.named_buffers()]
    for key, tensor in tensors:
        if tensor.is_meta:
            raise ModelLoadError(
                f"{name}: tensor {key!r} is on the meta device (shapes without data); save "
                "the model after its weights are materialised"
            )
        if tensor.layout != torch.strided:
            raise ModelLoadError(
                f"{name}: tensor {key!r} is {str(tensor.layout).replace('torch.', '')}; save dense "
                "weights (t.to_dense())"
            )
    return model


def load_arch(
    spec: str, path: str | Path | None, *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> nn.Module:
    """``factory()`` from ``package.module:factory``, with the tensors of ``path`` loaded in.

    This imports and runs the named module: the user's own code, chosen explicitly.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelLoadError(f"arch={spec} is not of the form package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"cannot import {module_name!r} for arch= ({_line(exc)}); install it or add it to "
            "PYTHONPATH"
        ) from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)  # type: ignore[assignment]
        if factory is None:
            raise ModelLoadError(f"module {module_name!r} has no {attr!r}; check arch={spec}")
    if not callable(factory):
        raise ModelLoadError(f"arch={spec} is not callable; name a class or a function")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"arch={spec} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    if path is None:
        return model
    p = readable_file(path, ModelLoadError, "state dict file")
    obj = read_torch_file(
        p,
        fix="save the weights with torch.save(model.state_dict(), path)",
        max_bytes=max_input_bytes,
    )
    state = obj.state_dict() if isinstance(obj, nn.Module) else _state_dict_of(obj)
    if state is None:
        raise ModelLoadError(
            f"{p.name} holds no state dict (a dict of tensors); save model.state_dict()"
        )
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that differ
        raise ModelLoadError(
            f"the state dict in {p.name} does not fit arch={spec} ({_line(exc)}); check that "
            "the factory builds the same architecture"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        what = (
            f"lacks {result.missing_keys[0]!r}"
            if result.missing_keys
            else f"has {result.unexpected_keys[0]!r}, which the architecture does not"
        )
        n = len(result.missing_keys) + len(result.unexpected_keys)
        raise ModelLoadError(
            f"the state dict in {p.name} does not fit arch={spec}: it {what} ({n} keys differ); "
            "check that the factory builds the same architecture"
        )
    return model


def unscript(module: nn.Module, name: str) -> nn.Module:
    """A traceable stand-in for a scripted (nested) ``Sequential``: eager containers, scripted
    leaves. Other TorchScript models have no blocks hessiankit can find.

    Raises:
        ModelLoadError: the scripted model is not a Sequential.
    """
    if not isinstance(module, torch.jit.ScriptModule):
        return module
    if getattr(module, "original_name", "") == "Sequential":
        return nn.Sequential(*[unscript(c, name) for _, c in module.named_children()])
    if not any(True for _ in module.children()):
        return module  # a scripted layer: traced as one opaque module
    raise ModelLoadError(
        f"{name} is a TorchScript {getattr(module, 'original_name', 'module')} whose blocks cannot "
        "be found (only scripted Sequential models can be split); save the eager model with "
        "torch.save(model), or use arch= with a state dict"
    )


def _state_dict_of(obj: object) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict):
        if obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
            return obj
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                return inner.state_dict()
            if isinstance(inner, dict):
                found = _state_dict_of(inner)
                if found is not None:
                    return found
    return None


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
