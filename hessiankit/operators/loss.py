r"""The ordinary Hessian of the training loss, for comparison with other tools.

``L = (1/m) sum_i ell(z_B^{(i)}, y^{(i)})`` is the batch-mean training loss. With respect to the
weights of block b (or of the whole model, block ``"model"``) this operator is
``d^2 L / dW_b^2``: the quantity PyHessian, curvlinops and hessian-eigenthings compute (with
mean reduction). With respect to a block's input it is taken per sample like the local
Hessian, ``m d^2 L / dz_{b-1}^2``.

A product runs blocks b..B only: the blocks below b do not depend on ``W_b``, and their output
``z_{b-1}`` was recorded by the capture.

Example:
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    >>> x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    >>> H = hk.LossHessian(hk.capture(net, x, y, loss_fn="mse"), "model").to_dense()
    >>> bool(torch.allclose(H, torch.kron(torch.eye(2, dtype=torch.float64), x.T @ x / 4)))
    True
"""

from __future__ import annotations

import torch

from hessiankit.blocks.capture import BlockCapture, run_block
from hessiankit.operators._eval_bn import eval_bn_as_affine
from hessiankit.blocks.split import Block
from hessiankit.errors import DataError, OperatorError
from hessiankit.operators._engines import Backend, HessianEngine, check_backend
from hessiankit.operators.base import SymmetricOperator
from hessiankit.operators.local import BlockRecord, Wrt, check_wrt

__all__ = ["LossHessian"]


class LossHessian(BlockRecord, SymmetricOperator):
    """Hessian of the batch-mean training loss w.r.t. a block's weights or input.

    Args:
        capture: the recorded batch; it must hold labels.
        block: index (from 1), module path, ``"model"`` (all parameters) or a :class:`Block`.
        wrt: ``"weights"`` or ``"input"``.
        backend: ``"double-backprop"`` or ``"forward-over-reverse"``.

    Raises:
        DataError: the capture holds no labels.
        OperatorError: the block has no weights (for ``wrt="weights"``).
    """

    kind = "loss"

    def __init__(
        self,
        capture: BlockCapture,
        block: int | str | Block,
        *,
        wrt: Wrt = "weights",
        backend: Backend = "double-backprop",
    ) -> None:
        if capture.targets is None or capture.loss_fn is None:
            raise DataError(
                "kind 'loss' needs labels; give data with labels (y) or use kind 'gauss-newton'"
            )
        self.block = capture.split.block(block)
        self.wrt = check_wrt(wrt)
        self.backend = check_backend(backend)
        self.capture = capture
        self.batch_size = capture.batch_size
        blk, state, bn = self.block, capture.state, capture.bn
        split = capture.split
        above = [] if blk.index == 0 else list(split.blocks[blk.index :])
        y, loss_fn = capture.targets, capture.loss_fn
        z_in = capture.block_input(blk)

        def rest(z: torch.Tensor) -> torch.Tensor:
            for b in above:
                z = run_block(b, state, bn, z)
            return loss_fn(z, y)

        if self.wrt == "weights":
            names = [n for n in blk.param_names if state.params[n].is_floating_point()]
            if not names:
                raise OperatorError(
                    f"block {blk.index} ({blk.name}) has no parameters; use wrt='input'"
                )
            primals = [state.params[n] for n in names]

            def phi(*ps: torch.Tensor) -> torch.Tensor:
                return rest(run_block(blk, state, bn, z_in, dict(zip(names, ps))))

            scale = 1.0
        else:
            names = ["input"]
            primals = [z_in]

            def phi(*ps: torch.Tensor) -> torch.Tensor:
                return rest(run_block(blk, state, bn, ps[0]))

            scale = float(self.batch_size)
        self._primal_names = names
        if bn == "eval":  # running statistics: BN is affine, and so is its cheap double backward
            phi = eval_bn_as_affine(phi)
        super().__init__(sum(p.numel() for p in primals), state.dtype, primals[0].device)
        what = f"the loss w.r.t. block {blk.index} ({blk.name})'s {self.wrt}"
        self._engine = HessianEngine(phi, primals, scale=scale, backend=self.backend, what=what)

    @property
    def primal_names(self) -> list[str]:
        return list(self._primal_names)

    def gradient(self) -> torch.Tensor:
        """The gradient of the operator's function at the recorded point, one ``dim`` vector.

        ``dL/dW`` of the block's weights (or ``m dL/dz`` of its input, the scale of this
        operator), free with the double-backprop graph. A good Lanczos start for the top
        eigenvalues: the gradient lies mostly in the top eigenspace of the loss Hessian
        (Gur-Ari, Roberts and Dyer, 2018), see :func:`~hessiankit.solvers.lanczos.lanczos`'s
        ``start``.

        Example:
            >>> torch.manual_seed(0) and None
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
            >>> x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
            >>> op = hk.LossHessian(hk.capture(net, x, y), "model")
            >>> loss = torch.nn.functional.cross_entropy(net(x), y)
            >>> g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(net.parameters()))])
            >>> bool(torch.allclose(op.gradient(), g))
            True
        """
        return self._engine.gradient()

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._engine.matmat(V)

    def describe(self) -> dict[str, object]:
        return self.block_record(self.block.index, self.block.name, self.dim)
