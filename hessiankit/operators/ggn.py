r"""The generalized Gauss-Newton matrix of the training loss: ``G = J^T H_L J``.

For the batch-mean training loss ``L(W) = (1/m) sum_i ell(f(W, x_i), y_i)`` with network output
``z = f(W, X)`` (all m samples stacked), the loss Hessian splits into

.. math::

    \nabla^2_W L = J^T H_L J + \sum_j (\partial L / \partial z_j)\, \nabla^2_W z_j,
    \qquad J = \partial \operatorname{vec} z / \partial W,\quad
    H_L = \partial^2 L / \partial z^2 .

The first term is the generalized Gauss-Newton matrix (GGN). It is positive semi-definite for a
loss convex in the output (cross-entropy, squared error), needs no second derivative of the
network, and for cross-entropy equals the Fisher information of the model's predictive
distribution. ``H_L`` is block-diagonal over samples (``(diag(p_i) - p_i p_i^T)/m`` for
cross-entropy, ``I/m`` for the squared error), so it carries the batch mean.

With ``block`` a block b of the chain, ``W`` is that block's weights only and the operator is the
**diagonal block of the global GGN** for those weights, ``P_b^T G P_b`` (``P_b`` picks the
block's coordinates): ``J`` is then ``d z_B / d W_b`` through blocks b..B, and the blocks below b
are not run (their output ``z_{b-1}`` was recorded by the capture). ``block="model"`` is the
whole network.

A product ``v -> J^T (H_L (J v))`` is one Jacobian-vector product (the double-vjp identity
``J v = d/du <J^T u, v>``), one Hessian-vector product of the loss w.r.t. the output, and one
vector-Jacobian product, all through graphs built once at construction.

Example:
    >>> from hessiankit.operators import GGNOperator
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    >>> x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    >>> G = GGNOperator(hk.capture(net, x, y, loss_fn="mse"), "model").to_dense()
    >>> bool(torch.allclose(G, torch.kron(torch.eye(2, dtype=torch.float64), x.T @ x / 4)))
    True
"""

from __future__ import annotations

import torch

from hessiankit._precision import full_precision
from hessiankit.blocks.capture import BlockCapture, run_block
from hessiankit.blocks.split import Block
from hessiankit.errors import DataError, OperatorError
from hessiankit.operators._engines import flatten, unflatten
from hessiankit.operators.base import SymmetricOperator

__all__ = ["GGNOperator"]


class GGNOperator(SymmetricOperator):
    """``J^T H_L J`` of the batch-mean training loss w.r.t. a block's weights (or all weights).

    Args:
        capture: the recorded batch; it must hold labels (the loss and its targets define
            ``H_L``, though for cross-entropy and the squared error ``H_L`` does not depend on
            the label values).
        block: index (from 1), module path, ``"model"`` (every parameter, default) or a
            :class:`~hessiankit.blocks.split.Block`.

    Attributes:
        block: the block whose weights are the variables.
        primal_names: the model's names of the parameters, in the order of a vector.

    Raises:
        DataError: the capture holds no labels.
        OperatorError: the block has no floating-point parameters.
    """

    kind = "ggn"

    def __init__(self, capture: BlockCapture, block: int | str | Block = "model") -> None:
        if capture.targets is None or capture.loss_fn is None:
            raise DataError("the GGN needs labels (the loss defines H_L); give data with labels y")
        self.capture = capture
        self.block = capture.split.block(block)
        blk, state, bn = self.block, capture.state, capture.bn
        names = [n for n in blk.param_names if state.params[n].is_floating_point()]
        if not names:
            raise OperatorError(f"block {blk.index} ({blk.name}) has no parameters")
        self.primal_names = names
        above = [] if blk.index == 0 else list(capture.split.blocks[blk.index :])
        z_in = capture.block_input(blk)
        self._primals = [state.params[n].detach().requires_grad_(True) for n in names]
        y, loss_fn = capture.targets, capture.loss_fn
        with torch.enable_grad(), full_precision():
            out = run_block(blk, state, bn, z_in, dict(zip(names, self._primals)))
            for b in above:
                out = run_block(b, state, bn, out)
            if not out.requires_grad:
                raise OperatorError(f"the network output does not depend on block {blk.index}")
            self._out = out
            # J v through the double-vjp identity: J^T u is linear in u.
            self._u = torch.zeros_like(out, requires_grad=True)
            jt_u = torch.autograd.grad(
                out, self._primals, self._u, create_graph=True, allow_unused=True
            )
            self._jt_u = [(i, g) for i, g in enumerate(jt_u) if g is not None and g.requires_grad]
            # H_L w = d/dz <dL/dz, w>, on a detached copy of the output (the loss only).
            self._z = out.detach().requires_grad_(True)
            self._dl_dz = torch.autograd.grad(loss_fn(self._z, y), self._z, create_graph=True)[0]
        super().__init__(sum(p.numel() for p in self._primals), state.dtype, out.device)
        self.is_psd = True

    def gradient(self) -> torch.Tensor:
        """``dL/dW`` at the recorded point (``J^T dL/dz``), one ``dim`` vector."""
        with full_precision():
            g = torch.autograd.grad(
                self._out, self._primals, self._dl_dz.detach(), retain_graph=True, allow_unused=True
            )
        parts = [torch.zeros_like(p) if t is None else t for t, p in zip(g, self._primals)]
        return torch.cat([t.reshape(-1) for t in parts]).detach()

    def _column(self, tangents: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self._jt_u:
            return [torch.zeros_like(p) for p in self._primals]
        outs = [g for _, g in self._jt_u]
        tans = [tangents[i] for i, _ in self._jt_u]
        Jv = torch.autograd.grad(outs, [self._u], tans, retain_graph=True)[0]
        if not self._dl_dz.requires_grad:  # a loss linear in the output: H_L = 0
            return [torch.zeros_like(p) for p in self._primals]
        HJv = torch.autograd.grad(self._dl_dz, self._z, Jv, retain_graph=True)[0]
        got = torch.autograd.grad(
            self._out, self._primals, HJv, retain_graph=True, allow_unused=True
        )
        return [torch.zeros_like(p) if t is None else t for t, p in zip(got, self._primals)]

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        parts = unflatten(V, self._primals)
        k = V.shape[1]
        with full_precision():
            cols = [self._column([p[j] for p in parts]) for j in range(k)]
        out = [torch.stack([c[i] for c in cols]) for i in range(len(self._primals))]
        return flatten(out, k)

    def describe(self) -> dict[str, object]:
        """What this operator is, for reports and JSON."""
        return {
            "block": self.block.index,
            "name": self.block.name,
            "wrt": "weights",
            "kind": "ggn",
            "bn": self.capture.bn,
            "batch_size": self.capture.batch_size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "dimension": self.dim,
        }
