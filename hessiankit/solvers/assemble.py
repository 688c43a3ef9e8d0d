"""One place that turns a solver's raw output into a :class:`SpectrumResult`: error bounds
raised to the arithmetic floor, the condition number, and the note naming why anything did
not converge. Used by :func:`~hessiankit.solvers.spectrum.spectrum` (dense, Lanczos, power)
and :func:`~hessiankit.solvers.blockwise.blockwise_spectra`."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.condition import (
    arithmetic_floor,
    condition_from_eigenvalues,
    condition_from_extremes,
    floor_cause,
)
from hessiankit.solvers.diagnosis import unconverged_cause
from hessiankit.solvers.results import (
    ConditionNumber,
    DenseResult,
    Eigenpairs,
    KrylovResult,
    SpectrumResult,
)

__all__ = ["RunFacts", "dtype_name", "floored", "from_dense", "from_krylov", "is_low_precision"]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class RunFacts:
    """What every route's :class:`SpectrumResult` records about the run itself, whatever solved it.

    Attributes:
        dimension: the operator's dimension n.
        dtype: the dtype of its products.
        psd: whether it declares itself positive semi-definite.
        tol: the relative tolerance asked for.
        num_products: operator products (columns) the run used.
        seconds: wall time of the run.
        operator: the operator's own description.
    """

    dimension: int
    dtype: torch.dtype
    psd: bool
    tol: float
    num_products: int
    seconds: float
    operator: dict[str, object]

    @classmethod
    def measure(
        cls,
        op: SymmetricOperator,
        *,
        tol: float,
        before: int,
        start: float,
        operator: dict[str, object],
    ) -> RunFacts:
        """The facts of a run on ``op`` that began at ``time.perf_counter() == start`` with
        ``op.num_products == before`` and ends now."""
        seconds = time.perf_counter() - start
        return cls(
            op.dim, op.dtype, op.is_psd is True, tol, op.num_products - before, seconds, operator
        )

    def result(
        self,
        method: str,
        seed: int | None,
        top: Eigenpairs,
        bottom: Eigenpairs,
        condition: ConditionNumber,
        precision: float,
    ) -> SpectrumResult:
        """The :class:`SpectrumResult` of these facts and what the route found (its other fields
        at their defaults; set them with :func:`dataclasses.replace`)."""
        # Positional in the field order of SpectrumResult: the run's facts around what was found.
        return SpectrumResult(
            method,
            self.dimension,
            dtype_name(self.dtype),
            seed,
            self.tol,
            top,
            bottom,
            condition,
            self.num_products,
            self.seconds,
            precision,
            operator=self.operator,
        )


def is_low_precision(*dtypes: torch.dtype | str) -> bool:
    """Whether any of the dtypes rounds coarser than float64 (float32 products or basis)."""
    eps64 = torch.finfo(torch.float64).eps
    for d in dtypes:
        dt = getattr(torch, d) if isinstance(d, str) else d
        if torch.finfo(dt).eps > eps64:
            return True
    return False


def floored(p: Eigenpairs, precision: float) -> Eigenpairs:
    """Error bounds raised to the arithmetic floor (an iterative solver's own floor can be lower)."""
    if not len(p):
        return p
    return Eigenpairs.build(
        p.which,
        p.eigenvalues,
        p.residuals,
        np.maximum(p.error_bounds, precision),
        p.converged,
        p.eigenvectors,
    )


def _smallest(bottom: Eigenpairs, anorm: float) -> float:
    return float(np.abs(bottom.eigenvalues).min()) if len(bottom) else anorm


def _with_cause(cond: ConditionNumber, cause: str) -> ConditionNumber:
    """Name the cause in the note of a condition number whose eigenvalues did not converge."""
    if not cause or cause in cond.note:
        return cond
    note = "; ".join(p for p in (cond.note, f"not converged: {cause}") if p)
    return replace(cond, converged=False, note=note)


#: What a Krylov run reports about itself, copied into its ``SpectrumResult`` under the same names.
_RUN_FACTS = (
    "breakdowns",
    "exhausted",
    "basis_dtype",
    "basis_bytes",
    "max_basis_bytes",
    "restarts",
    "block_size",
)


def from_krylov(
    kr: KrylovResult, facts: RunFacts, *, seed: int, method_reason: str = ""
) -> SpectrumResult:
    """A Lanczos run's :class:`KrylovResult` as a :class:`SpectrumResult`."""
    n, dtype, psd = facts.dimension, facts.dtype, facts.psd
    rtol = kr.rank_rtol
    # A float32 basis rounds like float32 products: the floor takes the coarser eps.
    floors = [arithmetic_floor(n, dtype, kr.anorm)]
    if kr.basis_dtype == "float32":
        floors.append(arithmetic_floor(n, torch.float32, kr.anorm))
    precision = max(kr.precision, *floors)
    low = is_low_precision(dtype, kr.basis_dtype)
    top, bottom = floored(kr.top, precision), floored(kr.bottom, precision)
    cause = unconverged_cause(
        top,
        bottom,
        tol=facts.tol,
        precision=precision,
        low_precision=low,
        products=kr.num_products,
        budget=kr.budget,
        dim=n,
        block_size=kr.block_size,
        start_cost=kr.block_size if kr.range_start else 0,
    )
    if kr.exhausted:
        cond = condition_from_eigenvalues(
            kr.ritz_values, rtol=rtol, precision=precision, low_precision=low
        )
        all_ev: np.ndarray | None = kr.ritz_values
    else:
        cond = condition_from_extremes(
            top,
            bottom,
            rtol=rtol,
            anorm=kr.anorm,
            range_start=kr.range_start,
            psd=psd,
            # every pair converged yet kappa is uncertain: the bounds sit at the floor
            cause=cause or floor_cause(_smallest(bottom, kr.anorm), precision, low),
            ritz_values=kr.ritz_values,
            low_precision=low,
        )
        cond = _with_cause(cond, cause)
        all_ev = None
    return replace(
        facts.result("lanczos", seed, top, bottom, cond, precision),
        eigenvalues=all_ev,
        bottom_on_range=kr.range_start and psd,
        method_reason=method_reason,
        **{name: getattr(kr, name) for name in _RUN_FACTS},
    )


def from_dense(
    d: DenseResult,
    facts: RunFacts,
    *,
    top: int,
    bottom: int,
    rtol: float,
    auto_rtol: bool,
    keep_vectors: bool,
    method_reason: str = "",
) -> SpectrumResult:
    """A dense eigendecomposition as a :class:`SpectrumResult`."""
    ev = d.eigenvalues.cpu().numpy()
    res = d.residuals.cpu().numpy()
    anorm = float(np.abs(ev).max()) if ev.size else 0.0
    if auto_rtol and anorm > 0:
        # Eigenvalues within the measured precision of zero cannot be told from it (batch-norm
        # null directions come out at 1e-14..1e-11 relative in float64, above 10 sqrt(n) eps).
        rtol = max(rtol, d.precision / anorm)
    top_idx = np.arange(ev.size - 1, ev.size - 1 - top, -1)
    candidates = np.arange(ev.size)
    if facts.psd:
        candidates = candidates[np.abs(ev) > rtol * anorm]
    bot_idx = candidates[:bottom]

    def pairs(which: Literal["top", "bottom"], idx: np.ndarray) -> Eigenpairs:
        vecs = d.eigenvectors[:, torch.as_tensor(idx, dtype=torch.long)] if keep_vectors else None
        return Eigenpairs.build(
            which, ev[idx], res[idx], res[idx] + d.precision, np.ones(idx.size, bool), vecs
        )

    low = is_low_precision(facts.dtype)
    cond = condition_from_eigenvalues(ev, rtol=rtol, precision=d.precision, low_precision=low)
    found = facts.result(
        "dense", None, pairs("top", top_idx), pairs("bottom", bot_idx), cond, d.precision
    )
    return replace(
        found,
        exhausted=True,
        eigenvalues=ev,
        bottom_on_range=facts.psd,
        method_reason=method_reason,
    )
