r"""Element-wise nonlinearity after a linear map, ``F(W, z) = phi(W z + b)`` (paper digest 4.3).

With ``D_i = diag(phi'(W z_i + b))`` (the derivative factor of sample i), in the core's
conventions (per-sample input Hessian, batch-mean weight Hessian, row-major weight, bias last):

.. math::

    H_z = \mathrm{blockdiag}_i\, W^T D_i^2 W, \qquad
    H_W = \tfrac1m \sum_i D_i^2 \otimes \hat z_i \hat z_i^T ,

(``\hat z = [z, 1]`` with a bias) -- a sum of Kronecker products, not one. For ReLU,
``D_i^2 = D_i`` is a 0/1 projection on the active units, so ``rank(W^T D_i W) <= #active``: the
input local Hessian of a square ReLU block is singular even for orthogonal W (claim 7).

Assumptions: Gauss-Newton kind (the exact local Hessian adds ``eta sum_j g_j phi''`` terms, which
vanish for ReLU almost everywhere but not for tanh); ``phi`` acts element-wise.

Example:
    >>> from hessiankit.analytic.nonlinear import derivative_factor
    >>> derivative_factor(torch.tensor([-1.0, 2.0]), "relu").tolist()
    [0.0, 1.0]
"""

from __future__ import annotations

import torch

from hessiankit.analytic._util import as64, block_diag, check_matrix, with_ones
from hessiankit.errors import OperatorError

__all__ = [
    "ACTIVATIONS",
    "derivative_factor",
    "nonlinear_input_hessian",
    "nonlinear_weight_hessian",
    "relu_active_units",
]

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")


def derivative_factor(pre: torch.Tensor, activation: str) -> torch.Tensor:
    """``phi'(pre)`` element-wise for ``activation`` in :data:`ACTIVATIONS` (ReLU'(0) = 0, as
    PyTorch's autograd)."""
    if activation == "identity":
        return torch.ones_like(pre)
    if activation == "relu":
        return (pre > 0).to(pre.dtype)
    if activation == "tanh":
        return 1 - torch.tanh(pre).pow(2)
    if activation == "sigmoid":
        s = torch.sigmoid(pre)
        return s * (1 - s)
    raise OperatorError(f"unknown activation {activation!r}; use one of {ACTIVATIONS}")


def _pre(
    weight: torch.Tensor, bias: torch.Tensor | None, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_matrix("weight", weight)
    check_matrix("z", z)
    W, b, Z = as64(weight), as64(bias), as64(z)
    assert W is not None and Z is not None
    u = Z @ W.T
    return W, Z, (u if b is None else u + b)


def nonlinear_input_hessian(
    weight: torch.Tensor, bias: torch.Tensor | None, z: torch.Tensor, activation: str
) -> torch.Tensor:
    """Dense ``blockdiag_i W^T D_i^2 W`` (``m n_in`` square, sample-major)."""
    W, Z, u = _pre(weight, bias, z)
    d2 = derivative_factor(u, activation).pow(2)  # m x n_out
    blocks = [W.T @ (d2[i, :, None] * W) for i in range(Z.shape[0])]
    return block_diag(blocks)


def nonlinear_weight_hessian(
    weight: torch.Tensor, bias: torch.Tensor | None, z: torch.Tensor, activation: str
) -> torch.Tensor:
    """Dense ``(1/m) sum_i D_i^2 kron zhat_i zhat_i^T`` in the core's layout (bias last)."""
    W, Z, u = _pre(weight, bias, z)
    m, n_in = Z.shape
    n_out = W.shape[0]
    d2 = derivative_factor(u, activation).pow(2)
    Zh = with_ones(Z) if bias is not None else Z
    # H[(a, j), (a, k)] = (1/m) sum_i d2[i, a] Zh[i, j] Zh[i, k]; units do not couple.
    per_unit = torch.einsum("ia,ij,ik->ajk", d2, Zh, Zh) / m
    ww = block_diag([per_unit[a, :n_in, :n_in] for a in range(n_out)])
    if bias is None:
        return ww
    wb = block_diag([per_unit[a, :n_in, n_in:] for a in range(n_out)])
    bb = torch.diag(per_unit[:, n_in, n_in])
    return torch.cat([torch.cat([ww, wb], 1), torch.cat([wb.T, bb], 1)], 0)


def relu_active_units(
    weight: torch.Tensor, bias: torch.Tensor | None, z: torch.Tensor
) -> torch.Tensor:
    """Number of active ReLU units per sample: an upper bound on ``rank(W^T D_i W)`` (equal to it
    when the active rows of W are linearly independent, e.g. orthogonal W)."""
    _, _, u = _pre(weight, bias, z)
    return (u > 0).sum(dim=1).to(torch.int64)
