r"""The Gauss-Newton local Hessian's twin on the block's output space: ``G = c J J^T``.

For ``H = c J^T J`` (``J = d vec F_b / d vec x`` at the captured point, x the block's weights or
its input) the output-space Gram operator ``G = c J J^T`` has the same nonzero eigenvalues with
the same multiplicities: ``J^T J y = lambda y`` with ``lambda != 0`` gives
``J J^T (J y) = lambda (J y)`` and ``J y != 0``. Its dimension is the number of outputs, not of
variables, which is what makes it the cheaper route for a block whose outputs per channel (or per
sample) are fewer than its weights per channel (see :mod:`hessiankit.solvers.separable`).

One product ``u -> c J (J^T u)`` is one vector-Jacobian product followed by one Jacobian-vector
product, both through the block's own graph, built once (the double-vjp identity
``J v = d/du <J^T u, v>``, as :mod:`hessiankit.operators._engines` does).

Example (the same nonzero eigenvalues; G has ``dim(G) - dim(H)`` more zeros):
    >>> from hessiankit.operators.output_gram import OutputGram
    >>> g = torch.Generator().manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> H = hk.LocalHessian(hk.capture(net, torch.randn(5, 3, dtype=torch.float64, generator=g)), 1)
    >>> G = OutputGram.of(H)
    >>> h, g = (torch.linalg.eigvalsh(A.to_dense()) for A in (H, G))
    >>> H.dim, G.dim, bool(torch.allclose(g[G.dim - H.dim :], h)), float(g[: G.dim - H.dim].abs().max()) < 1e-12
    (16, 20, True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hessiankit._precision import full_precision
from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.operators.local import LocalHessian

__all__ = ["OutputGram"]


class OutputGram(SymmetricOperator):
    """``G = c J J^T`` on the outputs of ``f`` (flattened), for ``J = df/dprimals``.

    Args:
        f: the function (primals -> one tensor).
        primals: the point.
        scale: the constant c.
        what: words for error messages.

    Attributes:
        output_shape: shape of ``f``'s output (a vector is its flattening).

    Raises:
        OperatorError: the output does not depend on the primals.
    """

    is_psd: bool | None = True

    def __init__(
        self,
        f: Callable[..., torch.Tensor],
        primals: Sequence[torch.Tensor],
        *,
        scale: float,
        what: str = "the block",
    ) -> None:
        self.scale = float(scale)
        self._primals = [p.detach().requires_grad_(True) for p in primals]
        with torch.enable_grad(), full_precision():
            self._out = f(*self._primals)
            if not self._out.requires_grad:
                raise OperatorError(f"{what} does not depend on its variables; no Jacobian")
            self._u = torch.zeros_like(self._out, requires_grad=True)
            jt_u = torch.autograd.grad(
                self._out, self._primals, self._u, create_graph=True, allow_unused=True
            )
        self._jt_u = [(i, g) for i, g in enumerate(jt_u) if g is not None and g.requires_grad]
        self.output_shape = tuple(self._out.shape)
        super().__init__(self._out.numel(), self._out.dtype, self._out.device)

    @classmethod
    def of(cls, op: LocalHessian) -> OutputGram:
        """The output Gram operator of a Gauss-Newton :class:`LocalHessian` (same c, same point).

        Raises:
            OperatorError: ``op`` is not of kind ``"gauss-newton"``.
        """
        if op.kind != "gauss-newton":
            raise OperatorError(
                f"the output Gram operator exists for kind='gauss-newton' only, not {op.kind!r}"
            )
        f, primals, scale = op.block_function()
        what = f"block {op.block.index} ({op.block.name}) w.r.t. its {op.wrt}"
        return cls(f, primals, scale=scale, what=what)

    def _column(self, u: torch.Tensor) -> torch.Tensor:
        with full_precision():
            jt_u = torch.autograd.grad(
                self._out, self._primals, u, retain_graph=True, allow_unused=True
            )
            if not self._jt_u:
                return torch.zeros_like(u)
            outs = [g for _, g in self._jt_u]
            tans = [
                jt_u[i] if jt_u[i] is not None else torch.zeros_like(self._primals[i])
                for i, _ in self._jt_u
            ]
            got = torch.autograd.grad(outs, [self._u], tans, retain_graph=True, allow_unused=True)
        Jv = got[0]
        return torch.zeros_like(u) if Jv is None else Jv

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        cols = [
            self._column(V[:, j].reshape(self.output_shape)).reshape(-1) for j in range(V.shape[1])
        ]
        return torch.stack(cols, dim=1) * self.scale
