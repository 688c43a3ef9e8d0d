r"""Each block's local Hessian against the diagonal block of the global GGN for its weights.

Block b's weights enter the training loss through the rest of the network, so the diagonal
block of the global generalized Gauss-Newton matrix (:class:`~hessiankit.operators.ggn.GGNOperator`
with ``block=b``) is

.. math::

    G_{bb} = J_{W_b}^T\, M_b\, J_{W_b}, \qquad
    M_b = J_{>b}^T H_L J_{>b}, \qquad J_{>b} = \partial z_B / \partial z_b ,

``M_b`` being the Gauss-Newton curvature of the loss as a function of the block's output. The
paper's (Gauss-Newton) local Hessian is the Hessian of the block's **back-matching loss**
``(1/m) sum_i 1/2 ||t_b^{(i)} - F_b(W_b, z_{b-1}^{(i)})||^2`` with the back-propagated target
``t_b = z_b - eta g_b``:

.. math::

    H_{W_b} = J_{W_b}^T (I/m) J_{W_b} ,

the same Jacobian with the identity (per sample) in place of ``M_b``: back-matching asks the
block to move its output towards the target in plain Euclidean distance, whatever the
curvature of the layers above and of the loss. (The target enters only the exact kind's
residual term, ``eta sum_j (g_b)_j d^2 F_{b,j}``, not the Gauss-Newton part.) So the two agree
exactly when ``M_b = I/m``: the last block under the squared error. Under cross-entropy
``M_B = blockdiag_i (diag p_i - p_i p_i^T)/m``, whose eigenvalues lie in ``[0, 1/(2m)]``, so
``G_BB <= H_{W_B} / 2`` in the Loewner order; lower blocks see the Jacobians above them as well
(scale: how gradients grow or shrink on the way down; shape: which output directions the loss
cares about).

Per block this module reports the top-k eigenvalues of both (residuals, converged flags), the
overlap of their top-k eigenspaces, the trace ratio ``tr H_W / tr G_bb`` (exact from the
diagonal when the dimension allows a dense matrix, else Hutch++ with its standard error), and,
dense only, the relative Frobenius difference ``||H_W - G_bb||_F / ||G_bb||_F`` and the same after
the best scalar ``c`` (``min_c ||c H_W - G_bb||_F / ||G_bb||_F``: what no per-block learning rate
can fix, the shape).

Example:
    >>> from hessiankit.diagnostics import compare_blocks
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    >>> rows = compare_blocks(hk.capture(net, x, y, loss_fn="mse"), top=2, seed=0)
    >>> [r.index for r in rows], rows[-1].relative_frobenius < 1e-12  # last block, MSE: equal
    ([1, 2], True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hessiankit.blocks.capture import BlockCapture
from hessiankit.blocks.split import Block
from hessiankit.operators.ggn import GGNOperator
from hessiankit.diagnostics.subspace import orthonormal_basis, overlap
from hessiankit.errors import OperatorError
from hessiankit.operators.local import LocalHessian
from hessiankit.solvers.results import SpectrumResult
from hessiankit.solvers.spectrum import Method, spectrum
from hessiankit.solvers.trace import hutch_plus_plus

__all__ = ["BlockVsGlobal", "compare_blocks"]


@dataclass(frozen=True, eq=False)
class BlockVsGlobal:
    """One block's local Hessian ``H_W`` against the global GGN's diagonal block ``G_bb``.

    Attributes:
        index: block number (from 1).
        name: the block's module path.
        dimension: number of the block's weights.
        local: top-k of ``H_W`` (Gauss-Newton local Hessian), with residuals and flags.
        global_block: top-k of ``G_bb``.
        eigenspace_overlap: ``||U_local^T U_global||_F^2 / k``.
        trace_local, trace_global: the two traces.
        trace_error: standard error of ``trace_local / trace_global`` (0 when exact).
        relative_frobenius: ``||H_W - G_bb||_F / ||G_bb||_F`` (``None`` above ``max_dense``).
        scaled_relative_frobenius: ``min_c ||c H_W - G_bb||_F / ||G_bb||_F`` (``None`` above
            ``max_dense``).
        best_scale: the minimising ``c`` (``None`` above ``max_dense``).
        dense: whether the traces and norms are exact (dense matrices).
    """

    index: int
    name: str
    dimension: int
    local: SpectrumResult
    global_block: SpectrumResult
    eigenspace_overlap: float
    trace_local: float
    trace_global: float
    trace_error: float
    relative_frobenius: float | None
    scaled_relative_frobenius: float | None
    best_scale: float | None
    dense: bool

    @property
    def trace_ratio(self) -> float:
        """``tr H_W / tr G_bb`` (``inf`` when the GGN block has zero trace)."""
        return self.trace_local / self.trace_global if self.trace_global != 0 else math.inf

    @property
    def top_ratio(self) -> float:
        """``lambda_max(H_W) / lambda_max(G_bb)``."""
        g = float(self.global_block.top.eigenvalues[0])
        return float(self.local.top.eigenvalues[0]) / g if g != 0 else math.inf

    @property
    def converged(self) -> bool:
        return self.local.top.all_converged and self.global_block.top.all_converged

    def to_dict(self) -> dict[str, object]:
        return {
            "block": self.index,
            "name": self.name,
            "dimension": self.dimension,
            "local_eigenvalues": self.local.top.eigenvalues.tolist(),
            "local_residuals": self.local.top.residuals.tolist(),
            "local_converged": self.local.top.converged.tolist(),
            "global_eigenvalues": self.global_block.top.eigenvalues.tolist(),
            "global_residuals": self.global_block.top.residuals.tolist(),
            "global_converged": self.global_block.top.converged.tolist(),
            "eigenspace_overlap": self.eigenspace_overlap,
            "trace_local": self.trace_local,
            "trace_global": self.trace_global,
            "trace_ratio": self.trace_ratio,
            "trace_error": self.trace_error,
            "top_ratio": self.top_ratio,
            "relative_frobenius": self.relative_frobenius,
            "scaled_relative_frobenius": self.scaled_relative_frobenius,
            "best_scale": self.best_scale,
            "dense": self.dense,
        }


def _one(
    capture: BlockCapture,
    blk: Block,
    top: int,
    max_dense: int,
    trace_products: int,
    method: Method,
    tol: float,
    seed: int,
) -> BlockVsGlobal:
    H = LocalHessian(capture, blk)
    G = GGNOperator(capture, blk)
    if H.primal_names != G.primal_names:  # both take every floating-point weight, in order
        raise OperatorError(f"block {blk.index}: local and global variables differ")
    k = min(top, H.dim)
    res_h = spectrum(H, top=k, bottom=0, method=method, tol=tol, seed=seed, keep_vectors=True)
    res_g = spectrum(G, top=k, bottom=0, method=method, tol=tol, seed=seed, keep_vectors=True)
    vh, vg = res_h.top.eigenvectors, res_g.top.eigenvectors
    assert vh is not None and vg is not None  # keep_vectors=True
    ov = overlap(orthonormal_basis(vh), orthonormal_basis(vg))
    rel = srel = scale = None
    if H.dim <= max_dense:
        Hd, Gd = H.to_dense(), G.to_dense()
        tr_h, tr_g, tr_err = float(Hd.trace()), float(Gd.trace()), 0.0
        g_norm = float(torch.linalg.matrix_norm(Gd))
        h_sq = float((Hd * Hd).sum())
        if g_norm > 0:
            rel = float(torch.linalg.matrix_norm(Hd - Gd)) / g_norm
            scale = float((Hd * Gd).sum()) / h_sq if h_sq > 0 else 0.0
            srel = float(torch.linalg.matrix_norm(scale * Hd - Gd)) / g_norm
        dense = True
    else:
        th = hutch_plus_plus(H, num_products=trace_products, seed=seed)
        tg = hutch_plus_plus(G, num_products=trace_products, seed=seed)
        tr_h, tr_g = th.trace, tg.trace
        # first-order error of the ratio from the two standard errors
        tr_err = (
            abs(tr_h / tr_g) * math.hypot(th.std_error / tr_h, tg.std_error / tr_g)
            if tr_h and tr_g
            else math.inf
        )
        dense = False
    return BlockVsGlobal(
        index=blk.index,
        name=blk.name,
        dimension=H.dim,
        local=res_h,
        global_block=res_g,
        eigenspace_overlap=ov,
        trace_local=tr_h,
        trace_global=tr_g,
        trace_error=tr_err,
        relative_frobenius=rel,
        scaled_relative_frobenius=srel,
        best_scale=scale,
        dense=dense,
    )


def compare_blocks(
    capture: BlockCapture,
    blocks: Sequence[int | str | Block] | str = "all",
    *,
    top: int = 5,
    max_dense: int = 2048,
    trace_products: int = 60,
    method: Method = "auto",
    tol: float = 1e-6,
    seed: int = 0,
) -> tuple[BlockVsGlobal, ...]:
    """Per block, the Gauss-Newton local Hessian ``H_W`` against the global GGN's diagonal block.

    Args:
        capture: the recorded batch, with labels.
        blocks: ``"all"`` (every block with weights) or a list of blocks.
        top: k, the largest eigenvalues of each (capped at the block's dimension).
        max_dense: largest block dimension materialised for exact traces and norms.
        trace_products: Hutch++ products per trace above ``max_dense``.
        method, tol: eigensolver route and tolerance.
        seed: seed of start vectors and trace probes.

    Raises:
        DataError: no labels; OperatorError: an unknown ``blocks`` value.
    """
    chosen = capture.split.select(blocks)
    return tuple(
        _one(capture, b, top, max_dense, trace_products, method, tol, seed) for b in chosen
    )
