"""Symmetric linear operators on flat vectors.

Solvers only see this interface: a dimension, a dtype, a device and ``matmat``. Vectors are flat
1-D tensors of length ``dim`` (matrices ``dim x k``); an operator that acts on several tensors
(a block's weight and bias) flattens and concatenates them in a fixed order.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> A = MatrixOperator(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    >>> A.matvec(torch.tensor([1.0, 1.0], dtype=torch.float64)).tolist()
    [3.0, 3.0]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hessiankit.errors import NumericalError, OperatorError

if TYPE_CHECKING:
    import scipy.sparse.linalg as spla

__all__ = ["MatrixOperator", "SymmetricOperator", "WrappedOperator", "dense_memory_bytes"]


def dense_memory_bytes(dim: int, dtype: torch.dtype = torch.float64) -> int:
    """Bytes a ``dim x dim`` matrix of ``dtype`` takes (what materialising costs at least)."""
    return dim * dim * torch.empty((), dtype=dtype).element_size()


class SymmetricOperator(ABC):
    """A symmetric linear map ``R^dim -> R^dim`` known through products.

    Subclasses implement :meth:`_matmat`; this base casts inputs, checks shapes, counts
    products (one per column) and raises :class:`~hessiankit.errors.NumericalError` when a
    product is not finite. What solvers, reports and wrappers may ask of any operator is
    declared here with a default, so no caller has to probe for it:

    * :meth:`describe` - what the operator is, for reports and JSON (default ``{}``);
    * :attr:`parts` - the diagonal blocks as slices when the operator is block-diagonal
      ``diag(A_1, ..., A_B)`` (default ``None``: not known to be), with :meth:`describe_part`
      and :meth:`restrict` (a block-diagonal operator on a subset of its blocks; default:
      not supported, :attr:`can_restrict` is ``False``);
    * :attr:`capture` - the recorded batch the operator is built on (default ``None``);
    * :attr:`num_samples` - how many samples the operator averages over (default: the
      capture's batch size, ``None`` without a capture);
    * :attr:`batch_dependent` - whether the operator depends on how samples are grouped
      into batches (default: batch norm in train mode in the capture's model).

    Attributes:
        dim: dimension n.
        dtype: dtype products are computed in.
        device: device products are computed on.
        is_psd: ``True`` when the operator is positive semi-definite by construction
            (Gauss-Newton), ``None`` when unknown.
        num_products: products computed so far (columns, not calls).
    """

    is_psd: bool | None = None
    #: the recorded batch (a :class:`~hessiankit.blocks.BlockCapture`) the operator is built
    #: on; ``None``: not one capture's operator. Typed ``Any`` so the operators that set it in
    #: ``__init__`` keep their own narrower type.
    capture: Any = None
    #: the diagonal blocks as disjoint slices of ``range(dim)`` (``None``: not block-diagonal).
    parts: tuple[slice, ...] | None = None

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_products = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    @property
    def num_samples(self) -> int | None:
        """Samples the operator averages over: the capture's batch size by default."""
        return None if self.capture is None else int(self.capture.batch_size)

    @property
    def batch_dependent(self) -> bool:
        """Whether the operator depends on how the samples are grouped into batches: by
        default, batch norm in train mode (batch statistics) in the capture's model."""
        cap = self.capture
        return cap is not None and cap.bn == "train" and any(b.has_bn for b in cap.split)

    @property
    def observed(self) -> SymmetricOperator:
        """The operator whose products this one returns unchanged (itself, unless this is an
        observer such as :class:`~hessiankit.operators.observed.Reporting`): what structure
        detection looks at."""
        return self

    @property
    def can_restrict(self) -> bool:
        """Whether :meth:`restrict` works: the subclass implements it."""
        return type(self).restrict is not SymmetricOperator.restrict

    def gradient(self) -> torch.Tensor | None:
        """The gradient, at the recorded point, of the loss whose Hessian this operator is, as
        one ``dim`` vector; ``None`` when it has none (default: a local Hessian or a matrix;
        :class:`~hessiankit.operators.loss.LossHessian` and the GGN return theirs)."""
        return None

    def describe(self) -> dict[str, object]:
        """What this operator is, for reports and JSON (default: nothing known)."""
        return {}

    def describe_part(self, i: int) -> dict[str, object]:
        """What diagonal block ``i`` of :attr:`parts` is (default ``{"part": i}``)."""
        return {"part": i}

    def restrict(self, indices: Sequence[int]) -> SymmetricOperator:
        """The operator on a subset of its diagonal blocks (positions in :attr:`parts`).

        Raises:
            OperatorError: the operator cannot drop blocks (see :attr:`can_restrict`).
        """
        raise OperatorError(
            f"{type(self).__name__} cannot be restricted to some of its blocks; "
            "use an operator with can_restrict (e.g. AllBlocksLocalHessian)"
        )

    @abstractmethod
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        """Products with the columns of ``V`` (``dim x k``, operator dtype and device)."""

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``A @ V`` for a ``dim x k`` matrix; the result has the operator's dtype."""
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise OperatorError(f"expected a ({self.dim}, k) matrix, got {tuple(V.shape)}")
        if V.shape[1] == 0:
            return V.new_zeros((self.dim, 0), dtype=self.dtype, device=self.device)
        out = self._matmat(V.to(device=self.device, dtype=self.dtype))
        self.num_products += V.shape[1]
        if not bool(torch.isfinite(out).all()):  # a NaN eigenvalue must never look converged
            raise NumericalError(
                "an operator product is NaN or Inf; check the model's weights, the data and "
                "the options (eta) for non-finite or overflowing values, or compute in float64"
            )
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A @ v`` for a vector of length ``dim``."""
        if v.ndim != 1 or v.shape[0] != self.dim:
            raise OperatorError(f"expected a vector of length {self.dim}, got {tuple(v.shape)}")
        return self.matmat(v[:, None])[:, 0]

    def __matmul__(self, other: torch.Tensor) -> torch.Tensor:
        return self.matvec(other) if other.ndim == 1 else self.matmat(other)

    def to_scipy(self) -> spla.LinearOperator:
        """A :class:`scipy.sparse.linalg.LinearOperator` in float64 (host arrays).

        Each SciPy product moves one vector between host and device; for long runs on a GPU
        prefer hessiankit's own solvers, which keep vectors on the device.
        """
        import scipy.sparse.linalg as spla  # here: SciPy costs every other import ~0.4 s

        def mm(x: np.ndarray) -> np.ndarray:
            X = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(self.dim, -1)
            return self.matmat(X).to(torch.float64).cpu().numpy()

        return spla.LinearOperator(
            shape=self.shape,
            matvec=lambda x: mm(x).ravel(),
            matmat=mm,
            rmatvec=lambda x: mm(x).ravel(),
            rmatmat=mm,
            dtype=np.float64,
        )

    def to_dense(self, *, chunk: int = 64, max_bytes: int = 4 * 2**30) -> torch.Tensor:
        """Materialise the operator as a ``dim x dim`` float64 matrix (products with I).

        Args:
            chunk: columns per product call.
            max_bytes: refuse when the float64 matrix would exceed this many bytes.

        Raises:
            OperatorError: the matrix would not fit in ``max_bytes``.
        """
        need = dense_memory_bytes(self.dim)
        if need > max_bytes:
            raise OperatorError(
                f"materialising this operator (dimension {self.dim}) needs "
                f"{need / 2**30:.1f} GiB, over the {max_bytes / 2**30:.1f} GiB limit; "
                "use method 'lanczos' instead of 'dense'"
            )
        out = torch.empty((self.dim, self.dim), dtype=torch.float64, device=self.device)
        for start in range(0, self.dim, chunk):
            stop = min(start + chunk, self.dim)
            E = torch.zeros((self.dim, stop - start), dtype=self.dtype, device=self.device)
            E[torch.arange(start, stop), torch.arange(stop - start)] = 1
            out[:, start:stop] = self.matmat(E).to(torch.float64)
        return out


class WrappedOperator(SymmetricOperator):
    """An operator built on another one, ``op``, that declares what ``op`` declares: its
    parts, capture, samples, batch dependence and whether it can be restricted. Subclasses
    implement :meth:`_matmat` (and :meth:`restrict`, :meth:`describe` where they change them)."""

    def __init__(self, op: SymmetricOperator) -> None:
        super().__init__(op.dim, op.dtype, op.device)
        self.op = op
        self.is_psd = op.is_psd
        self.parts = op.parts
        self.capture = op.capture

    @property
    def num_samples(self) -> int | None:
        return self.op.num_samples

    @property
    def batch_dependent(self) -> bool:
        return self.op.batch_dependent

    @property
    def can_restrict(self) -> bool:
        return self.op.can_restrict


class MatrixOperator(SymmetricOperator):
    """A symmetric matrix held in memory, as an operator (tests, analytic references).

    Args:
        matrix: square symmetric tensor or array.
        is_psd: declare positive semi-definiteness when known.
    """

    def __init__(self, matrix: torch.Tensor | np.ndarray, *, is_psd: bool | None = None) -> None:
        M = torch.as_tensor(matrix)
        if M.ndim != 2 or M.shape[0] != M.shape[1]:
            raise OperatorError(f"a MatrixOperator needs a square matrix, got {tuple(M.shape)}")
        if not M.is_floating_point():
            M = M.to(torch.float64)
        super().__init__(M.shape[0], M.dtype, M.device)
        self.matrix = M
        self.is_psd = is_psd

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V
