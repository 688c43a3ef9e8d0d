"""An operator that reports its products as they happen (progress bars, logs).

:class:`Reporting` is the operator it wraps, product for product; after every product it calls
``report(products_so_far, total)``, so progress shows for every solver, the dense one
included (its total is the dimension: it multiplies by the identity's columns).

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.operators.observed import Reporting
    >>> seen = []
    >>> A = Reporting(MatrixOperator(torch.eye(3, dtype=torch.float64)),
    ...               lambda done, total: seen.append((done, total)), 3)
    >>> _ = A.to_dense(chunk=2)
    >>> seen
    [(2, 3), (3, 3)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hessiankit.operators.base import SymmetricOperator, WrappedOperator

__all__ = ["Reporting"]


class Reporting(WrappedOperator):
    """``op`` itself, calling ``report(products_so_far, total)`` after every product.

    Everything the operator declares (``describe``, ``parts``, ``capture``, ``num_samples``,
    ``batch_dependent``, ``restrict``) is that of ``op``; a restricted copy keeps counting
    from where this one is.

    Args:
        op: the operator.
        report: the observer.
        total: the expected number of products, when known (passed on to ``report``).
    """

    def __init__(
        self,
        op: SymmetricOperator,
        report: Callable[[int, int | None], None],
        total: int | None = None,
        *,
        offset: int = 0,
    ) -> None:
        super().__init__(op)
        self.report = report
        self.total = total
        self._offset = offset

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.op.matmat(V)
        self.report(self._offset + self.num_products + V.shape[1], self.total)
        return out

    @property
    def observed(self) -> SymmetricOperator:
        return self.op.observed

    def restrict(self, indices: Sequence[int]) -> Reporting:
        inner = self.op.restrict(indices)
        return Reporting(inner, self.report, self.total, offset=self._offset + self.num_products)

    def describe(self) -> dict[str, object]:
        return dict(self.op.describe())

    def describe_part(self, i: int) -> dict[str, object]:
        return dict(self.op.describe_part(i))
