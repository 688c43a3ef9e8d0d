"""Names the top-level package re-exports from :mod:`hessiankit.solvers` (lazily, on first
use): listed once here, read by both ``hessiankit/__init__.py`` and the solvers' ``__all__``.
Importing this module costs nothing (no torch)."""

from __future__ import annotations

__all__ = ["SOLVER_NAMES"]

SOLVER_NAMES: tuple[str, ...] = (
    "ConditionNumber",
    "DensityCurve",
    "Eigenpairs",
    "SpectralDensity",
    "SpectrumResult",
    "TraceResult",
    "dense_eigh",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
    "power_iteration",
    "slq",
    "spectrum",
    "trace",
)
