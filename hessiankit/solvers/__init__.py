"""Solvers: they only know a symmetric ``matmat``; results are frozen dataclasses.

Modules: :mod:`~hessiankit.solvers.spectrum` (the entry point), :mod:`~.policy` (which route
``method="auto"`` takes), :mod:`~.dense`, :mod:`~.lanczos` (driver) with
:mod:`~.lanczos_iteration`, :mod:`~.krylov_basis`, :mod:`~.ritz` and
:mod:`~.lanczos_checkpoint`, :mod:`~.blockwise`, :mod:`~.power`, :mod:`~.slq`,
:mod:`~.trace`; :mod:`~.condition` and :mod:`~.diagnosis` (kappa and why it did not converge),
:mod:`~.assemble` (results from raw solver output), :mod:`~.results` (every result type).
"""

from hessiankit._public import SOLVER_NAMES
from hessiankit.solvers import results as _results
from hessiankit.solvers.blockwise import blockwise_spectra as blockwise_spectra
from hessiankit.solvers.condition import (
    condition_from_eigenvalues as condition_from_eigenvalues,
    condition_from_extremes as condition_from_extremes,
)
from hessiankit.solvers.dense import dense_eigh as dense_eigh
from hessiankit.solvers.lanczos import (
    LanczosIteration as LanczosIteration,
    default_rank_rtol as default_rank_rtol,
    lanczos as lanczos,
)
from hessiankit.solvers.power import power_iteration as power_iteration
from hessiankit.solvers.slq import slq as slq
from hessiankit.solvers.results import *  # noqa: F403 (every result type, re-exported)
from hessiankit.solvers.policy import (
    MethodChoice as MethodChoice,
    choose_method as choose_method,
)
from hessiankit.solvers.spectrum import (
    Method as Method,
    spectrum as spectrum,
)
from hessiankit.solvers.trace import (
    hutch_plus_plus as hutch_plus_plus,
    hutchinson as hutchinson,
    trace as trace,
)

# Every result type (solvers.results), the solvers the top level re-exports, their helpers;
# the imports say "X as X" so type checkers see them re-exported.
__all__ = sorted(
    {
        *_results.__all__,
        *SOLVER_NAMES,
        "LanczosIteration",
        "Method",
        "MethodChoice",
        "blockwise_spectra",
        "choose_method",
        "condition_from_eigenvalues",
        "condition_from_extremes",
        "default_rank_rtol",
    }
)
