r"""The back-matching loss of a block (paper digest, section 2): its one definition.

For block b with input batch ``Z = z_{b-1}`` (m samples), output ``F_b(W, Z)`` and per-sample
back-propagated gradient ``g_b = m dL/dz_b`` (the convention of :mod:`hessiankit.blocks.capture`),
the back-matching target is ``t_b = z_b - eta g_b`` and the back-matching loss is the **batch
mean**

.. math::

    l_b(W, Z) = \frac{1}{m} \sum_{i=1}^m \tfrac12 \| t_b^{(i)} - F_b(W, Z)^{(i)} \|^2 .

Its Hessian is the local Hessian (:mod:`hessiankit.operators.local`,
:mod:`hessiankit.operators.all_blocks`); back-matching propagation minimises it block by block
(:mod:`hessiankit.optim.backmatching`). At the current point its gradient w.r.t. ``F_b`` is
``eta g_b / m``, so one unit gradient step on every block is one SGD step (Proposition 1).

Example (at the current weights the loss is ``eta^2 mean_i ||g_b^(i)||^2 / 2``):
    >>> z = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    >>> g = torch.tensor([[2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    >>> float(backmatching_loss(z, backmatching_target(z, g, 0.5)))
    1.25
"""

from __future__ import annotations

import torch

__all__ = ["backmatching_loss", "backmatching_target"]


def backmatching_target(z_out: torch.Tensor, g: torch.Tensor, eta: float) -> torch.Tensor:
    """``t_b = z_b - eta g_b``: the block output moved against its per-sample gradient.

    Args:
        z_out: the block output ``z_b`` (samples along the first dimension).
        g: the per-sample back-propagated gradient ``g_b = m dL/dz_b``, shaped like ``z_out``.
        eta: the step size.
    """
    return z_out - eta * g


def backmatching_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""``l_b = (1/m) sum_i 1/2 ||t_b^(i) - F_b^(i)||^2``, a mean over the m samples.

    Args:
        output: the block's output ``F_b(W, Z)``, samples along the first dimension.
        target: the back-matching target ``t_b`` (:func:`backmatching_target`).
    """
    return 0.5 * (target - output).pow(2).sum() / output.shape[0]
