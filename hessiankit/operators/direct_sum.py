r"""The direct sum ``diag(A_1, ..., A_K)`` of operators: block-diagonal, indexed by its blocks.

The input local Hessian over several batches (``wrt="input"``) is one: its variables are the
inputs of all samples and batches do not couple, so over batches ``k = 1..K`` it is
``diag(H_z^{(1)}, ..., H_z^{(K)})`` (batch norm in train mode couples samples only within a
batch, as in training). Weight and loss Hessians over several batches are the data-set mean
instead: :class:`~hessiankit.operators.dataset.DatasetOperator`.

Its spectrum is the union of the summands' spectra; :attr:`DirectSum.parts` names each
summand's slice, so :func:`~hessiankit.solvers.blockwise.blockwise_spectra` can solve them
apart and :meth:`DirectSum.restrict` keeps a subset.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.operators.direct_sum import DirectSum
    >>> A = DirectSum([MatrixOperator(torch.eye(2, dtype=torch.float64)),
    ...                MatrixOperator(3 * torch.eye(1, dtype=torch.float64))])
    >>> A.to_dense().diagonal().tolist(), A.parts
    ([1.0, 1.0, 3.0], (slice(0, 2, None), slice(2, 3, None)))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator

__all__ = ["DirectSum"]


class DirectSum(SymmetricOperator):
    """``diag(A_1, ..., A_K)`` acting on the concatenation of the operators' spaces.

    Args:
        ops: the summands (one dtype and device).

    Raises:
        OperatorError: no operator, or operators of different dtypes or devices.
    """

    def __init__(self, ops: Sequence[SymmetricOperator]) -> None:
        if not ops:
            raise OperatorError("a direct sum needs at least one operator")
        first = ops[0]
        if any(op.dtype != first.dtype or op.device != first.device for op in ops):
            raise OperatorError("the summands of a direct sum must share dtype and device")
        super().__init__(sum(op.dim for op in ops), first.dtype, first.device)
        self.ops = list(ops)
        self.is_psd = True if all(op.is_psd is True for op in ops) else None
        offsets = [0]
        for op in self.ops:
            offsets.append(offsets[-1] + op.dim)
        self.parts = tuple(slice(a, b) for a, b in zip(offsets[:-1], offsets[1:]))

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        assert self.parts is not None  # set in __init__
        return torch.cat([op.matmat(V[sl]) for op, sl in zip(self.ops, self.parts)], dim=0)

    @property
    def num_samples(self) -> int | None:
        """The summands' samples together (``None`` when one does not say)."""
        counts = [op.num_samples for op in self.ops]
        return None if any(n is None for n in counts) else sum(n for n in counts if n)

    @property
    def batch_dependent(self) -> bool:
        return any(op.batch_dependent for op in self.ops)

    def restrict(self, indices: Sequence[int]) -> DirectSum:
        """The direct sum of the summands at ``indices`` (positions in :attr:`ops`)."""
        return DirectSum([self.ops[i] for i in indices])

    def describe_part(self, i: int) -> dict[str, object]:
        return dict(self.ops[i].describe())

    def describe(self) -> dict[str, object]:
        info = dict(self.ops[0].describe())
        info["num_batches"] = len(self.ops)
        info["dimension"] = self.dim
        return info
