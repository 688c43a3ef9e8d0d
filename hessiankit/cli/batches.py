r"""Operators over several batches, for ``--num-batches``.

With batches ``k = 1..K`` of m samples each (``M = K m`` in all):

* weights: the local Hessian of the back-matching loss averaged over all M samples is the
  **mean** of the per-batch operators, ``H_W = (1/K) sum_k H_W^{(k)}`` (each is already a batch
  mean). The same holds for the loss Hessian of the mean loss over the K batches.
* input: the variables are the inputs of all M samples, and batches do not couple, so the
  per-sample input Hessian is the **direct sum** ``diag(H_z^{(1)}, ..., H_z^{(K)})`` (batch
  norm in train mode couples samples only within a batch, as in training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hessiankit.operators.base import SymmetricOperator

__all__ = ["BatchDirectSum", "BatchMean", "Reporting", "combine_batches"]


class BatchMean(SymmetricOperator):
    """``(1/K) sum_k A_k`` for operators of one dimension."""

    def __init__(self, ops: Sequence[SymmetricOperator]) -> None:
        first = ops[0]
        super().__init__(first.dim, first.dtype, first.device)
        self.ops = list(ops)
        self.is_psd = True if all(op.is_psd is True for op in ops) else None

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.ops[0].matmat(V)
        for op in self.ops[1:]:
            out = out + op.matmat(V)
        return out / len(self.ops)

    def describe(self) -> dict[str, object]:
        return _describe(self.ops)


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


def combine_batches(ops: Sequence[SymmetricOperator], wrt: str) -> SymmetricOperator:
    """One operator for all batches: the mean for weights, the direct sum for inputs."""
    if len(ops) == 1:
        return ops[0]
    return BatchMean(ops) if wrt == "weights" else BatchDirectSum(ops)


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
