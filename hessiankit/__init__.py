"""hessiankit: the local Hessian of back-propagation (Zhang, Chen, Liu; NeurIPS 2018).

A network is a chain of blocks ``z_b = F_b(W_b, z_{b-1})``. Each block's back-matching loss
``l_b = 1/2 ||z_b - eta g_b - F_b(W_b, z_{b-1})||^2`` (a mean over the batch) has a Hessian
w.r.t. the block's weights and w.r.t. its input: the local Hessian. ::

    import hessiankit as hk

    split = hk.split_blocks(model)                     # blocks 1..B
    cap = hk.capture(split, x, y, bn="train")          # one forward + one backward
    op = hk.LocalHessian(cap, 3, wrt="weights")        # Gauss-Newton local Hessian of block 3
    res = hk.spectrum(op, top=10, bottom=1, seed=0)    # eigenvalues, residuals, condition number
    res.condition.kappa, res.top.eigenvalues, res.top.converged
    hk.slq(op, seed=0)                                 # spectral density
    hk.trace(op, seed=0)                               # Hutch++ trace with a standard error

Blocks: :func:`split_blocks`, :func:`capture`. Operators: :class:`LocalHessian` (kinds
``"gauss-newton"``, ``"exact"``), :class:`LossHessian` (the training-loss Hessian other tools
compute), :class:`GGNOperator` (its generalized Gauss-Newton part), :func:`hessian_operator`
(either, by kind), :class:`MatrixOperator`. Solvers:
:func:`spectrum` (auto: dense or Lanczos), :func:`lanczos`, :func:`power_iteration`,
:func:`dense_eigh`, :func:`slq`, :func:`trace` (Hutchinson, Hutch++). Closed forms:
:mod:`hessiankit.analytic`; measured scalar approximations :func:`block_scales`. Training:
:class:`BackMatchingPropagation` (Procedure 1), :class:`ScaleAmendedSGD` (Algorithm 2),
:func:`block_pace` (each block's progress per step). Beyond the paper:
:func:`run_diagnostics` (:mod:`hessiankit.diagnostics`: GGN vs Hessian, outliers, stability).
Data and models: :func:`load_dataset`, :func:`load_model` (safe by default), :func:`vgg`,
:func:`resnet20`.
Pictures: :mod:`hessiankit.plots`, :mod:`hessiankit.report`.

Imports are lazy (PEP 562): ``import hessiankit`` loads no torch; the first use of a name
(``hk.spectrum``) imports the module that defines it, so the command line starts fast and a
script pays only for what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hessiankit._version import __version__
from hessiankit._public import SOLVER_NAMES

if TYPE_CHECKING:  # what the names are, for type checkers and IDEs; imported on first use
    from hessiankit import analytic
    from hessiankit.blocks import Block, BlockCapture, BlockSplit, capture, split_blocks
    from hessiankit.data import load_dataset
    from hessiankit.errors import HessiankitError
    from hessiankit.io import load_model
    from hessiankit.diagnostics import run_diagnostics
    from hessiankit.models import default_model, resnet20, vgg
    from hessiankit.operators import (
        GGNOperator,
        LocalHessian,
        LossHessian,
        MatrixOperator,
        SymmetricOperator,
        hessian_operator,
    )
    from hessiankit.optim import (
        BackMatchingPropagation,
        BlockScale,
        ScaleAmendedSGD,
        block_pace,
        block_param_groups,
        block_scales,
        pace_capture,
    )
    from hessiankit.solvers import (
        ConditionNumber,
        DensityCurve,
        Eigenpairs,
        SpectralDensity,
        SpectrumResult,
        TraceResult,
        dense_eigh,
        hutch_plus_plus,
        hutchinson,
        lanczos,
        power_iteration,
        slq,
        spectrum,
        trace,
    )

#: Public name -> the module that defines it (a module itself when the names are equal).
_LAZY: dict[str, str] = {
    "analytic": "hessiankit.analytic",
    **dict.fromkeys(
        ("Block", "BlockCapture", "BlockSplit", "capture", "split_blocks"), "hessiankit.blocks"
    ),
    "load_dataset": "hessiankit.data",
    "run_diagnostics": "hessiankit.diagnostics",
    "HessiankitError": "hessiankit.errors",
    "load_model": "hessiankit.io",
    "default_model": "hessiankit.models",
    "vgg": "hessiankit.models",
    "resnet20": "hessiankit.models",
    **dict.fromkeys(
        (
            "GGNOperator",
            "LocalHessian",
            "LossHessian",
            "MatrixOperator",
            "SymmetricOperator",
            "hessian_operator",
        ),
        "hessiankit.operators",
    ),
    **dict.fromkeys(
        (
            "BackMatchingPropagation",
            "BlockScale",
            "ScaleAmendedSGD",
            "block_pace",
            "block_param_groups",
            "block_scales",
            "pace_capture",
        ),
        "hessiankit.optim",
    ),
    **dict.fromkeys(SOLVER_NAMES, "hessiankit.solvers"),
}

#: Subpackages reachable as attributes (``hk.operators.X``), imported on first use too.
_SUBPACKAGES = frozenset(
    (
        "analytic",
        "blocks",
        "cli",
        "data",
        "diagnostics",
        "errors",
        "io",
        "models",
        "operators",
        "optim",
        "pipeline",
        "plots",
        "report",
        "resources",
        "solvers",
    )
)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name here."""
    module = _LAZY.get(name)
    if module is None and name in _SUBPACKAGES:
        module = f"hessiankit.{name}"
    if module is None:
        raise AttributeError(f"module 'hessiankit' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module == f"hessiankit.{name}" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBPACKAGES)


__all__ = [
    "BackMatchingPropagation",
    "Block",
    "BlockCapture",
    "BlockScale",
    "BlockSplit",
    "ConditionNumber",
    "DensityCurve",
    "Eigenpairs",
    "GGNOperator",
    "HessiankitError",
    "LocalHessian",
    "LossHessian",
    "MatrixOperator",
    "ScaleAmendedSGD",
    "SpectralDensity",
    "SpectrumResult",
    "SymmetricOperator",
    "TraceResult",
    "__version__",
    "analytic",
    "block_pace",
    "block_param_groups",
    "block_scales",
    "capture",
    "default_model",
    "dense_eigh",
    "hessian_operator",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
    "load_dataset",
    "load_model",
    "pace_capture",
    "power_iteration",
    "resnet20",
    "run_diagnostics",
    "slq",
    "spectrum",
    "split_blocks",
    "trace",
    "vgg",
]
