r"""A linear map followed by batch norm in train mode (paper digest 4.6).

Block (per output unit i, batch statistics, **eps = 0**): ``u_i = Z w_i`` (``Z`` is the
``m x n_in`` input batch, samples in rows), ``mu_i = mean(u_i)``,
``sigma_i^2 = mean((u_i - mu_i)^2)`` (biased, as PyTorch normalises),
``y_i = gamma_i (u_i - mu_i) / sigma_i + beta_i``. With ``Sigma = (1/m) Z_c^T Z_c`` (centred input
covariance), ``sigma_i^2 = w_i^T Sigma w_i``. Core conventions: batch-mean weight Hessian,
per-sample (summed) input Hessian, row-major flatten, samples in rows.

**Weights.** Rows decouple:

.. math::

    H_{w_i} = \frac{\gamma_i^2}{\sigma_i^2}
      \Big(\Sigma - \frac{\Sigma w_i w_i^T \Sigma}{w_i^T \Sigma w_i}\Big),

so ``H_{w_i} w_i = 0`` (scale invariance: the weight direction is a null direction),
``H(a w) = H(w) / a^2`` (inversely proportional to the squared weight norm), and ``H`` does not
change when the input is shifted or rescaled (``Sigma -> c^2 Sigma`` cancels). A bias before BN
is removed by the centring (its block is 0); BN's own ``gamma`` and ``beta`` have the identity as
their blocks and do not couple to W (``Q_i y_hat_i = Q_i 1 = 0``). Without BN the same layer has
``H_W = I kron Z^T Z / m``, which scales with the input and does not depend on W.

**Input** (batch-coupled, ``(m n_in)`` square, sample-major):

.. math::

    H_Z = \sum_i \frac{\gamma_i^2}{\sigma_i^2} (I_m \otimes w_i) Q_i (I_m \otimes w_i^T),
    \qquad Q_i = I_m - \tfrac1m 1 1^T - \tfrac1m \hat y_i \hat y_i^T ,

a rank ``m - 2`` projection per unit. Dropping the projections,
``H_Z ~ I_m kron W^T diag(gamma^2 / sigma^2) W`` (relative Frobenius error about ``sqrt(2/m)``),
independent of the scale and row norms of W and inversely proportional to the input variance.
(With samples in rows the Kronecker order is the same as the paper's column-major one.)

Assumptions: train mode (batch statistics; in eval mode the running statistics are constants
and none of this holds), ``eps -> 0`` (PyTorch needs ``eps > 0`` in train mode; its default
``1e-5`` perturbs the formulas by about ``eps / sigma^2``), Gauss-Newton kind, no nonlinearity inside the block (a following ReLU
multiplies in :mod:`~hessiankit.analytic.nonlinear`'s factor).

Example:
    >>> from hessiankit.analytic.batchnorm import bn_weight_hessian
    >>> g = torch.Generator().manual_seed(0)
    >>> Z, W = torch.randn(8, 3, generator=g), torch.randn(2, 3, generator=g)
    >>> H = bn_weight_hessian(W, torch.ones(2), Z)
    >>> bool((H @ W.reshape(-1).double()).abs().max() < 1e-12)   # the weight direction is null
    True
"""

from __future__ import annotations

import torch

from hessiankit.analytic._util import as64, block_diag, check_matrix
from hessiankit.errors import OperatorError

__all__ = [
    "bn_block_weight_hessian",
    "bn_input_hessian",
    "bn_input_hessian_approx",
    "bn_statistics",
    "bn_weight_hessian",
]


def bn_statistics(weight: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """``Sigma`` (centred input covariance), ``sigma2`` (per unit) and ``y_hat`` (``m x n_out``)."""
    check_matrix("weight", weight)
    check_matrix("z", z)
    W, Z = as64(weight), as64(z)
    assert W is not None and Z is not None
    if Z.shape[0] < 2:
        raise OperatorError("batch norm in train mode needs at least 2 samples")
    Zc = Z - Z.mean(0, keepdim=True)
    Sigma = Zc.T @ Zc / Z.shape[0]
    sigma2 = torch.einsum("ij,jk,ik->i", W, Sigma, W)
    if bool((sigma2 <= 0).any()):
        raise OperatorError("a unit has zero batch variance (sigma = 0); BN is undefined there")
    y_hat = (Zc @ W.T) / sigma2.sqrt()
    return {"Sigma": Sigma, "sigma2": sigma2, "y_hat": y_hat, "W": W, "Z": Z}


def _gamma(gamma: torch.Tensor | None, n_out: int) -> torch.Tensor:
    if gamma is None:
        return torch.ones(n_out, dtype=torch.float64)
    g = as64(gamma)
    assert g is not None
    if g.shape != (n_out,):
        raise OperatorError(f"gamma must have shape ({n_out},), got {tuple(g.shape)}")
    return g


def bn_weight_hessian(
    weight: torch.Tensor, gamma: torch.Tensor | None, z: torch.Tensor
) -> torch.Tensor:
    """Dense ``blockdiag_i H_{w_i}`` for the linear weight (row-major, ``n_out n_in`` square)."""
    st = bn_statistics(weight, z)
    W, Sigma, s2 = st["W"], st["Sigma"], st["sigma2"]
    g = _gamma(gamma, W.shape[0])
    blocks = []
    for i in range(W.shape[0]):
        Sw = Sigma @ W[i]
        blocks.append(g[i] ** 2 / s2[i] * (Sigma - torch.outer(Sw, Sw) / s2[i]))
    return block_diag(blocks)


def bn_block_weight_hessian(
    weight: torch.Tensor,
    gamma: torch.Tensor | None,
    z: torch.Tensor,
    *,
    linear_bias: bool = False,
    affine: bool = True,
) -> torch.Tensor:
    """The whole block's weight local Hessian in the core's parameter order
    ``[W, linear bias?, gamma?, beta?]``: ``blockdiag(H_W, 0, I, I)``."""
    H = bn_weight_hessian(weight, gamma, z)
    n_out = weight.shape[0]
    parts = [H]
    if linear_bias:
        parts.append(torch.zeros(n_out, n_out, dtype=H.dtype))
    if affine:
        parts += [torch.eye(n_out, dtype=H.dtype), torch.eye(n_out, dtype=H.dtype)]
    return block_diag(parts)


def bn_input_hessian(
    weight: torch.Tensor, gamma: torch.Tensor | None, z: torch.Tensor
) -> torch.Tensor:
    """Dense exact ``H_Z = sum_i (gamma_i^2/sigma_i^2) (I kron w_i) Q_i (I kron w_i^T)``."""
    st = bn_statistics(weight, z)
    W, s2, yh = st["W"], st["sigma2"], st["y_hat"]
    m, n_in = st["Z"].shape
    g = _gamma(gamma, W.shape[0])
    eye = torch.eye(m, dtype=W.dtype)
    ones = torch.ones(m, m, dtype=W.dtype) / m
    H = torch.zeros(m * n_in, m * n_in, dtype=W.dtype)
    for i in range(W.shape[0]):
        Q = eye - ones - torch.outer(yh[:, i], yh[:, i]) / m
        B = torch.kron(eye, W[i][:, None])  # (m n_in) x m
        H += g[i] ** 2 / s2[i] * (B @ Q @ B.T)
    return H


def bn_input_hessian_approx(
    weight: torch.Tensor, gamma: torch.Tensor | None, z: torch.Tensor
) -> torch.Tensor:
    """``I_m kron W^T diag(gamma^2 / sigma^2) W``: the projections ``Q_i`` dropped."""
    st = bn_statistics(weight, z)
    W, s2 = st["W"], st["sigma2"]
    g = _gamma(gamma, W.shape[0])
    m = st["Z"].shape[0]
    return torch.kron(torch.eye(m, dtype=W.dtype), W.T @ ((g**2 / s2)[:, None] * W))
