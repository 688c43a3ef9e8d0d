"""Condition numbers on the range space (paper digest, sections 3 and 7).

``kappa = max|lambda| / min{|lambda| : |lambda| > threshold}`` with
``threshold = rtol * max|lambda|``: the zeros that batch-norm scale invariance, dead ReLUs or
``m < n`` put in a local Hessian are counted (``nullity``), not divided by. ``kappa_plain`` is
the ordinary ratio, given only when the operator is nonsingular.

Example:
    >>> import numpy as np
    >>> from hessiankit.solvers.condition import condition_from_eigenvalues
    >>> c = condition_from_eigenvalues(np.array([0.0, 0.0, 0.5, 2.0]), rtol=1e-10)
    >>> c.kappa, c.rank, c.nullity, c.kappa_plain
    (4.0, 2, 2, None)
"""

from __future__ import annotations

import numpy as np

from hessiankit.solvers.results import ConditionNumber, Eigenpairs

__all__ = ["condition_from_eigenvalues", "condition_from_extremes"]


def condition_from_eigenvalues(eigenvalues: np.ndarray, *, rtol: float) -> ConditionNumber:
    """Condition number from the whole spectrum (dense or exhausted Krylov)."""
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
        converged=True,
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
        return ConditionNumber(lmax, None, None, None, None, thr, rtol, None, None, False,
                               note="no smallest eigenvalue was computed (bottom=0)")
    lmin = float(bottom.eigenvalues[0])
    conv = conv_top and bool(bottom.converged[0])
    amax = max(abs(lmax), abs(lmin))
    if range_start and psd:
        kappa = amax / lmin if lmin > thr else None
        return ConditionNumber(lmax, None, lmin if lmin > thr else None, None, None, thr, rtol,
                               kappa, None, conv and kappa is not None,
                               note="rank unknown: an iterative solver does not count zeros")
    if lmin > thr or lmax < -thr:  # definite: the extremes bound every magnitude
        small = min(abs(lmax), abs(lmin))
        kappa = amax / small
        return ConditionNumber(lmax, lmin, lmin if lmin > thr else lmax, None, None, thr, rtol,
                               kappa, kappa, conv)
    note = (
        "the smallest eigenvalue is zero or negative; the smallest nonzero magnitude is "
        "interior to the spectrum (use method 'dense', or a PSD kind)"
    )
    return ConditionNumber(lmax, lmin, None, None, None, thr, rtol, None, None, False, note=note)
