"""Solvers: they only know a symmetric ``matmat``; results are frozen dataclasses."""

from hessiankit.solvers.blockwise import blockwise_spectra
from hessiankit.solvers.condition import condition_from_eigenvalues, condition_from_extremes
from hessiankit.solvers.dense import DenseResult, dense_eigh
from hessiankit.solvers.lanczos import KrylovResult, LanczosIteration, default_rank_rtol, lanczos
from hessiankit.solvers.power import PowerResult, power_iteration
from hessiankit.solvers.slq import DensityCurve, SpectralDensity, slq
from hessiankit.solvers.results import ConditionNumber, Eigenpairs, SpectrumResult
from hessiankit.solvers.spectrum import Method, spectrum
from hessiankit.solvers.trace import TraceResult, hutch_plus_plus, hutchinson, trace

__all__ = [
    "ConditionNumber",
    "DenseResult",
    "DensityCurve",
    "Eigenpairs",
    "KrylovResult",
    "LanczosIteration",
    "Method",
    "PowerResult",
    "SpectralDensity",
    "SpectrumResult",
    "TraceResult",
    "blockwise_spectra",
    "condition_from_eigenvalues",
    "condition_from_extremes",
    "default_rank_rtol",
    "dense_eigh",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
    "power_iteration",
    "slq",
    "spectrum",
    "trace",
]
