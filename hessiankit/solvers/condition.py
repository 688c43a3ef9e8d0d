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
    "arithmetic_floor",
    "condition_from_eigenvalues",
    "condition_from_extremes",
]

#: A condition number whose relative error bound exceeds this is not reported as converged.
KAPPA_RTOL = 0.1


def arithmetic_floor(dim: int, dtype: torch.dtype, anorm: float) -> float:
    """``10 sqrt(n) eps(dtype) ||A||``: the accuracy an eigenvalue of an operator whose products
    are rounded in ``dtype`` can be trusted to (rounding in length-n inner products grows like
    ``sqrt(n) eps``). It equals the default null threshold, so an eigenvalue the rank counts as
    nonzero is distinguishable from zero by the arithmetic."""
    return 10.0 * math.sqrt(max(dim, 1)) * torch.finfo(dtype).eps * abs(anorm)


def _kappa_check(
    kappa: float | None, rel_error: float, converged: bool, note: str
) -> tuple[float | None, bool, str]:
    """Demote a condition number whose error bound is too large, and say why."""
    if kappa is None or rel_error <= KAPPA_RTOL:
        return None if kappa is None else rel_error, converged, note
    why = (
        f"kappa is uncertain by about {100 * min(rel_error, 9.99):.0f}%: its smallest eigenvalue "
        "is near the precision floor of the products' dtype; use float64"
    )
    return rel_error, False, f"{note}; {why}" if note else why


def condition_from_eigenvalues(
    eigenvalues: np.ndarray, *, rtol: float, precision: float = 0.0
) -> ConditionNumber:
    """Condition number from the whole spectrum (dense or exhausted Krylov).

    Args:
        eigenvalues: every eigenvalue of the operator.
        rtol: relative threshold that defines "nonzero".
        precision: absolute error bound of each eigenvalue (enters ``kappa_error``).
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
    err, conv, note = _kappa_check(kappa, precision / amax + precision / abs(small), True, "")
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
) -> ConditionNumber:
    """Condition number from the extreme eigenvalues an iterative solver found.

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
        )
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
        err, ok, note = _kappa_check(kappa, (b_top + b_bot) / amax + b_small / small, conv, "")
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
