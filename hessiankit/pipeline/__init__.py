"""One pipeline for every entry point: load, capture, build operators, solve every block.

Two calls: :func:`prepare` loads the model and data, splits the network into blocks, captures
every batch and returns :class:`Prepared` (with ``make(block)``, the block's operator over all
the data); :func:`run_blocks` solves the requested blocks (:func:`solve_block` each) and
returns :class:`BlockResult` records. Nothing here prints: notes come back as data and
progress goes to a :class:`Progress` observer. Options are frozen dataclasses of plain values
(:class:`ModelSource`, :class:`DataOptions`, :class:`OperatorOptions`, :class:`SolverOptions`).

Example:
    >>> from hessiankit.pipeline import DataOptions, SolverOptions, prepare, run_blocks
    >>> p = prepare(data=DataOptions(dataset="synthetic", batch_size=8))
    >>> [r] = run_blocks(p, [4], SolverOptions(top=2))
    >>> r.index, r.spectrum.method, r.spectrum.condition.converged
    (4, 'dense', True)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use (PEP 562): the command line's parser needs none
    from hessiankit.pipeline.data import Batches, load_batches
    from hessiankit.pipeline.model import ModelInfo, check_torchscript_bn, open_model
    from hessiankit.pipeline.options import (
        DataOptions,
        ModelSource,
        OperatorOptions,
        SolverOptions,
    )
    from hessiankit.pipeline.prepare import Prepared, prepare, resolve_device, resolve_dtype
    from hessiankit.pipeline.progress import Progress
    from hessiankit.pipeline.run import (
        BlockOperators,
        BlockResult,
        block_operators,
        run_blocks,
        select_blocks,
        solve_one,
    )
    from hessiankit.pipeline.solve import Budgets, budgets, solve_block
    from hessiankit.pipeline.world import World

#: Public name -> the submodule that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("Batches", "load_batches"), "data"),
    **dict.fromkeys(("ModelInfo", "check_torchscript_bn", "open_model"), "model"),
    **dict.fromkeys(("DataOptions", "ModelSource", "OperatorOptions", "SolverOptions"), "options"),
    **dict.fromkeys(("Prepared", "prepare", "resolve_device", "resolve_dtype"), "prepare"),
    "Progress": "progress",
    **dict.fromkeys(
        (
            "BlockOperators",
            "BlockResult",
            "block_operators",
            "run_blocks",
            "select_blocks",
            "solve_one",
        ),
        "run",
    ),
    **dict.fromkeys(("Budgets", "budgets", "solve_block"), "solve"),
    "World": "world",
}


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use (PEP 562) and keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hessiankit.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hessiankit.pipeline.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``prepare`` names a submodule and the function it defines: importing the submodule
    (which sets the package attribute) must not hide the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "Batches",
    "BlockOperators",
    "BlockResult",
    "Budgets",
    "DataOptions",
    "ModelInfo",
    "ModelSource",
    "OperatorOptions",
    "Prepared",
    "Progress",
    "SolverOptions",
    "World",
    "block_operators",
    "budgets",
    "check_torchscript_bn",
    "load_batches",
    "open_model",
    "prepare",
    "resolve_device",
    "resolve_dtype",
    "run_blocks",
    "select_blocks",
    "solve_block",
    "solve_one",
]
