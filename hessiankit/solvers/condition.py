"""Condition numbers on the range space (paper digest, sections 3 and 7).

``kappa = max|lambda| / min{|lambda| : |lambda| > threshold}`` with
``threshold = rtol * max|lambda|``: the zeros that batch-norm scale invariance, dead ReLUs or
``m < n`` put in a local Hessian are counted (``nullity``), not divided by. ``kappa_plain`` is
the ordinary ratio, given only when the operator is nonsingular.

``kappa_error`` bounds the relative error of ``kappa`` to first order,
``b_max / |lambda_max| + b_min / |lambda_min_nonzero|`` from the two eigenvalues' error bounds. A
condition number whose smallest eigenvalue sits near the dtype's precision floor (float32
products of an ill-conditioned local Hessian) is flagged, not reported as if it were exact.

Example:
    >>> import numpy as np
    >>> from hessiankit.solvers.condition import condition_from_eigenvalues
    >>> c = condition_from_eigenvalues(np.array([0.0, 0.0, 0.5, 2.0]), rtol=1e-10)
    >>> c.kappa, c.rank, c.nullity, c.kappa_plain
    (4.0, 2, 2, None)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hessiankit.solvers.results import ConditionNumber, Eigenpairs

__all__ = [
    "KAPPA_RTOL",
    "ambiguous_zeros",
    "arithmetic_floor",
    "coarser_dtype",
    "default_rank_rtol",
    "iterative_floor",
    "condition_from_eigenvalues",
    "condition_from_extremes",
    "floor_cause",
]

#: A condition number whose relative error bound exceeds this is not reported as converged.
KAPPA_RTOL = 0.1


def arithmetic_floor(dim: int, dtype: torch.dtype, anorm: float) -> float:
    """``10 sqrt(n) eps(dtype) ||A||``: the accuracy an eigenvalue of an operator whose products
    are rounded in ``dtype`` can be trusted to (rounding in length-n inner products grows like
    ``sqrt(n) eps``). It equals the default null threshold, so an eigenvalue the rank counts as
    nonzero is distinguishable from zero by the arithmetic."""
    return 10.0 * math.sqrt(max(dim, 1)) * torch.finfo(dtype).eps * abs(anorm)


def default_rank_rtol(dim: int, dtype: torch.dtype) -> float:
    """Relative threshold below which an eigenvalue counts as zero: ``10 sqrt(n) eps(dtype)``."""
    return 10.0 * math.sqrt(max(dim, 1)) * torch.finfo(dtype).eps


def coarser_dtype(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """The one of two float dtypes with the larger machine epsilon."""
    return a if torch.finfo(a).eps >= torch.finfo(b).eps else b


def iterative_floor(anorm: float, dtype: torch.dtype, basis: torch.dtype = torch.float64) -> float:
    """Accuracy floor of an iterative solver's eigenvalues: ``100 eps ||A||`` with eps the
    coarser of the products' dtype and the storage of its vectors (``basis``)."""
    return 100.0 * torch.finfo(coarser_dtype(dtype, basis)).eps * anorm


def _kappa_check(
    kappa: float | None, rel_error: float, converged: bool, note: str, cause: str
) -> tuple[float | None, bool, str]:
    """Demote a condition number whose error bound is too large, and say why (``cause``)."""
    if kappa is None or rel_error <= KAPPA_RTOL:
        return None if kappa is None else rel_error, converged, note
    why = f"kappa is uncertain by about {100 * min(rel_error, 9.99):.0f}%: {cause}"
    return rel_error, False, _join(note, why)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def floor_cause(value: float, precision: float, low_precision: bool) -> str:
    """Why an eigenvalue near the arithmetic's precision floor leaves kappa uncertain, and the
    remedy: float64 products for float32 runs; for float64 runs, what is left to do."""
    where = (
        f"its smallest nonzero eigenvalue ({value:.3g}) is within a few times the precision "
        f"floor ({precision:.2g}) of the products' arithmetic"
    )
    if low_precision:
        return f"{where}; compute in float64"
    return f"{where}, already float64: count it as zero with a larger rank_rtol=, or accept kappa as an estimate"


def ambiguous_zeros(eigenvalues: np.ndarray, threshold: float) -> np.ndarray:
    """Eigenvalues counted as zero that are too large to be rounding noise of a true zero.

    In float32 a true zero comes out at about ``eps ||A||``, well below the null threshold
    ``10 sqrt(n) eps ||A||``; an eigenvalue within a factor 10 of the threshold may be a real
    small eigenvalue that float64 would count, and divide by.
    """
    mags = np.abs(np.asarray(eigenvalues, dtype=np.float64))
    return mags[(mags > 0.1 * threshold) & (mags <= threshold)]


def _ambiguity_note(found: np.ndarray, amax: float) -> str:
    return (
        f"{found.size} eigenvalue(s) counted as zero lie within a factor 10 of the float32 null "
        f"threshold (largest {float(found.max()):.3g}); if they are not zeros, kappa is up to "
        f"{amax / float(found.min()):.4g}: compute in float64"
    )


def condition_from_eigenvalues(
    eigenvalues: np.ndarray, *, rtol: float, precision: float = 0.0, low_precision: bool = False
) -> ConditionNumber:
    """Condition number from the whole spectrum (dense or exhausted Krylov).

    Args:
        eigenvalues: every eigenvalue of the operator.
        rtol: relative threshold that defines "nonzero".
        precision: absolute error bound of each eigenvalue (enters ``kappa_error``).
        low_precision: the products (or the basis) are rounded coarser than float64: a
            condition number is then not converged while eigenvalues counted as zero sit close
            enough to the null threshold to be real (see :func:`ambiguous_zeros`).
    """
    ev = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    mags = np.abs(ev)
    amax = float(mags.max()) if ev.size else 0.0
    thr = rtol * amax
    nonzero = mags > thr
    rank = int(nonzero.sum())
    if rank == 0:
        return ConditionNumber(
            lambda_max=float(ev[-1]) if ev.size else 0.0,
            lambda_min=float(ev[0]) if ev.size else 0.0,
            lambda_min_nonzero=None,
            rank=0,
            nullity=int(ev.size),
            threshold=thr,
            rtol=rtol,
            kappa=None,
            kappa_plain=None,
            converged=True,
            note="the operator is zero (every eigenvalue is below the threshold)",
        )
    small = ev[nonzero][np.argmin(mags[nonzero])]
    kappa = amax / float(abs(small))
    err, conv, note = _kappa_check(
        kappa,
        precision / amax + precision / abs(small),
        True,
        "",
        floor_cause(float(abs(small)), precision, low_precision),
    )
    found = ambiguous_zeros(ev, thr) if low_precision else np.zeros(0)
    if found.size:
        conv, note = False, _join(note, _ambiguity_note(found, amax))
    return ConditionNumber(
        lambda_max=float(ev[-1]),
        lambda_min=float(ev[0]),
        lambda_min_nonzero=float(small),
        rank=rank,
        nullity=int(ev.size - rank),
        threshold=thr,
        rtol=rtol,
        kappa=kappa,
        kappa_plain=kappa if rank == ev.size else None,
        converged=conv,
        note=note,
        kappa_error=err,
    )


def condition_from_extremes(
    top: Eigenpairs,
    bottom: Eigenpairs,
    *,
    rtol: float,
    anorm: float,
    range_start: bool,
    psd: bool | None,
    cause: str = "the error bounds of its eigenvalues are wide",
    ritz_values: np.ndarray | None = None,
    low_precision: bool = False,
) -> ConditionNumber:
    """Condition number from the extreme eigenvalues an iterative solver found.

    ``cause`` says why the eigenvalues' bounds are wide (the solver knows: budget, cluster,
    precision floor). With ``low_precision`` and the solver's ``ritz_values``, Ritz values
    counted as zero but close to the null threshold leave kappa unconverged (see
    :func:`ambiguous_zeros`).

    Rank and nullity stay unknown. From a range start on a PSD operator, ``bottom`` holds the
    smallest nonzero eigenvalues, which is what ``kappa`` needs. For an indefinite operator the
    smallest magnitude is interior to the spectrum, which extreme-eigenvalue solvers do not
    reach: ``kappa`` is then given only if the operator is definite.
    """
    thr = rtol * anorm
    lmax = float(top.eigenvalues[0]) if len(top) else float("nan")
    conv_top = bool(top.converged[0]) if len(top) else False
    if not len(bottom):
        return ConditionNumber(
            lmax,
            None,
            None,
            None,
            None,
            thr,
            rtol,
            None,
            None,
            False,
            note="no smallest eigenvalue was computed (bottom=0)",
        )
    lmin = float(bottom.eigenvalues[0])
    conv = conv_top and bool(bottom.converged[0])
    amax = max(abs(lmax), abs(lmin))
    b_top = float(top.error_bounds[0]) if len(top) else 0.0
    b_bot = float(bottom.error_bounds[0])
    if range_start and psd:
        kappa = amax / lmin if lmin > thr else None
        err, ok, note = _kappa_check(
            kappa,
            b_top / max(abs(lmax), 1e-300) + b_bot / max(abs(lmin), 1e-300),
            conv and kappa is not None,
            "rank unknown: an iterative solver does not count zeros",
            cause,
        )
        found = (
            ambiguous_zeros(ritz_values, thr)
            if low_precision and ritz_values is not None
            else np.zeros(0)
        )
        if found.size and kappa is not None:
            ok, note = False, _join(note, _ambiguity_note(found, amax))
        return ConditionNumber(
            lmax,
            None,
            lmin if lmin > thr else None,
            None,
            None,
            thr,
            rtol,
            kappa,
            None,
            ok,
            note=note,
            kappa_error=err,
        )
    if lmin > thr or lmax < -thr:  # definite: the extremes bound every magnitude
        small = min(abs(lmax), abs(lmin))
        kappa = amax / small
        b_small = b_bot if abs(lmin) <= abs(lmax) else b_top
        err, ok, note = _kappa_check(
            kappa, (b_top + b_bot) / amax + b_small / small, conv, "", cause
        )
        return ConditionNumber(
            lmax,
            lmin,
            lmin if lmin > thr else lmax,
            None,
            None,
            thr,
            rtol,
            kappa,
            kappa,
            ok,
            note=note,
            kappa_error=err,
        )
    note = (
        "the smallest eigenvalue is zero or negative; the smallest nonzero magnitude is "
        "interior to the spectrum (use method 'dense', or a PSD kind)"
    )
    return ConditionNumber(lmax, lmin, None, None, None, thr, rtol, None, None, False, note=note)
