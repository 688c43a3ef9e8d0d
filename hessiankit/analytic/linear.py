r"""Linear and convolutional blocks: the weight local Hessian is one Kronecker product.

Paper digest 4.1-4.2. Block ``F(W, z) = W z + b`` on a batch ``Z`` (``m x n_in``, PyTorch layout,
samples in rows). Core conventions (:mod:`hessiankit.operators.local`): the weight local Hessian
is the Gauss-Newton Hessian of the **batch-mean** back-matching loss, ``(1/m) J_W^T J_W``; the
weight is flattened **row-major** (output unit by output unit), bias last. Then, exactly,

.. math::

    H_W = I_{n_{out}} \otimes S, \qquad S = \tfrac1m Z^T Z \quad(\text{uncentred second moment}),

(``S \otimes I`` in the paper's column-major vec: the Kronecker order swaps). Its spectrum is that of
``S`` with multiplicity ``n_out``: kappa(H_W) = kappa(S), whatever W. A bias appends a column of
ones to Z. The input local Hessian (per sample, ``J_z^T J_z``; samples in rows, so sample-major)
is ``I_m \otimes W^T W``: kappa = ``(s_max/s_min)^2``, singular when ``n_out < n_in``.

Convolution (stride, padding, dilation any; zero padding): the conv is linear in W, so with the
unfolded patches ``u`` (``c_in k_h k_w`` each, :func:`torch.nn.functional.unfold` order, which is
the weight's flatten order) ``H_W = I_{c_out} \otimes (1/m) \sum_{i, positions} u u^T``. Its input
local Hessian has no single Kronecker form; for stride 1 and **circular** padding it is block
circulant and its eigenvalues are the squared singular values of the kernel's per-frequency
``c_out x c_in`` DFT matrices (:func:`conv_input_spectrum_circular`).

Assumptions: no nonlinearity or normalisation inside the block (else see
:mod:`~hessiankit.analytic.nonlinear`, :mod:`~hessiankit.analytic.batchnorm`); the Gauss-Newton
kind (for these blocks it equals the exact local Hessian, which is linear in the variable).

Example:
    >>> from hessiankit.analytic.linear import linear_weight_hessian, linear_weight_spectrum
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> linear_weight_hessian(z, n_out=1).tolist()
    [[0.5, 0.0], [0.0, 2.0]]
    >>> linear_weight_spectrum(z, n_out=2).tolist()
    [0.5, 0.5, 2.0, 2.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import torch
import torch.nn.functional as F

from hessiankit.analytic._util import as64, bias_layout, check_matrix, with_ones
from hessiankit.errors import OperatorError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ConvGeometry",
    "conv_input_spectrum_circular",
    "conv_weight_factor",
    "conv_weight_hessian",
    "conv_weight_spectrum",
    "linear_input_hessian",
    "linear_input_spectrum",
    "linear_weight_factor",
    "linear_weight_hessian",
    "linear_weight_spectrum",
    "second_moment",
]


def second_moment(z: torch.Tensor, *, bias: bool = False) -> torch.Tensor:
    """``S = (1/m) Z^T Z`` (uncentred), of ``[Z, 1]`` when ``bias``; float64."""
    check_matrix("z", z)
    z64 = as64(z)
    assert z64 is not None
    if bias:
        z64 = with_ones(z64)
    return z64.T @ z64 / z64.shape[0]


def linear_weight_factor(z: torch.Tensor, *, bias: bool = False) -> torch.Tensor:
    """The Kronecker factor ``S`` of ``H_W = I kron S`` (alias of :func:`second_moment`)."""
    return second_moment(z, bias=bias)


def linear_weight_hessian(z: torch.Tensor, n_out: int, *, bias: bool = False) -> torch.Tensor:
    """Dense ``H_W`` of a linear block in the core's layout (row-major weight, bias last).

    Args:
        z: block input ``m x n_in``.
        n_out: output width.
        bias: whether the block has a bias.
    """
    if n_out < 1:
        raise OperatorError(f"n_out must be positive, got {n_out}")
    return _kron_hessian(second_moment(z, bias=bias), n_out, bias)


def linear_weight_spectrum(z: torch.Tensor, n_out: int, *, bias: bool = False) -> torch.Tensor:
    """Eigenvalues of ``H_W`` (ascending) from one small ``eigh`` of ``S``: each ``n_out`` times."""
    return _kron_spectrum(second_moment(z, bias=bias), n_out)


def linear_input_hessian(weight: torch.Tensor, m: int = 1) -> torch.Tensor:
    """Dense input local Hessian ``I_m kron W^T W`` (per sample, sample-major layout)."""
    check_matrix("weight", weight)
    W = as64(weight)
    assert W is not None
    return torch.kron(torch.eye(m, dtype=W.dtype), W.T @ W)


def linear_input_spectrum(weight: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of ``W^T W`` (one sample's block), ascending: squared singular values padded
    with ``n_in - n_out`` zeros when the layer narrows."""
    check_matrix("weight", weight)
    W = as64(weight)
    assert W is not None
    s2 = torch.linalg.svdvals(W).pow(2)
    pad = torch.zeros(max(W.shape[1] - s2.numel(), 0), dtype=W.dtype)
    return torch.sort(torch.cat([s2, pad])).values


class ConvGeometry(TypedDict, total=False):
    """The keywords of a 2-d convolution that shape its patches, as :class:`torch.nn.Conv2d`
    takes them (default 1, 0 and 1)."""

    stride: int | tuple[int, int]
    padding: int | tuple[int, int]
    dilation: int | tuple[int, int]


def conv_weight_factor(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    *,
    bias: bool = False,
    **geometry: Unpack[ConvGeometry],
) -> torch.Tensor:
    """``S = (1/m) sum_{i, positions} u u^T`` over the unfolded patches of ``x`` (``m x c x h x w``).

    Zero padding only (``padding_mode="zeros"``, what :func:`~torch.nn.functional.unfold` does).
    """
    check_matrix("x", x, ndim=4)
    x64 = as64(x)
    assert x64 is not None
    stride, padding = geometry.get("stride", 1), geometry.get("padding", 0)
    U = F.unfold(
        x64, kernel_size, dilation=geometry.get("dilation", 1), padding=padding, stride=stride
    )
    m, P, L = U.shape
    U = U.permute(0, 2, 1).reshape(m * L, P)  # one row per (sample, position)
    if bias:
        U = with_ones(U)
    return U.T @ U / m


def conv_weight_hessian(
    x: torch.Tensor,
    c_out: int,
    kernel_size: int | tuple[int, int],
    *,
    bias: bool = False,
    **geometry: Unpack[ConvGeometry],
) -> torch.Tensor:
    """Dense ``H_W = I_{c_out} kron S`` of a conv block in the core's layout (bias last)."""
    return _kron_hessian(conv_weight_factor(x, kernel_size, bias=bias, **geometry), c_out, bias)


def conv_weight_spectrum(
    x: torch.Tensor,
    c_out: int,
    kernel_size: int | tuple[int, int],
    *,
    bias: bool = False,
    **geometry: Unpack[ConvGeometry],
) -> torch.Tensor:
    """Eigenvalues of a conv block's ``H_W`` (ascending): those of the ``c_in k^2`` (+1) square
    patch second moment, each ``c_out`` times -- one small ``eigh`` instead of a big one."""
    return _kron_spectrum(conv_weight_factor(x, kernel_size, bias=bias, **geometry), c_out)


def _kron_hessian(S: torch.Tensor, n_out: int, bias: bool) -> torch.Tensor:
    """``I_{n_out} kron S`` in the core's layout: row-major weight, the bias entries last."""
    if bias:
        return bias_layout(S, n_out)
    return torch.kron(torch.eye(n_out, dtype=S.dtype), S)


def _kron_spectrum(S: torch.Tensor, n_out: int) -> torch.Tensor:
    """The eigenvalues of ``I_{n_out} kron S`` (ascending): those of ``S``, each ``n_out`` times."""
    ev: torch.Tensor = torch.linalg.eigvalsh(S)
    return ev.repeat_interleave(n_out)


def conv_input_spectrum_circular(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Eigenvalues (ascending, ``c_in h w`` of them) of one sample's input local Hessian of a
    stride-1 conv with **circular** padding on ``h x w`` inputs.

    The conv is block circulant: at frequency ``(p, q)`` it acts as the ``c_out x c_in`` matrix
    ``K(p, q) = sum_{a,b} W[:, :, a, b] exp(-2 pi i (p a / h + q b / w))``, so ``J^T J`` has the
    eigenvalues of ``K^H K`` over all frequencies (shifts from the padding are unitary phases).
    """
    check_matrix("weight", weight, ndim=4)
    W = as64(weight)
    assert W is not None
    c_out, c_in, kh, kw = W.shape
    if kh > height or kw > width:
        raise OperatorError(
            f"kernel {kh}x{kw} is larger than the input {height}x{width}; use a larger input"
        )
    K = torch.fft.fft2(W, s=(height, width))  # c_out x c_in x h x w
    K = K.permute(2, 3, 0, 1).reshape(height * width, c_out, c_in)
    s = torch.linalg.svdvals(K)  # (hw, min(c_out, c_in))
    ev = s.pow(2).reshape(-1)
    pad = torch.zeros(height * width * max(c_in - c_out, 0), dtype=ev.dtype)
    return torch.sort(torch.cat([ev, pad])).values
