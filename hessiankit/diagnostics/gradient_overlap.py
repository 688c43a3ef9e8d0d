r"""The fraction of the gradient in the top eigenspace (Gur-Ari, Roberts and Dyer, 2018).

For a curvature operator A (the loss Hessian, or its GGN) with top-k orthonormal eigenvectors
``U_k = [u_1 .. u_k]`` and the loss gradient g,

.. math::

    f_k = \frac{\|U_k^T g\|^2}{\|g\|^2} = \sum_{i \le k} \frac{(u_i^T g)^2}{\|g\|^2} .

Gur-Ari et al. observe that after a short initial phase of training ``f_C`` (k = the number
of classes) is close to 1: gradient descent happens in a tiny subspace. A random direction has
``E f_k = k / n`` (reported as ``chance``).

Each ``u_i`` comes from :func:`~hessiankit.solvers.spectrum.spectrum` with its residual
``r_i``; its angle to the true eigenvector is at most about ``r_i / gap_i``, so ``f_k`` is
trustworthy when the k-th eigenvalue is separated from the (k+1)-th (look at
``top.error_bounds`` and ``top.converged``).

Example:
    >>> from hessiankit.diagnostics import gradient_overlap
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    >>> x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    >>> op = hk.LossHessian(hk.capture(net, x, y), "model")
    >>> r = gradient_overlap(op, top=3, seed=0)
    >>> bool(0.0 <= r.fraction <= 1.0), len(r.cumulative)
    (True, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hessiankit.diagnostics.subspace import orthonormal_basis
from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.results import Eigenpairs
from hessiankit.solvers.spectrum import Method, spectrum

__all__ = ["GradientOverlap", "gradient_overlap"]


@dataclass(frozen=True, eq=False)
class GradientOverlap:
    """Share of the gradient's squared norm in the top-k eigenspace of an operator.

    Attributes:
        fraction: ``f_k = ||U_k^T g||^2 / ||g||^2``.
        cumulative: ``f_1, ..., f_k`` (the share in the top-i eigenspace, i = 1..k).
        components: ``(u_i^T g)^2 / ||g||^2`` per eigenvector (descending eigenvalue).
        chance: ``k / n``, the expected fraction for a random direction.
        gradient_norm: ``||g||``.
        top: the top-k eigenpairs used (eigenvalues, residuals, error bounds, converged).
        method: the eigensolver route that ran (``"given"`` for ``eigenpairs=``).
        dimension: n.
        seed: seed of the start vectors.
    """

    fraction: float
    cumulative: np.ndarray
    components: np.ndarray
    chance: float
    gradient_norm: float
    top: Eigenpairs
    method: str
    dimension: int
    seed: int

    @property
    def converged(self) -> bool:
        return self.top.all_converged

    def to_dict(self) -> dict[str, object]:
        return {
            "fraction": self.fraction,
            "cumulative": self.cumulative.tolist(),
            "components": self.components.tolist(),
            "chance": self.chance,
            "gradient_norm": self.gradient_norm,
            "eigenvalues": self.top.eigenvalues.tolist(),
            "residuals": self.top.residuals.tolist(),
            "converged": self.top.converged.tolist(),
            "method": self.method,
            "dimension": self.dimension,
            "seed": self.seed,
        }


def gradient_overlap(
    op: SymmetricOperator,
    *,
    top: int = 10,
    gradient: torch.Tensor | None = None,
    eigenpairs: Eigenpairs | None = None,
    method: Method = "auto",
    tol: float = 1e-6,
    seed: int = 0,
) -> GradientOverlap:
    """``f_k``: the fraction of the gradient's squared norm in ``op``'s top-k eigenspace.

    Args:
        op: the curvature operator; without ``gradient=`` it must have a ``gradient()``
            method (:class:`~hessiankit.operators.loss.LossHessian`,
            :class:`~hessiankit.operators.ggn.GGNOperator`).
        top: k.
        gradient: the vector g (length ``op.dim``); default ``op.gradient()``.
        eigenpairs: ``op``'s top eigenpairs already computed with their vectors (e.g.
            ``spectrum(op, keep_vectors=True).top``): used as they are, ``top`` ignored.
        method, tol: eigensolver route and tolerance (:func:`~hessiankit.solvers.spectrum.spectrum`).
        seed: seed of the start vectors.

    Raises:
        OperatorError: no gradient given and ``op`` has none, a gradient of the wrong length,
            a zero gradient, or ``top`` larger than the dimension.
    """
    if gradient is None:
        gradient = op.gradient()
        if gradient is None:
            raise OperatorError(
                f"{type(op).__name__} has no gradient(); pass gradient= (a vector of length {op.dim})"
            )
    g = gradient.detach().reshape(-1).to(torch.float64)
    if g.numel() != op.dim:
        raise OperatorError(
            f"gradient= has {g.numel()} entries, the operator dimension is {op.dim}"
        )
    norm = float(torch.linalg.vector_norm(g))
    if not norm > 0.0:
        raise OperatorError("the gradient is zero; its share in any subspace is undefined")
    if eigenpairs is None:
        res = spectrum(op, top=top, bottom=0, method=method, tol=tol, seed=seed, keep_vectors=True)
        pairs, route = res.top, res.method
    else:
        pairs, route = eigenpairs, "given"
    vecs = pairs.eigenvectors
    if vecs is None or vecs.shape[0] != op.dim:
        raise OperatorError(
            f"eigenpairs= needs eigenvectors of length {op.dim} (keep_vectors=True)"
        )
    U = vecs.to(torch.float64)
    # Ritz vectors are orthonormal to working precision; re-orthonormalise only if they are not.
    if float((U.T @ U - torch.eye(U.shape[1], dtype=U.dtype, device=U.device)).abs().max()) > 1e-8:
        U = orthonormal_basis(U)
    comps = ((U.T @ g.to(U.device)) ** 2).cpu().numpy() / norm**2
    cum = np.cumsum(comps)
    return GradientOverlap(
        fraction=float(cum[-1]),
        cumulative=cum,
        components=comps,
        chance=U.shape[1] / op.dim,
        gradient_norm=norm,
        top=pairs,
        method=route,
        dimension=op.dim,
        seed=seed,
    )
