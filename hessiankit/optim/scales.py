r"""Measured block scales ``m_{b,W}``, ``m_{b,z}``: what scale-amended SGD runs on.

Scale-amended SGD (:mod:`hessiankit.optim.scale_amended`, paper digest section 5) replaces each
block's local Hessians by multiples of the identity, ``H_{W_b} ~ m_{b,W} I`` and
``H_{z_{b-1}} ~ m_{b,z} I``. :func:`block_scales` gets the scalars one of three ways:

``"trace"`` (default)
    ``tr(H)/dim`` (the best scalar stand-in in the Frobenius sense) of the measured
    Gauss-Newton local Hessians, by Hutch++ with ``num_products`` products
    (:mod:`hessiankit.solvers.trace`). Model-free; costs a few backward passes per block.
``"closed-form"``
    the formulas of :mod:`hessiankit.analytic.scalar`: one pass over the weights and the block
    input, no Hessian products; only for the blocks those formulas cover.
``"lambda-max"``
    the top eigenvalue of the Gauss-Newton local Hessians by power iteration (an upper scale:
    the largest unit step that still contracts is ``2/lambda_max``).

``m_{b,W}`` is taken over the block's main weight
(:func:`~hessiankit.analytic.scalar.main_weight_name`) unless ``params="all"`` (every parameter
of the block: bias, batch-norm gamma and beta too; "trace" and "lambda-max" only). The
normalisation is the core's: ``H_W`` of the batch-mean back-matching loss, ``H_z`` per sample.

Example (a linear block: the trace of ``H_W = I kron Z^T Z / m`` over its dimension is the mean
squared input, which the closed form gives too):
    >>> net = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    >>> x = torch.arange(12, dtype=torch.float64).reshape(4, 3) / 10
    >>> (measured,) = block_scales(hk.capture(net, x), method="trace", num_products=30)
    >>> (closed,) = block_scales(hk.capture(net, x), method="closed-form")
    >>> abs(measured.m_w - closed.m_w) < 1e-12
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from hessiankit.analytic.scalar import BlockScale, closed_form_scales, main_weight_name
from hessiankit.blocks.capture import BlockCapture
from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.operators.local import LocalHessian
from hessiankit.solvers.power import power_iteration
from hessiankit.solvers.trace import hutch_plus_plus

__all__ = ["BlockScale", "ScaleMethod", "block_scales"]

ScaleMethod = Literal["trace", "closed-form", "lambda-max"]


def _estimate(
    op: SymmetricOperator, method: str, num_products: int, seed: int
) -> tuple[float, float]:
    if method == "trace":
        r = hutch_plus_plus(op, num_products=max(num_products, 6), seed=seed)
        return r.mean_eigenvalue, r.std_error / op.dim
    p = power_iteration(op, k=1, which="LA", tol=1e-3, max_iter=max(num_products, 2), seed=seed)
    return float(p.pairs.eigenvalues[0]), float(p.pairs.error_bounds[0])


def block_scales(
    capture: BlockCapture,
    *,
    method: ScaleMethod = "trace",
    num_products: int = 30,
    seed: int = 0,
    params: Literal["main", "all"] = "main",
    blocks: Sequence[int] | None = None,
) -> tuple[BlockScale, ...]:
    r"""``m_{b,W}`` and ``m_{b,z}`` for every block (or the listed ones) of a capture.

    Args:
        capture: the recorded batch (:func:`hessiankit.capture`; use ``bn="train"`` for
            networks trained with batch norm).
        method: ``"trace"`` (Hutch++ mean eigenvalue), ``"closed-form"`` or ``"lambda-max"``
            (power iteration), see the module docstring.
        num_products: product budget per operator (trace), or iteration cap (lambda-max).
        seed: seed of the random probes / start vectors.
        params: ``"main"`` (the main weight tensor) or ``"all"`` (every parameter of the block).
        blocks: block indices (from 1); default all.

    Raises:
        OperatorError: unknown method, or no closed form for a block.
    """
    if method not in ("trace", "closed-form", "lambda-max"):
        raise OperatorError(
            f"unknown method {method!r}; use 'trace', 'closed-form' or 'lambda-max'"
        )
    if params not in ("main", "all"):
        raise OperatorError(f"unknown params {params!r}; use 'main' or 'all'")
    if method == "closed-form":
        if params != "main":
            raise OperatorError("the closed forms describe the main weight only; use params='main'")
        return closed_form_scales(capture, blocks)
    chosen = [capture.split.block(i) for i in blocks] if blocks is not None else list(capture.split)
    out = []
    for block in chosen:
        names = (
            [n for n in block.param_names if capture.state.params[n].is_floating_point()]
            if params == "all"
            else [n for n in [main_weight_name(capture, block)] if n is not None]
        )
        m_w: float | None = None
        e_w = 0.0
        if names:
            weights = LocalHessian(capture, block, wrt="weights", params=names)
            m_w, e_w = _estimate(weights, method, num_products, seed)
        m_z, e_z = _estimate(LocalHessian(capture, block, wrt="input"), method, num_products, seed)
        out.append(BlockScale(block.index, block.name, m_w, m_z, method, e_w, e_z))
    return tuple(out)
