"""Solvers: they only know a symmetric ``matmat``; results are frozen dataclasses.

Modules: :mod:`~hessiankit.solvers.spectrum` (the entry point), :mod:`~.policy` (which route
``method="auto"`` takes), :mod:`~.dense`, :mod:`~.lanczos` (driver) with
:mod:`~.lanczos_iteration`, :mod:`~.krylov_basis`, :mod:`~.ritz` and
:mod:`~.lanczos_checkpoint`, :mod:`~.blockwise`, :mod:`~.power`, :mod:`~.slq`,
:mod:`~.trace`; :mod:`~.condition` and :mod:`~.diagnosis` (kappa and why it did not converge),
:mod:`~.assemble` (results from raw solver output), :mod:`~.results` (every result type).
"""

from hessiankit.solvers import results as _results
from hessiankit.solvers.blockwise import blockwise_spectra
from hessiankit.solvers.condition import condition_from_eigenvalues, condition_from_extremes
from hessiankit.solvers.dense import dense_eigh
from hessiankit.solvers.lanczos import LanczosIteration, default_rank_rtol, lanczos
from hessiankit.solvers.power import power_iteration
from hessiankit.solvers.slq import slq
from hessiankit.solvers.results import *  # noqa: F403 (every result type, re-exported)
from hessiankit.solvers.policy import MethodChoice, choose_method
from hessiankit.solvers.spectrum import Method, spectrum
from hessiankit.solvers.trace import hutch_plus_plus, hutchinson, trace

# Every result type (solvers.results), then the solvers and their helpers.
__all__ = [
    "LanczosIteration",
    "Method",
    "MethodChoice",
    "blockwise_spectra",
    "choose_method",
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
__all__ += _results.__all__
