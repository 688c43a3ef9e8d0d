"""Closed forms of local Hessians (paper digest, sections 4-5): ground truth and fast paths.

Each module states the paper's assumptions under which its formula is exact; the tests compare
every formula with the measured operators in float64 (``tests/analytic``), and show for each a
case where an assumption is broken and by how much the prediction then misses.

Modules: :mod:`~hessiankit.analytic.linear` (linear and conv blocks, Kronecker factors),
:mod:`~hessiankit.analytic.nonlinear` (the element-wise derivative factor),
:mod:`~hessiankit.analytic.orthogonal` (``W^T W``, Marchenko-Pastur),
:mod:`~hessiankit.analytic.residual` (skip connections, the limit law),
:mod:`~hessiankit.analytic.batchnorm` (weight and input local Hessians with batch norm),
:mod:`~hessiankit.analytic.scalar` (closed forms of the scalars ``m_{b,W}``, ``m_{b,z}``; the
measured ones are :mod:`hessiankit.optim.scales`).
"""

from hessiankit.analytic.batchnorm import (
    bn_block_weight_hessian,
    bn_input_hessian,
    bn_input_hessian_approx,
    bn_weight_hessian,
)
from hessiankit.analytic.linear import (
    conv_input_spectrum_circular,
    conv_weight_hessian,
    conv_weight_spectrum,
    linear_input_hessian,
    linear_input_spectrum,
    linear_weight_hessian,
    linear_weight_spectrum,
    second_moment,
)
from hessiankit.analytic.nonlinear import (
    derivative_factor,
    nonlinear_input_hessian,
    nonlinear_weight_hessian,
    relu_active_units,
)
from hessiankit.analytic.orthogonal import (
    marchenko_pastur_condition,
    marchenko_pastur_density,
    marchenko_pastur_support,
    square_gaussian_condition_quantile,
)
from hessiankit.analytic.residual import (
    residual_condition_limit,
    residual_input_hessian,
    residual_support,
)

__all__ = [
    "bn_block_weight_hessian",
    "bn_input_hessian",
    "bn_input_hessian_approx",
    "bn_weight_hessian",
    "conv_input_spectrum_circular",
    "conv_weight_hessian",
    "conv_weight_spectrum",
    "derivative_factor",
    "linear_input_hessian",
    "linear_input_spectrum",
    "linear_weight_hessian",
    "linear_weight_spectrum",
    "marchenko_pastur_condition",
    "marchenko_pastur_density",
    "marchenko_pastur_support",
    "nonlinear_input_hessian",
    "nonlinear_weight_hessian",
    "relu_active_units",
    "residual_condition_limit",
    "residual_input_hessian",
    "residual_support",
    "second_moment",
    "square_gaussian_condition_quantile",
]
