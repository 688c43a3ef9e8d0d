"""THE per-block solve: every entry point's eigenvalues of one block come from :func:`solve_block`.

It delegates the choice of solver to :func:`hessiankit.spectrum` (``method="auto"``: the exact
structured route for separable blocks, dense ``eigh`` where it is cheaper than a Krylov run,
block Lanczos otherwise) with the memory budgets of
:mod:`hessiankit.resources`. One fast path is added here: the top of a loss Hessian by
Lanczos starts from the loss gradient (``start=``), which lies mostly in the top eigenspace
(Gur-Ari, Roberts and Dyer, 2018), so fewer products reach the same answer.

Where to wire in more structure: :func:`hessiankit.spectrum`'s policy; :func:`solve_block`
is the one place the pipeline calls it.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.pipeline import SolverOptions, solve_block
    >>> A = MatrixOperator(torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64)), is_psd=True)
    >>> r = solve_block(A, SolverOptions(top=1, bottom=1))
    >>> r.method, r.condition.kappa
    ('dense', 4.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hessiankit.operators.base import SymmetricOperator, dense_memory_bytes
from hessiankit.pipeline.options import SolverOptions
from hessiankit.resources import basis_budget_bytes, dense_budget_bytes
from hessiankit.solvers.options import SpectrumOptions, from_keywords
from hessiankit.solvers.results import SpectrumResult
from hessiankit.solvers.spectrum import spectrum

__all__ = ["Budgets", "budgets", "solve_block", "would_be_dense"]


@dataclass(frozen=True)
class Budgets:
    """The memory budgets a solve runs under.

    Attributes:
        max_dense_bytes: what dense ``eigh`` may materialise.
        max_basis_bytes: the Lanczos basis budget (``None``: no limit).
        basis_from_machine: whether ``max_basis_bytes`` was derived from the memory available.
    """

    max_dense_bytes: int
    max_basis_bytes: int | None
    basis_from_machine: bool


def budgets(options: SolverOptions, device: torch.device) -> Budgets:
    """The budgets of ``options`` on ``device``; ``None``/``"auto"`` measured now
    (:mod:`hessiankit.resources`)."""
    dense = options.max_dense_bytes
    basis = options.max_basis_bytes
    return Budgets(
        dense_budget_bytes(device) if dense is None else dense,
        basis_budget_bytes(device) if basis == "auto" else basis,
        basis == "auto",
    )


def would_be_dense(dim: int, top: int, bottom: int, options: SolverOptions, max_dense: int) -> bool:
    """Whether the solve is known to take the dense path before it starts (``method="dense"``,
    or ``"auto"`` with a ``dense_threshold`` override the matrix fits under): a progress bar
    can then show ``dim`` products as its total. ``"auto"``'s cost rule decides at run time."""
    if options.method != "auto":
        return options.method == "dense"
    fits = dense_memory_bytes(dim) <= max_dense
    return fits and options.dense_threshold is not None and dim <= options.dense_threshold


def solve_block(
    op: SymmetricOperator,
    options: SolverOptions,
    *,
    start: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
    limits: Budgets | None = None,
) -> SpectrumResult:
    """The extreme spectrum and condition number of one block's operator.

    Args:
        op: the block's operator.
        options: what to compute and how (``top``/``bottom`` are clipped to the dimension
            when ``options.clip`` is set).
        start: a Lanczos start direction (the loss gradient for a loss Hessian's top); used
            only when the solve runs Lanczos for ``top >= 1``.
        progress: called as ``progress(products_used, budget)`` by iterative methods.
        limits: memory budgets (default: measured now for ``op.device``).
    """
    lim = limits or budgets(options, op.device)
    top, bottom = options.top, options.bottom
    if options.clip:
        top, bottom = min(top, op.dim), min(bottom, op.dim)
    request = from_keywords(
        SpectrumOptions,
        options,
        top=top,
        bottom=bottom,
        max_dense_bytes=lim.max_dense_bytes,
        max_basis_bytes=lim.max_basis_bytes,
    )
    return spectrum(op, options=request, progress=progress, start=start)
