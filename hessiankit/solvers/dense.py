"""Dense eigendecomposition after materialising the operator (small dimensions).

The operator is multiplied with the identity in column chunks, symmetrised and decomposed by
``torch.linalg.eigh`` in float64. The reported precision is the larger of the asymmetry of the
materialised matrix (rounding seen in the products) and the arithmetic floor of the products'
dtype, ``10 sqrt(n) eps ||A||``: symmetric rounding errors do not show in the asymmetry, and
in float32 they dominate (an eigenvalue of a float32 local Hessian near ``1e-5 ||A||`` can be off
by a factor of two while the asymmetry is ten times smaller).
"""

from __future__ import annotations

import torch

from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.condition import arithmetic_floor
from hessiankit.solvers.results import DenseResult

__all__ = ["DenseResult", "dense_eigh"]


def dense_eigh(
    op: SymmetricOperator, *, chunk: int = 64, max_bytes: int = 4 * 2**30
) -> DenseResult:
    """All eigenpairs of ``op`` from its materialised matrix.

    Args:
        op: the operator.
        chunk: columns per product call.
        max_bytes: refuse to materialise a larger float64 matrix.

    Raises:
        OperatorError: the matrix would exceed ``max_bytes``.
    """
    before = op.num_products
    M = op.to_dense(chunk=chunk, max_bytes=max_bytes)
    asym = float(torch.linalg.matrix_norm(M - M.T, ord="fro")) / 2.0
    M = 0.5 * (M + M.T)
    evals, evecs = torch.linalg.eigh(M)
    res = torch.linalg.vector_norm(M @ evecs - evecs * evals, dim=0)
    anorm = float(evals.abs().max()) if evals.numel() else 0.0
    precision = max(
        asym + op.dim * torch.finfo(torch.float64).eps * anorm,
        arithmetic_floor(op.dim, op.dtype, anorm),
    )
    return DenseResult(
        eigenvalues=evals,
        eigenvectors=evecs,
        residuals=res,
        precision=precision,
        asymmetry=asym,
        num_products=op.num_products - before,
    )
