"""hessiankit: the local Hessian of back-propagation (Zhang, Chen, Liu; NeurIPS 2018).

A network is a chain of blocks ``z_b = F_b(W_b, z_{b-1})``. Each block's back-matching loss
``l_b = 1/2 ||z_b - eta g_b - F_b(W_b, z_{b-1})||^2`` (a mean over the batch) has a Hessian
w.r.t. the block's weights and w.r.t. its input: the local Hessian. ::

    import hessiankit as hk

    split = hk.split_blocks(model)                     # blocks 1..B
    cap = hk.capture(split, x, y, bn="train")          # one forward + one backward
    op = hk.LocalHessian(cap, 3, wrt="weights")        # Gauss-Newton local Hessian of block 3
    res = hk.spectrum(op, top=10, bottom=1, seed=0)    # eigenvalues, residuals, condition number
    res.condition.kappa, res.top.eigenvalues, res.top.converged

Operators: :class:`LocalHessian` (kinds ``"gauss-newton"``, ``"exact"``), :class:`LossHessian`
(the training-loss Hessian other tools compute), :func:`hessian_operator` (either, by kind),
:class:`MatrixOperator`. Solvers: :func:`spectrum` (auto: dense or Lanczos), :func:`lanczos`,
:func:`power_iteration`, :func:`dense_eigh`, :func:`trace` (Hutchinson, Hutch++).
"""

from hessiankit._version import __version__
from hessiankit.blocks import Block, BlockCapture, BlockSplit, capture, split_blocks
from hessiankit.errors import HessiankitError
from hessiankit.operators import (
    LocalHessian,
    LossHessian,
    MatrixOperator,
    SymmetricOperator,
    hessian_operator,
)
from hessiankit.solvers import (
    ConditionNumber,
    Eigenpairs,
    SpectrumResult,
    TraceResult,
    dense_eigh,
    hutch_plus_plus,
    hutchinson,
    lanczos,
    power_iteration,
    spectrum,
    trace,
)

__all__ = [
    "Block",
    "BlockCapture",
    "BlockSplit",
    "ConditionNumber",
    "Eigenpairs",
    "HessiankitError",
    "LocalHessian",
    "LossHessian",
    "MatrixOperator",
    "SpectrumResult",
    "SymmetricOperator",
    "TraceResult",
    "__version__",
    "capture",
    "dense_eigh",
    "hessian_operator",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
    "power_iteration",
    "spectrum",
    "split_blocks",
    "trace",
]
