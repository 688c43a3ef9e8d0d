r"""Each block's training pace: how far one optimiser step moved it toward its back-matching target.

Back-propagation is one unit gradient step on every block's back-matching loss
(:mod:`hessiankit.blocks.backmatching_loss`, paper digest section 2): with learning rate
``eta`` the target of block b is ``t_b = z_b - eta g_b`` and SGD's step ``Delta W_b`` is one
gradient step on ``l_b``. How much of ``l_b`` that step removes is the block's pace:

.. math::

    \text{matched}_b = 1 - \frac{l_b(W_b + \Delta W_b,\, z_{b-1})}{l_b(W_b,\, z_{b-1})},
    \qquad l_b(W_b, z_{b-1}) = \frac{\eta^2}{2m} \sum_i \|g_b^{(i)}\|^2 ,

with the block's input held at the recorded ``z_{b-1}`` (the block's own step, not the moves of
the blocks below it). For a block linear in its weights (a linear layer) and SGD the output
moves by ``-eta K g`` with ``K = J J^T / m`` (the output-side local Hessian, whose nonzero
spectrum is that of ``H_W``), so exactly

.. math::

    \text{matched}_b = 1 - \frac{\|(I - K)\, g_b\|^2}{\|g_b\|^2} :

1 when ``K`` acts as the identity on ``g_b`` (the step lands on the target), near 0 when the
local Hessian is small in ``g_b``'s directions (the block barely moves), negative when it is
over 2 (overshoot). A block with rate ``s_b eta`` (scale-amended SGD) replaces ``K`` by
``s_b K``: balancing the blocks' scales balances their paces, the claim this measures.

``relative_change`` is the other common pace measure, ``||Delta W_b|| / ||W_b||``.

Example (one SGD step on a small network: each block removes about a fifth of its loss):
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    >>> x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    >>> cap = pace_capture(net, x, y)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> nn.functional.cross_entropy(net(x), y).backward(); opt.step()
    >>> [round(p.matched, 3) for p in block_pace(cap, net, eta=0.1)]
    [0.223, 0.183]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from hessiankit.blocks import Block, BlockCapture, BlockSplit
from hessiankit.blocks.backmatching_loss import backmatching_loss, backmatching_target
from hessiankit.blocks.capture import capture, run_block
from hessiankit.errors import DataError

__all__ = ["BlockPace", "block_pace", "pace_capture"]


@dataclass(frozen=True)
class BlockPace:
    """One block's progress in one step.

    Attributes:
        index: the block's position (from 1).
        name: the block's name (its first weighted module).
        matched: ``1 - l_b(after) / l_b(before)``, the share of the back-matching loss the step
            removed with the input held fixed (NaN when ``l_b(before)`` is 0: nothing to match).
        relative_change: ``||Delta W_b|| / ||W_b||`` over the block's parameters (inf when
            ``W_b`` is 0 and moved).
        loss_before: ``l_b`` at the captured weights, ``eta^2 mean_i ||g_b^(i)||^2 / 2``.
        loss_after: ``l_b`` at the new weights.
    """

    index: int
    name: str
    matched: float
    relative_change: float
    loss_before: float
    loss_after: float


def pace_capture(
    model: nn.Module | BlockSplit, x: torch.Tensor, y: torch.Tensor, **options: Any
) -> BlockCapture:
    """:func:`hessiankit.capture` with its own copy of the parameters, taken before a step.

    ``model`` may be its :class:`~hessiankit.blocks.BlockSplit` (split once, measure often).
    A plain capture aliases the model's parameters (no copy), which an optimiser step then
    changes in place; this one keeps the weights before the step. ``options`` go to
    :func:`~hessiankit.capture` (``bn``, ``loss_fn``, ``dtype``).
    """
    cap = capture(model, x, y, **options)
    kept = {n: t.clone() for n, t in cap.state.params.items()}
    return replace(cap, state=replace(cap.state, params=kept))


def block_pace(
    capture: BlockCapture,
    new_params: nn.Module | Mapping[str, torch.Tensor],
    *,
    eta: float,
    blocks: Sequence[Block] | None = None,
) -> tuple[BlockPace, ...]:
    """Each block's pace from a capture taken before a step and the weights after it.

    Args:
        capture: :func:`pace_capture` (a capture with labels that owns its weights), taken
            before the step (its ``bn`` mode should be the one the step trained in).
        new_params: the model after the step, or its parameters by the model's names.
        eta: the base learning rate of the step (the back-matching step size).
        blocks: the blocks to measure (default: every block with weights).

    Raises:
        DataError: a capture without labels, a non-positive or non-finite ``eta``, or
            ``new_params`` missing one of a block's parameters, or sharing memory with the
            capture's (a plain capture, whose weights the step changed in place).
    """
    if not (math.isfinite(eta) and eta > 0):
        raise DataError(f"eta={eta!r} must be a positive finite learning rate")
    new = dict(new_params.named_parameters()) if isinstance(new_params, nn.Module) else new_params
    chosen = [b for b in capture.split if b.param_names] if blocks is None else list(blocks)
    out = []
    for blk in chosen:
        missing = [n for n in blk.param_names if n not in new]
        if missing:
            raise DataError(
                f"new_params has no {missing[0]!r} (block {blk.index}); pass the model after "
                "the step or its named_parameters()"
            )
        old = {n: capture.state.params[n] for n in blk.param_names}
        if any(old[n].data_ptr() == new[n].data_ptr() for n in old):
            raise DataError(
                "the capture shares its weights with new_params, so it cannot see the step; "
                "take it before the step with pace_capture(model, x, y)"
            )
        moved = {n: new[n].detach().to(old[n]) for n in blk.param_names}
        with torch.no_grad():
            target = backmatching_target(
                capture.block_output(blk), capture.per_sample_grad(blk), eta
            )
            z = capture.block_input(blk)
            before = float(backmatching_loss(run_block(blk, capture.state, capture.bn, z), target))
            after = float(
                backmatching_loss(run_block(blk, capture.state, capture.bn, z, moved), target)
            )
            norm = math.sqrt(sum(float(t.pow(2).sum()) for t in old.values()))
            step = math.sqrt(sum(float((moved[n] - old[n]).pow(2).sum()) for n in old))
        rel = step / norm if norm > 0 else (math.inf if step > 0 else 0.0)
        matched = 1.0 - after / before if before > 0 else math.nan
        out.append(BlockPace(blk.index, blk.name, matched, rel, before, after))
    return tuple(out)
