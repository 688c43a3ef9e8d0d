"""``c A``: an operator times a scalar.

Useful to put operators on a common scale (a loss Hessian per sample, ``m`` times the batch
mean) or to flip a spectrum (``-A``'s largest eigenvalues are ``A``'s smallest). Positive
semi-definiteness carries over for ``c >= 0``.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.operators.scaled import Scaled
    >>> Scaled(MatrixOperator(torch.eye(2, dtype=torch.float64), is_psd=True), -2.0).to_dense().tolist()
    [[-2.0, -0.0], [-0.0, -2.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator, WrappedOperator

__all__ = ["Scaled"]


class Scaled(WrappedOperator):
    """``scale * op``, with everything else ``op`` declares.

    Raises:
        OperatorError: a scale that is not a finite number.
    """

    def __init__(self, op: SymmetricOperator, scale: float) -> None:
        if not math.isfinite(scale):
            raise OperatorError(f"scale= must be a finite number, got {scale}")
        super().__init__(op)
        self.scale = float(scale)
        self.is_psd = True if op.is_psd is True and self.scale >= 0 else None

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.op.matmat(V) * self.scale

    def restrict(self, indices: Sequence[int]) -> Scaled:
        return Scaled(self.op.restrict(indices), self.scale)

    def describe(self) -> dict[str, object]:
        return {**self.op.describe(), "scale": self.scale}

    def describe_part(self, i: int) -> dict[str, object]:
        return {**self.op.describe_part(i), "scale": self.scale}
