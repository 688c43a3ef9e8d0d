r"""The local Hessian: the Hessian of a block's back-matching loss (paper digest, sections 2-3).

For block b with input batch ``Z = z_{b-1}`` (m samples) the back-matching loss is the **batch
mean** ``l_b(W, Z) = (1/m) sum_i 1/2 ||t_b^(i) - F_b(W, Z)^(i)||^2`` with target
``t_b = z_b - eta g_b`` (defined once, in :mod:`hessiankit.blocks.backmatching_loss`).

With respect to the weights the local Hessian is ``H_W = d^2 l_b / dW^2``. With respect to the
input it is taken **per sample**, ``H_z = m d^2 l_b / dZ^2``: for a block whose samples do not
couple, its i-th diagonal block is the Hessian of sample i's own matching loss, so an orthogonal
linear block has ``H_z = I`` whatever the batch size (claim 5). Equivalently, it is the Hessian
in the mean-over-batch inner product on the input space.

Kinds:

``"gauss-newton"`` (default)
    ``H_W = (1/m) J_W^T J_W`` and ``H_z = J_z^T J_z``: positive semi-definite, independent of
    eta and of the labels; the paper's local Hessian (the limit eta -> 0). Products: a
    Jacobian-vector product followed by a vector-Jacobian product.
``"exact"``
    the full Hessian of ``l_b`` at the current point, ``GN + c eta sum_j (g_b)_j d^2 F_{b,j}``
    (c = 1/m for weights, 1 for inputs); products by double backprop (or forward-over-reverse).
    Equal to Gauss-Newton for blocks linear in the variable.

Example:
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4, bias=False)).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> H = hk.LocalHessian(hk.capture(net, x), 1).to_dense()
    >>> expected = torch.kron(torch.eye(4, dtype=torch.float64), x.T @ x / 5)  # I kron ZZ^T/m
    >>> bool(torch.allclose(H, expected))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from hessiankit.blocks.backmatching_loss import backmatching_loss, backmatching_target
from hessiankit.blocks.capture import BlockCapture, run_block
from hessiankit.blocks.split import Block
from hessiankit.errors import OperatorError
from hessiankit.operators._engines import Backend, GaussNewtonEngine, HessianEngine, check_backend
from hessiankit.operators.base import SymmetricOperator

__all__ = ["BlockRecord", "Kind", "LocalHessian", "Wrt", "check_kind", "check_wrt"]

Wrt = Literal["weights", "input"]
Kind = Literal["gauss-newton", "exact", "loss"]


def check_wrt(wrt: str) -> Wrt:
    if wrt not in ("weights", "input"):
        raise OperatorError(f"unknown wrt {wrt!r}; use 'weights' or 'input'")
    return wrt  # type: ignore[return-value]


def check_kind(kind: str) -> Kind:
    if kind not in ("gauss-newton", "exact", "loss"):
        raise OperatorError(f"unknown kind {kind!r}; use 'gauss-newton', 'exact' or 'loss'")
    return kind  # type: ignore[return-value]


class BlockRecord:
    """The ``describe()`` record of an operator of one block's (or several blocks') variables.

    Shared by :class:`LocalHessian`, :class:`~hessiankit.operators.all_blocks.AllBlocksLocalHessian`
    and :class:`~hessiankit.operators.loss.LossHessian`, which set the attributes below
    (``eta`` only for the exact kind; ``dtype`` comes from the operator).
    """

    wrt: Wrt
    kind: str
    eta: float | None = None
    capture: BlockCapture
    batch_size: int
    backend: Backend
    dtype: torch.dtype

    def block_record(self, block: int | list[int], name: str, dimension: int) -> dict[str, object]:
        """What the operator is, for reports and JSON: block, variables, kind, point, size."""
        return {
            "block": block,
            "name": name,
            "wrt": self.wrt,
            "kind": self.kind,
            "eta": self.eta if self.kind == "exact" else None,
            "bn": self.capture.bn,
            "batch_size": self.batch_size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "dimension": dimension,
            "backend": self.backend,
        }


class LocalHessian(BlockRecord, SymmetricOperator):
    """Hessian of block b's back-matching loss, w.r.t. its weights or its input.

    A product runs only the block's own function (never the rest of the network). The point
    (weights, input batch, gradient) is the one recorded in ``capture``.

    Args:
        capture: the recorded batch (see :func:`hessiankit.capture`).
        block: index (from 1), module path, ``"model"`` or a :class:`Block`.
        wrt: ``"weights"`` or ``"input"``.
        kind: ``"gauss-newton"`` or ``"exact"``.
        eta: step size of the back-matching target (``"exact"`` only; Gauss-Newton does not
            depend on it).
        backend: ``"double-backprop"`` or ``"forward-over-reverse"``.
        params: with ``wrt="weights"``, the block's parameters to differentiate w.r.t. (the
            model's names, e.g. only the main weight); default every floating-point parameter
            of the block. The rest stay fixed at the captured point.

    Raises:
        OperatorError: the block has no weights (for ``wrt="weights"``), ``params`` names a
            parameter outside the block, the block is not differentiable, or an option is
            unknown.
        DataError: ``kind="exact"`` without labels in the capture.
    """

    is_psd: bool | None
    kind: Literal["gauss-newton", "exact"]
    eta: float

    def __init__(
        self,
        capture: BlockCapture,
        block: int | str | Block,
        *,
        wrt: Wrt = "weights",
        kind: Literal["gauss-newton", "exact"] = "gauss-newton",
        eta: float = 1.0,
        backend: Backend = "double-backprop",
        params: Sequence[str] | None = None,
    ) -> None:
        self.block = capture.split.block(block)
        self.wrt = check_wrt(wrt)
        if check_kind(kind) == "loss":
            raise OperatorError("kind 'loss' is the LossHessian operator; use hessian_operator()")
        self.kind = kind
        self.eta = float(eta)
        self.backend = check_backend(backend)
        self.capture = capture
        self.batch_size = capture.batch_size
        blk, state, bn = self.block, capture.state, capture.bn
        z_in = capture.block_input(blk)
        what = f"block {blk.index} ({blk.name}) w.r.t. its {wrt}"
        if wrt == "weights":
            names = [n for n in blk.param_names if state.params[n].is_floating_point()]
            if params is not None:
                alien = [n for n in params if n not in names]
                if alien:
                    raise OperatorError(
                        f"params {alien} are not floating-point parameters of block "
                        f"{blk.index} ({blk.name}); it has {names}"
                    )
                names = list(params)
            if not names:
                raise OperatorError(
                    f"block {blk.index} ({blk.name}) has no parameters; use wrt='input'"
                )
            primals = [state.params[n] for n in names]

            def f(*ps: torch.Tensor) -> torch.Tensor:
                return run_block(blk, state, bn, z_in, dict(zip(names, ps)))

            # H_W = d^2 l_b / dW^2 (l_b is already a mean over the batch).
            scale = 1.0
        else:
            if params is not None:
                raise OperatorError("params= selects weights; it goes with wrt='weights'")
            primals = [z_in]

            def f(*ps: torch.Tensor) -> torch.Tensor:
                return run_block(blk, state, bn, ps[0])

            # H_z = m d^2 l_b / dZ^2: per sample.
            scale = float(self.batch_size)
        self._primal_names = names if wrt == "weights" else ["input"]
        # c of the Gauss-Newton part c J^T J (what the structured solvers scale their Grams by)
        self._function, self._primals, self._scale = f, primals, scale / self.batch_size
        dim = sum(p.numel() for p in primals)
        super().__init__(dim, state.dtype, primals[0].device)
        if kind == "gauss-newton":
            self.is_psd = True
            # Gauss-Newton part of d^2 l_b: (1/m) J^T J.
            self._engine: GaussNewtonEngine | HessianEngine = GaussNewtonEngine(
                f, primals, scale=scale / self.batch_size, backend=self.backend, what=what
            )
        else:
            self.is_psd = None
            target = backmatching_target(
                capture.block_output(blk), capture.per_sample_grad(blk), self.eta
            )

            def phi(*ps: torch.Tensor) -> torch.Tensor:
                return backmatching_loss(f(*ps), target)

            self._engine = HessianEngine(phi, primals, scale=scale, backend=self.backend, what=what)

    @property
    def primal_names(self) -> list[str]:
        """Names of the tensors a vector is made of, in order (parameter names or ``input``)."""
        return list(self._primal_names)

    def block_function(self) -> tuple[Callable[..., torch.Tensor], list[torch.Tensor], float]:
        """``(F, point, c)``: the block as a function of the variables (one tensor per
        :attr:`primal_names` entry), the point, and the c of the Gauss-Newton part ``c J^T J``."""
        return self._function, list(self._primals), self._scale

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._engine.matmat(V)

    def describe(self) -> dict[str, object]:
        """What this operator is, for reports and JSON."""
        return self.block_record(self.block.index, self.block.name, self.dim)
