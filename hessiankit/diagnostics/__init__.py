"""Diagnostics beyond the paper: what Hessian specialists look at besides the local Hessians.

* :mod:`~.ggn` - the generalized Gauss-Newton operator ``J^T H_L J`` (whole model, or the
  diagonal block of one block's weights);
* :mod:`~.ggn_vs_hessian` - loss Hessian vs GGN: top spectra, eigenspace overlap, densities;
* :mod:`~.outliers` - outlier eigenvalues vs the number of classes, and their alignment with
  the class-mean gradients;
* :mod:`~.gradient_overlap` - the share of the gradient in the top eigenspace;
* :mod:`~.stability` - per-block ``lr x lambda_max`` against 2 (edge of stability);
* :mod:`~.block_vs_global` - each block's local Hessian vs the GGN's diagonal block;
* :mod:`~.subspace` - principal angles and overlaps (shared by the above);
* :mod:`~.summary` - all of them on one batch (:func:`run_diagnostics`), tables for reports.
"""

from hessiankit.diagnostics.block_vs_global import BlockVsGlobal, compare_blocks
from hessiankit.operators.ggn import GGNOperator
from hessiankit.diagnostics.ggn_vs_hessian import GGNvsHessian, compare_ggn_hessian
from hessiankit.diagnostics.gradient_overlap import GradientOverlap, gradient_overlap
from hessiankit.diagnostics.outliers import (
    OutlierAnalysis,
    OutlierCount,
    class_mean_gradients,
    count_outliers,
    outlier_analysis,
)
from hessiankit.diagnostics.stability import (
    EDGE,
    BlockStability,
    RateScaled,
    block_stability,
    parameter_rates,
)
from hessiankit.diagnostics.summary import Diagnostics, Table, run_diagnostics
from hessiankit.diagnostics.subspace import orthonormal_basis, overlap, principal_cosines

__all__ = [
    "EDGE",
    "BlockStability",
    "BlockVsGlobal",
    "Diagnostics",
    "GGNOperator",
    "GGNvsHessian",
    "GradientOverlap",
    "OutlierAnalysis",
    "OutlierCount",
    "RateScaled",
    "Table",
    "block_stability",
    "class_mean_gradients",
    "compare_blocks",
    "compare_ggn_hessian",
    "count_outliers",
    "gradient_overlap",
    "orthonormal_basis",
    "outlier_analysis",
    "overlap",
    "parameter_rates",
    "principal_cosines",
    "run_diagnostics",
]
