r"""Every block's local Hessian from one product: the block-diagonal Hessian of the summed losses.

The back-matching loss of block b, ``l_b(W_b, z_{b-1})``, depends on the block's own weights
and input only: its input ``z_{b-1}`` and target ``t_b = z_b - eta g_b`` are *recorded*
(detached) by the capture. So the sum ``sum_b l_b`` over the blocks has a block-diagonal Hessian

.. math::

    \nabla^2_{(W_1, \dots, W_B)} \sum_b l_b = \operatorname{diag}(H_{W_1}, \dots, H_{W_B}),

and one product with it (one forward through every block on its recorded input, one backward)
returns every block's local-Hessian product at once, instead of B separate products each with
its own graph. The same holds w.r.t. the inputs (``diag(H_{z_0}, ..., H_{z_{B-1}})``, each taken
per sample as in :class:`~hessiankit.operators.local.LocalHessian`) and for the Gauss-Newton
kind, whose Jacobian ``d (F_1, ..., F_B) / d (W_1, ..., W_B)`` is block-diagonal for the same
reason.

Tied weights (one tensor used by modules of several blocks) keep this exact: the vector holds
the tensor once *per block* that uses it, and each copy is a separate variable that only its own
block's loss reads, so the Hessian is still ``diag(H_1, ..., H_B)``, each ``H_b`` the block's
local Hessian with the tensor as one of its variables (``tests/blocks/test_tied.py`` checks it
against hand-written references). It is not the Hessian w.r.t. the model's distinct tensors,
which would add the shared tensor's blocks together; no caller wants that one.

Use :func:`hessiankit.solvers.blockwise.blockwise_spectra` to run one Lanczos iteration per
block in lockstep on this operator (the blocks' spectra stay apart; a Krylov run on the whole
block-diagonal matrix would mix them).

Example:
    >>> from hessiankit.operators.all_blocks import AllBlocksLocalHessian
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> cap = hk.capture(net, torch.randn(6, 3, dtype=torch.float64))
    >>> H = AllBlocksLocalHessian(cap).to_dense()
    >>> H1, H2 = (hk.LocalHessian(cap, b).to_dense() for b in (1, 2))
    >>> bool(torch.allclose(H, torch.block_diag(H1, H2)))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from hessiankit.blocks.backmatching_loss import backmatching_loss, backmatching_target
from hessiankit.blocks.capture import BlockCapture, run_block
from hessiankit.blocks.split import Block
from hessiankit.errors import OperatorError
from hessiankit.operators._engines import Backend, GaussNewtonEngine, HessianEngine, check_backend
from hessiankit.operators.base import SymmetricOperator
from hessiankit.operators.local import BlockRecord, Wrt, check_kind, check_wrt

__all__ = ["AllBlocksLocalHessian"]


class AllBlocksLocalHessian(BlockRecord, SymmetricOperator):
    """``diag(H_1, ..., H_B)``: the local Hessians of several blocks as one operator.

    Vectors are the concatenation of the blocks' vectors in block order (each block's own
    order is that of :class:`~hessiankit.operators.local.LocalHessian`); :attr:`parts` gives
    each block's slice.

    Args:
        capture: the recorded batch.
        blocks: the blocks (indices from 1, module paths or :class:`Block`); default every
            block (with ``wrt="weights"``: every block that has weights).
        wrt: ``"weights"`` or ``"input"``.
        kind: ``"gauss-newton"`` or ``"exact"``.
        eta: back-matching step size (``"exact"`` only).
        backend: ``"double-backprop"`` or ``"forward-over-reverse"``.

    Raises:
        OperatorError: no block qualifies, a named block has no weights, or an option is
            unknown.
        DataError: ``kind="exact"`` without labels in the capture.
    """

    kind: Literal["gauss-newton", "exact"]
    eta: float

    def __init__(
        self,
        capture: BlockCapture,
        blocks: Sequence[int | str | Block] | None = None,
        *,
        wrt: Wrt = "weights",
        kind: Literal["gauss-newton", "exact"] = "gauss-newton",
        eta: float = 1.0,
        backend: Backend = "double-backprop",
    ) -> None:
        self.wrt = check_wrt(wrt)
        if check_kind(kind) == "loss":
            raise OperatorError(
                "kind 'loss' couples the blocks (its Hessian is not block-diagonal); "
                "use LossHessian(capture, 'model')"
            )
        self.kind = kind
        self.eta = float(eta)
        self.backend = check_backend(backend)
        self.capture = capture
        self.batch_size = capture.batch_size
        state, bn = capture.state, capture.bn

        def names_of(b: Block) -> list[str]:
            return [n for n in b.param_names if state.params[n].is_floating_point()]

        if blocks is None:
            chosen = [b for b in capture.split if wrt == "input" or names_of(b)]
        else:
            chosen = [capture.split.block(b) for b in blocks]
        if not chosen:
            raise OperatorError("no block has weights; use wrt='input'")
        primals: list[torch.Tensor] = []
        owners: list[tuple[Block, list[str], int]] = []  # block, names, first primal index
        for b in chosen:
            if wrt == "weights":
                names = names_of(b)
                if not names:
                    raise OperatorError(
                        f"block {b.index} ({b.name}) has no parameters; use wrt='input'"
                    )
                owners.append((b, names, len(primals)))
                primals.extend(state.params[n] for n in names)
            else:
                owners.append((b, ["input"], len(primals)))
                primals.append(capture.block_input(b))
        self.blocks: tuple[Block, ...] = tuple(chosen)
        self._owners = owners
        sizes = []
        for _, names, first in owners:
            sizes.append(sum(p.numel() for p in primals[first : first + len(names)]))
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.parts: tuple[slice, ...] = tuple(
            slice(a, b) for a, b in zip(offsets[:-1], offsets[1:])
        )
        super().__init__(offsets[-1], state.dtype, primals[0].device)

        def outputs(ps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            outs = []
            for b, names, first in owners:
                mine = ps[first : first + len(names)]
                if wrt == "weights":
                    outs.append(
                        run_block(b, state, bn, capture.block_input(b), dict(zip(names, mine)))
                    )
                else:
                    outs.append(run_block(b, state, bn, mine[0]))
            return outs

        # H_W = d^2 l / dW^2, H_z = m d^2 l / dZ^2 (per sample), l = sum_b l_b.
        scale = 1.0 if wrt == "weights" else float(self.batch_size)
        what = f"blocks {[b.index for b in chosen]} w.r.t. their {wrt}"
        if kind == "gauss-newton":
            self.is_psd = True

            def f(*ps: torch.Tensor) -> torch.Tensor:
                return torch.cat([o.reshape(-1) for o in outputs(ps)])

            self._engine: GaussNewtonEngine | HessianEngine = GaussNewtonEngine(
                f, primals, scale=scale / self.batch_size, backend=self.backend, what=what
            )
        else:
            self.is_psd = None
            targets = [
                backmatching_target(capture.block_output(b), capture.per_sample_grad(b), self.eta)
                for b in chosen
            ]

            def phi(*ps: torch.Tensor) -> torch.Tensor:
                return sum(  # type: ignore[return-value]
                    backmatching_loss(o, t) for t, o in zip(targets, outputs(ps))
                )

            self._engine = HessianEngine(phi, primals, scale=scale, backend=self.backend, what=what)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._engine.matmat(V)

    def restrict(self, indices: Sequence[int]) -> AllBlocksLocalHessian:
        """The same operator on a subset of its blocks (positions in :attr:`blocks`).

        A product costs a forward and a backward through every block it holds, so a solver
        drops the blocks whose runs have finished (one graph rebuild, about one gradient).
        """
        return AllBlocksLocalHessian(
            self.capture,
            [self.blocks[i] for i in indices],
            wrt=self.wrt,
            kind=self.kind,
            eta=self.eta,
            backend=self.backend,
        )

    def describe_part(self, i: int) -> dict[str, object]:
        """What block ``i`` (position in :attr:`blocks`) is, as LocalHessian.describe() says it."""
        b, part = self.blocks[i], self.parts[i]
        return self.block_record(b.index, b.name, part.stop - part.start)

    def describe(self) -> dict[str, object]:
        return self.block_record([b.index for b in self.blocks], "all blocks", self.dim)
