"""Why an iterative solver's eigenvalues did not converge, and what to change: the note a
result carries names the real cause (product budget, cluster or small gap, precision floor)
and the remedy in parameter names (``max_products=``, ``block_size=``, ``tol=``)."""

from __future__ import annotations

import numpy as np

from hessiankit.solvers.condition import floor_cause
from hessiankit.solvers.results import Eigenpairs

__all__ = ["unconverged_cause"]


def unconverged_cause(
    top: Eigenpairs,
    bottom: Eigenpairs,
    *,
    tol: float,
    precision: float,
    low_precision: bool,
    products: int,
    budget: int,
    dim: int,
    block_size: int,
    start_cost: int,
    budget_name: str = "max_products",
) -> str:
    """The cause of the unconverged pairs in ``top`` and ``bottom`` ("" when all converged).

    A pair whose bound sits at the precision floor while the tolerance asks for less is
    floor-limited; one whose bound equals its residual had a neighbour within that residual
    (Parlett's refined bound needs a gap larger than the residual): a cluster or small gap.
    Otherwise the run simply stopped early: the budget.

    Example:
        >>> e = Eigenpairs.build("top", [1.0], [1e-3], [1e-3], [False])
        >>> unconverged_cause(e, Eigenpairs.empty("bottom"), tol=1e-6, precision=1e-14,
        ...     low_precision=False, products=300, budget=300, dim=5000, block_size=1,
        ...     start_cost=0)[:58]
        'the product budget (max_products=300) ran out before 1 of '
    """
    values = np.concatenate([top.eigenvalues, bottom.eigenvalues])
    res = np.concatenate([top.residuals, bottom.residuals])
    bounds = np.concatenate([top.error_bounds, bottom.error_bounds])
    bad = ~np.concatenate([top.converged, bottom.converged])
    if not bad.any():
        return ""
    floor_limited = (bounds <= 2.0 * precision) & (tol * np.abs(values) < precision)
    if bool(floor_limited[bad].all()):
        smallest = float(np.abs(values[bad]).min())
        return floor_cause(smallest, precision, low_precision)
    k, wanted = int(bad.sum()), int(bad.size)
    cluster = bool((bounds[bad & ~floor_limited] >= res[bad & ~floor_limited]).any())
    spent = products + block_size > budget
    what = f"{k} of {wanted} wanted eigenvalues"
    if spent:
        head = f"the product budget ({budget_name}={budget}) ran out before {what} converged"
    else:
        head = f"{what} did not converge"
    remedies = []
    if cluster:
        head += " (a neighbour within their residual: a cluster or a small gap)"
        remedies.append(f"raise block_size= (now {block_size}) to the cluster's size")
    if spent:
        remedies.append(
            f"raise {budget_name}= ({dim + start_cost} exhausts the space and gives every "
            "eigenvalue exactly) or use method='dense' when it fits in memory"
        )
    else:
        remedies.append("loosen tol= or ask for fewer eigenvalues")
    return f"{head}: {'; '.join(remedies)}"
