r"""Operators over a whole data set: a sweep of a data loader, batches weighted by their size.

Every quantity hessiankit computes is a mean over samples (the training loss, the weight local
Hessian ``(1/m) sum_i J_i^T J_i``). Over a data set of N samples cut into batches of sizes
``m_1, ..., m_K`` (the last one ragged), the data-set operator is therefore

.. math::

    A = \sum_k \frac{m_k}{N} A_k ,

with ``A_k`` the operator of batch k (:class:`LocalHessian`, :class:`LossHessian`,
:class:`AllBlocksLocalHessian`, ...). This is exact, whatever the batch sizes, as long as the
samples do not couple. Batch norm in **train** mode couples them (batch statistics), so the
result would depend on how the data was cut: the operator refuses it unless the data comes
in one batch.

Two ways to pay for it:

``keep_graphs=True`` (default)
    one pass over the loader at construction keeps each batch's operator (and its autograd
    graph); a product then costs one backward per batch. Memory grows with the data set.
``keep_graphs=False``
    nothing is kept; every product sweeps the loader again (capture + product per batch).
    The loader must yield the same samples on every sweep (their order does not matter).

A batch may also be a :class:`~hessiankit.blocks.BlockCapture` already recorded (with the same
``bn``): it is used as it is, so several operators (one per block) can share one capture of
each batch.

Example:
    >>> from hessiankit.operators.dataset import DatasetOperator
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    >>> x = torch.randn(7, 3, dtype=torch.float64)
    >>> data = [x[:3], x[3:6], x[6:]]  # a ragged last batch
    >>> op = DatasetOperator(net, data, lambda cap: hk.LocalHessian(cap, 1))
    >>> bool(torch.allclose(op.to_dense(), torch.kron(torch.eye(2, dtype=torch.float64), x.T @ x / 7)))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from hessiankit.blocks.capture import BlockCapture, LossFn, capture
from hessiankit.blocks.modes import BNMode, check_bn_mode
from hessiankit.blocks.split import BlockSpec, BlockSplit, split_blocks
from hessiankit.errors import DataError, OperatorError
from hessiankit.operators.base import SymmetricOperator

__all__ = ["DatasetOperator", "OperatorFactory", "batch_dependent"]

OperatorFactory = Callable[[BlockCapture], SymmetricOperator]


def batch_dependent(split: BlockSplit, bn: str) -> bool:
    """Whether results depend on how the samples are grouped (batch norm in train mode)."""
    return bn == "train" and any(b.has_bn for b in split)


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if torch.is_tensor(batch):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 1 and torch.is_tensor(batch[0]):
        y = batch[1] if len(batch) > 1 else None
        return batch[0], y
    raise DataError(
        f"a batch must be a tensor x or a pair (x, y), got {type(batch).__name__}; "
        "wrap the data set in a DataLoader that yields (x, y)"
    )


class DatasetOperator(SymmetricOperator):
    """``sum_k (m_k / N) A_k`` over the batches of a data loader.

    Args:
        model: the network, or its :class:`BlockSplit`.
        data: an iterable of batches ``x`` or ``(x, y)`` (a ``DataLoader``, a list) or of
            :class:`BlockCapture` objects of ``model``; it is iterated once at construction,
            and once per product with ``keep_graphs=False``.
        make: builds one batch's operator from its capture, e.g.
            ``lambda cap: LocalHessian(cap, 2)``; every batch's operator must have the same
            dimension (so ``wrt="input"`` is refused: its dimension grows with the batch).
        loss_fn: as in :func:`hessiankit.capture`.
        bn: batch-norm mode.
        dtype: analysis dtype (default: the model's).
        blocks: explicit block split (as in :func:`hessiankit.split_blocks`).
        keep_graphs: keep every batch's operator (fast products, memory grows with the data)
            or rebuild them on every product.

    Attributes:
        num_samples: N, the number of samples swept.
        batch_sizes: ``m_k`` per batch.
        batch_dependent: whether results would depend on the batching (batch norm in train
            mode); such an operator only exists for a single batch.

    Raises:
        DataError: an empty loader, a malformed batch, or batch norm in train mode over more
            than one batch.
        OperatorError: batch operators of different dimensions.
    """

    def __init__(
        self,
        model: nn.Module | BlockSplit,
        data: Iterable[Any],
        make: OperatorFactory,
        *,
        loss_fn: str | LossFn = "cross-entropy",
        bn: BNMode = "eval",
        dtype: torch.dtype | None = None,
        blocks: Sequence[BlockSpec] | None = None,
        keep_graphs: bool = True,
    ) -> None:
        self.split = model if isinstance(model, BlockSplit) else split_blocks(model, blocks)
        self.bn = check_bn_mode(bn)
        self.data = data
        self.make = make
        self.loss_fn = loss_fn
        self.capture_dtype = dtype
        self.keep_graphs = bool(keep_graphs)
        self._batch_dependent = batch_dependent(self.split, self.bn)
        ops: list[SymmetricOperator] = []
        sizes: list[int] = []
        first: SymmetricOperator | None = None
        for op, m in self._sweep():
            if first is None:
                first = op
            elif op.dim != first.dim:
                raise OperatorError(
                    f"the batches give operators of dimensions {first.dim} and {op.dim}; a data-set "
                    "operator needs one dimension (wrt='weights', not 'input')"
                )
            sizes.append(m)
            if self.keep_graphs:
                ops.append(op)
            if self._batch_dependent and len(sizes) > 1:
                raise DataError(
                    "batch norm in train mode couples the samples of a batch, so a result over "
                    "several batches would depend on how the data was split; use bn='eval', or "
                    "give the data as one batch"
                )
        if first is None:
            raise DataError("the data loader yielded no batch; give at least one sample")
        self.batch_sizes: tuple[int, ...] = tuple(sizes)
        self._num_samples = sum(sizes)
        self._ops = ops
        self._first = first
        super().__init__(first.dim, first.dtype, first.device)
        self.is_psd = first.is_psd
        self.parts = first.parts

    @property
    def first_batch(self) -> SymmetricOperator:
        """The first batch's operator: every batch's operator has its variables and its
        block structure (what structure detection looks at)."""
        return self._first

    @property
    def num_samples(self) -> int:
        """N, the number of samples swept."""
        return self._num_samples

    @property
    def batch_dependent(self) -> bool:
        """Batch norm in train mode: such an operator only exists for a single batch."""
        return self._batch_dependent

    def _sweep(self) -> Iterable[tuple[SymmetricOperator, int]]:
        for batch in self.data:
            if isinstance(batch, BlockCapture):
                if batch.bn != self.bn:
                    raise DataError(
                        f"a capture recorded with bn={batch.bn!r} was given to an operator with "
                        f"bn={self.bn!r}; capture with the same batch-norm mode"
                    )
                yield self.make(batch), batch.batch_size
                continue
            x, y = _unpack(batch)
            cap = capture(
                self.split, x, y, loss_fn=self.loss_fn, bn=self.bn, dtype=self.capture_dtype
            )
            yield self.make(cap), cap.batch_size

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(V)
        if self.keep_graphs:
            for op, m in zip(self._ops, self.batch_sizes):
                out += op.matmat(V) * (m / self.num_samples)
            return out
        seen = 0
        for op, m in self._sweep():
            out += op.matmat(V) * (m / self.num_samples)
            seen += m
        if seen != self.num_samples:
            raise DataError(
                f"the data loader yielded {seen} samples on this sweep and {self.num_samples} on "
                "the first; give a loader that yields the same data every time (drop_last=False)"
            )
        return out

    def describe_part(self, i: int) -> dict[str, object]:
        info = dict(self._first.describe_part(i))
        info.update(batch_size=self.num_samples, num_batches=len(self.batch_sizes))
        return info

    def describe(self) -> dict[str, object]:
        info = dict(self._first.describe())
        info.update(batch_size=self.num_samples, num_batches=len(self.batch_sizes))
        return info
