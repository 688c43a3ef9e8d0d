r"""Per-block ``lr x lambda_max`` against 2: how close each block is to the edge of stability.

Gradient descent with step ``eta`` on a quadratic with Hessian A contracts every direction iff
``eta lambda_max(A) < 2``; Cohen et al. (2021) observe full-batch training hovering at
``eta lambda_max = 2`` (the *edge of stability*). With per-parameter rates ``D = diag(eta_p)``
(scale-amended SGD: a rate per block, even per output channel) the step is ``-D grad`` and the
condition becomes ``lambda_max(D^{1/2} A D^{1/2}) < 2``; with one rate it is ``eta lambda_max(A)``.
This module reports, per block b:

``local``
    ``lambda_max(D_b^{1/2} H_{W_b} D_b^{1/2})`` with ``H_{W_b}`` the block's (Gauss-Newton)
    local Hessian, the Hessian of its back-matching loss. This is the stability number of
    gradient descent on the block's least-squares matching problem, whose output curvature is
    the identity. For the last block under the squared error ``H_W`` is the GGN's diagonal
    block (and the loss Hessian's when the block is linear in its weights), so there it is the
    training loss's own criterion; for the other blocks it is the criterion of the block's
    matching problem (the paper's view: BP is one step on each back-matching loss).
``global``
    the same with the diagonal block of the training-loss Hessian for the block's weights,
    ``d^2 L / dW_b^2``. A diagonal block's largest eigenvalue is at most the full Hessian's
    (a Rayleigh quotient restricted to a subspace), so ``global > 2`` for any block means full
    gradient descent at these rates is unstable along that block's weights.

Rates: a number (plain SGD), or per parameter name from :func:`parameter_rates`, which reads
``torch.optim.SGD`` and :class:`~hessiankit.optim.scale_amended.ScaleAmendedSGD` (the amended
rate ``lr * amendment`` of a block's main weight, the per-channel factors when present, the
plain rate of the other parameters). Adaptive optimizers (Adam) do not step ``-lr grad`` and
are refused.

Example:
    >>> from hessiankit.diagnostics import block_stability
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    >>> x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    >>> rows = block_stability(hk.capture(net, x, y), lr=0.1, seed=0)
    >>> [(r.index, r.local_sharpness < 2.0) for r in rows]
    [(1, True), (2, True)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hessiankit.blocks.capture import BlockCapture
from hessiankit.blocks.split import Block
from hessiankit.errors import OperatorError
from hessiankit.operators.base import SymmetricOperator, WrappedOperator
from hessiankit.operators.local import LocalHessian
from hessiankit.operators.loss import LossHessian
from hessiankit.optim.scale_amended import ScaleAmendedSGD
from hessiankit.solvers.results import SpectrumResult
from hessiankit.solvers.spectrum import Method, spectrum

__all__ = ["EDGE", "BlockStability", "RateScaled", "block_stability", "parameter_rates"]

#: ``eta lambda_max`` above which gradient descent diverges along the top eigenvector.
EDGE = 2.0

Rate = float | torch.Tensor


class RateScaled(WrappedOperator):
    """``D^{1/2} A D^{1/2}`` for a diagonal of nonnegative per-coordinate rates ``d``.

    Args:
        op: the operator A.
        rates: ``d``, one rate per coordinate (length ``op.dim``).

    Raises:
        OperatorError: a rate vector of the wrong length, or a negative or non-finite rate.
    """

    def __init__(self, op: SymmetricOperator, rates: torch.Tensor) -> None:
        d = rates.detach().reshape(-1).to(dtype=op.dtype, device=op.device)
        if d.numel() != op.dim:
            raise OperatorError(f"rates have {d.numel()} entries, the operator has {op.dim}")
        if not bool(torch.isfinite(d).all()) or bool((d < 0).any()):
            raise OperatorError("learning rates must be finite and nonnegative")
        super().__init__(op)
        self._root = d.sqrt()[:, None]
        self.parts = None  # the scaling couples nothing, but restrict() is not implemented

    @property
    def can_restrict(self) -> bool:
        return False

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._root * self.op.matmat(self._root * V)

    def describe(self) -> dict[str, object]:
        return {**self.op.describe(), "scaled_by": "learning rates"}


def parameter_rates(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, Rate]:
    """The step size of every parameter of ``model`` that ``optimizer`` updates, by name.

    ``torch.optim.SGD``: ``group["lr"]``. :class:`ScaleAmendedSGD`: ``lr * amendment`` for the
    amended groups (times the per-channel factors, a tensor broadcastable to the parameter),
    ``lr`` for the others. Momentum is not folded in (it raises the stability limit of the
    heavy-ball method to ``2 (1 + mu)``; compare with that instead of 2).

    Raises:
        OperatorError: an optimizer whose step is not ``-lr grad`` (Adam, RMSprop, ...).
    """
    if not isinstance(optimizer, (torch.optim.SGD, ScaleAmendedSGD)):
        raise OperatorError(
            f"parameter_rates reads torch.optim.SGD and ScaleAmendedSGD, not "
            f"{type(optimizer).__name__} (an adaptive step is not -lr * grad)"
        )
    names = {id(p): n for n, p in model.named_parameters()}
    amend = isinstance(optimizer, ScaleAmendedSGD) and optimizer.amend
    out: dict[str, Rate] = {}
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        amended = amend and bool(group.get("amend", False))
        for p in group["params"]:
            if id(p) not in names:
                continue
            rate: Rate = lr * float(group.get("amendment", 1.0)) if amended else lr
            channel = optimizer.state[p].get("channel_amendment") if amended else None
            if channel is not None:
                rate = channel.detach().to(torch.float64) * rate
            out[names[id(p)]] = rate
    return out


@dataclass(frozen=True, eq=False)
class BlockStability:
    """One block's stability numbers (module docstring).

    Attributes:
        index: block number (from 1).
        name: the block's module path.
        rate_min, rate_max: the smallest and largest rate over the block's weights.
        local: top eigenvalue of ``D^{1/2} H_W D^{1/2}`` (residual, error bound, converged).
        global_: the same for the loss Hessian's diagonal block (``None`` when not asked for).
        edge: the stability limit compared with (2).
    """

    index: int
    name: str
    rate_min: float
    rate_max: float
    local: SpectrumResult
    global_: SpectrumResult | None
    edge: float = EDGE

    @property
    def local_sharpness(self) -> float:
        """``lambda_max(D^{1/2} H_W D^{1/2})`` (``lr lambda_max(H_W)`` for one rate)."""
        return float(self.local.top.eigenvalues[0])

    @property
    def global_sharpness(self) -> float | None:
        """``lambda_max(D^{1/2} (d^2L/dW_b^2) D^{1/2})``, or ``None``."""
        return None if self.global_ is None else float(self.global_.top.eigenvalues[0])

    @property
    def local_stable(self) -> bool:
        return self.local_sharpness < self.edge

    @property
    def global_stable(self) -> bool | None:
        g = self.global_sharpness
        return None if g is None else g < self.edge

    @property
    def converged(self) -> bool:
        return self.local.converged and (self.global_ is None or self.global_.converged)

    def to_dict(self) -> dict[str, object]:
        g = self.global_
        return {
            "block": self.index,
            "name": self.name,
            "rate_min": self.rate_min,
            "rate_max": self.rate_max,
            "local_sharpness": self.local_sharpness,
            "local_residual": float(self.local.top.residuals[0]),
            "local_converged": self.local.converged,
            "global_sharpness": self.global_sharpness,
            "global_residual": None if g is None else float(g.top.residuals[0]),
            "global_converged": None if g is None else g.converged,
            "edge": self.edge,
        }


def _rate_vector(
    rates: float | Mapping[str, Rate], names: Sequence[str], capture: BlockCapture
) -> torch.Tensor:
    parts = []
    for n in names:
        p = capture.state.params[n]
        if isinstance(rates, Mapping):
            if n not in rates:
                raise OperatorError(f"lr= gives no rate for parameter {n!r}")
            r = rates[n]
        else:
            r = float(rates)
        t = torch.as_tensor(r, dtype=torch.float64).to(p.device)
        parts.append(torch.broadcast_to(t, p.shape).reshape(-1))
    return torch.cat(parts)


def block_stability(
    capture: BlockCapture,
    *,
    lr: float | Mapping[str, Rate],
    blocks: Sequence[int | str | Block] | str = "all",
    global_curvature: bool = True,
    method: Method = "auto",
    tol: float = 1e-6,
    seed: int = 0,
) -> tuple[BlockStability, ...]:
    """Per block, the largest eigenvalue of the rate-scaled local Hessian (and loss Hessian).

    Args:
        capture: the recorded batch (with labels for ``global_curvature``).
        lr: one learning rate, or rates by parameter name (:func:`parameter_rates`).
        blocks: ``"all"`` or a list of blocks (index, module path or
            :class:`~hessiankit.blocks.split.Block`); blocks without weights are skipped.
        global_curvature: also the loss Hessian's diagonal block for the block's weights.
        method, tol: eigensolver route and tolerance.
        seed: seed of the start vectors.

    Raises:
        OperatorError: a rate missing or negative; DataError: ``global_curvature`` without
            labels.
    """
    if isinstance(lr, (int, float)) and not lr >= 0:
        raise OperatorError(f"lr= must be nonnegative, got {lr}")
    chosen = capture.split.select(blocks)
    rows = []
    for blk in chosen:
        local_op = LocalHessian(capture, blk)
        d = _rate_vector(lr, local_op.primal_names, capture)
        local = spectrum(
            RateScaled(local_op, d), top=1, bottom=0, method=method, tol=tol, seed=seed
        )
        glob = None
        if global_curvature:
            loss_op = LossHessian(capture, blk)
            dg = _rate_vector(lr, loss_op.primal_names, capture)
            glob = spectrum(
                RateScaled(loss_op, dg), top=1, bottom=0, method=method, tol=tol, seed=seed
            )
        rows.append(
            BlockStability(
                index=blk.index,
                name=blk.name,
                rate_min=float(d.min()),
                rate_max=float(d.max()),
                local=local,
                global_=glob,
            )
        )
    return tuple(rows)
