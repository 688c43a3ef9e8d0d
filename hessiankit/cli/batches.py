r"""The input local Hessian over several batches (``--wrt input --num-batches K``), and progress.

The variables of the input Hessian are the inputs of all samples, and batches do not couple, so
over batches ``k = 1..K`` it is the **direct sum** ``diag(H_z^{(1)}, ..., H_z^{(K)})`` (batch
norm in train mode couples samples only within a batch, as in training). Weight and loss
Hessians over several batches are the data-set mean instead:
:class:`~hessiankit.operators.dataset.DatasetOperator`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hessiankit.operators.base import SymmetricOperator

__all__ = ["BatchDirectSum", "Reporting"]


class BatchDirectSum(SymmetricOperator):
    """``diag(A_1, ..., A_K)`` acting on the concatenation of the operators' spaces."""

    def __init__(self, ops: Sequence[SymmetricOperator]) -> None:
        first = ops[0]
        super().__init__(sum(op.dim for op in ops), first.dtype, first.device)
        self.ops = list(ops)
        self.is_psd = True if all(op.is_psd is True for op in ops) else None

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        for op in self.ops:
            parts.append(op.matmat(V[start : start + op.dim]))
            start += op.dim
        return torch.cat(parts, dim=0)

    def describe(self) -> dict[str, object]:
        info = _describe(self.ops)
        info["dimension"] = self.dim
        return info


def _describe(ops: Sequence[SymmetricOperator]) -> dict[str, object]:
    describe = getattr(ops[0], "describe", None)
    info: dict[str, object] = dict(describe()) if callable(describe) else {}
    info["num_batches"] = len(ops)
    return info


class Reporting(SymmetricOperator):
    """``op`` itself, calling ``report(products_so_far, total)`` after every product (progress
    bars for every method, the dense one included: its total is the dimension)."""

    def __init__(
        self, op: SymmetricOperator, report: Callable[[int, int | None], None], total: int | None
    ) -> None:
        super().__init__(op.dim, op.dtype, op.device)
        self.op = op
        self.is_psd = op.is_psd
        self.report = report
        self.total = total

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.op.matmat(V)
        self.report(self.num_products + V.shape[1], self.total)
        return out

    def describe(self) -> dict[str, object]:
        describe = getattr(self.op, "describe", None)
        return dict(describe()) if callable(describe) else {}
