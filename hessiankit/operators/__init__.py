"""Operators: local (back-matching) Hessians, the loss Hessian and its generalized Gauss-Newton
part (:class:`GGNOperator`), as symmetric linear maps.

Scale: :class:`AllBlocksLocalHessian` (every block's product at once), :class:`DatasetOperator`
(a data loader's batches weighted by size), :class:`AllReduceOperator` (torch.distributed).
Composition: :class:`DirectSum` (block-diagonal, indexed by its blocks), :class:`Scaled`,
:class:`Reporting` (observes every product).
"""

from __future__ import annotations

from hessiankit.blocks.capture import BlockCapture
from hessiankit.blocks.split import Block
from hessiankit.operators._engines import Backend
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.operators.base import MatrixOperator, SymmetricOperator, dense_memory_bytes
from hessiankit.operators.dataset import DatasetOperator
from hessiankit.operators.direct_sum import DirectSum
from hessiankit.operators.ggn import GGNOperator
from hessiankit.operators.distributed import AllReduceOperator, is_rank_zero
from hessiankit.operators.local import Kind, LocalHessian, Wrt, check_kind
from hessiankit.operators.loss import LossHessian
from hessiankit.operators.observed import Reporting
from hessiankit.operators.scaled import Scaled

__all__ = [
    "AllBlocksLocalHessian",
    "AllReduceOperator",
    "Backend",
    "DatasetOperator",
    "DirectSum",
    "GGNOperator",
    "Kind",
    "LocalHessian",
    "LossHessian",
    "MatrixOperator",
    "Reporting",
    "Scaled",
    "SymmetricOperator",
    "Wrt",
    "dense_memory_bytes",
    "hessian_operator",
    "is_rank_zero",
]


def hessian_operator(
    capture: BlockCapture,
    block: int | str | Block,
    *,
    wrt: Wrt = "weights",
    kind: Kind = "gauss-newton",
    eta: float = 1.0,
    backend: Backend = "double-backprop",
) -> LocalHessian | LossHessian:
    """The operator of one kind for one block: :class:`LocalHessian` or :class:`LossHessian`.

    Args:
        capture: the recorded batch.
        block: index (from 1), module path, ``"model"`` or a :class:`Block`.
        wrt: ``"weights"`` or ``"input"``.
        kind: ``"gauss-newton"``, ``"exact"`` (local Hessians) or ``"loss"``.
        eta: back-matching step size (``"exact"`` only).
        backend: ``"double-backprop"`` or ``"forward-over-reverse"``.
    """
    checked = check_kind(kind)
    if checked == "loss":
        return LossHessian(capture, block, wrt=wrt, backend=backend)
    return LocalHessian(capture, block, wrt=wrt, kind=checked, eta=eta, backend=backend)
