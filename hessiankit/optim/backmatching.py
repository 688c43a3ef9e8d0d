r"""Back-matching propagation (the paper's Procedure 1) as a trainer over the core's blocks.

One iteration on a batch ``(X, Y)`` with step size ``eta`` (paper digest, section 2):

1. forward: ``z_0 = X``, ``z_b = F_b(W_b, z_{b-1})`` (the model's own modules, so batch norm
   updates its running statistics exactly as a training forward pass does);
2. top target: ``t_B = z_B - eta g_B`` with ``g_B = m dL/dz_B`` (L the batch-mean loss);
3. for ``b = B, ..., 1``, with the back-matching loss (a mean over the batch, the core's
   normalisation; :mod:`hessiankit.blocks.backmatching_loss`)

   .. math:: l_b(W, Z) = \frac{1}{m} \sum_i \tfrac12 \| t_b^{(i)} - F_b(W, Z)^{(i)} \|^2,

   (a) weight update ``W_b <- argmin_W l_b(W, z_{b-1})`` and (b) input target
   ``t_{b-1} <- argmin_Z l_b(W', Z)``, each "argmin" replaced by the chosen inner solver:

   ``"one-step"``
       one gradient step from the current point: ``W - a_W grad_W l_b`` and
       ``Z - a_z m grad_Z l_b`` (the input step is taken in the per-sample metric, matching the
       core's per-sample input local Hessian, so that with ``a_W = a_z = 1`` the targets are
       ``z_b - eta g_b`` all the way down);
   ``"k-steps"``
       ``steps`` such gradient steps (optionally proximal: ``+ rho/2 ||W - W_b||^2``,
       ``+ rho/2 ||Z - z_{b-1}||^2_{per sample}``);
   ``"least-squares"``
       the exact minimum-change least-squares solution for a block that is one ``nn.Linear``:
       ``[W b] += R Z_aug^+`` and ``Z += R (W^T)^+``, R the residual ``t_b - F_b``.

   ``W'`` is the old weight (``z_update="jacobi"``, the digest's default: it makes
   Proposition 1 exact) or the new one (``"gauss-seidel"``, "alternately" in the reviews).

**Proposition 1** [D]: with one unit step per block (Jacobi) one iteration is exactly one SGD
step of rate eta; with inner step sizes ``a_{W,b}``, ``a_{z,b}`` it is SGD with block rate
``eta a_{W,b} prod_{c>b} a_{z,c}`` (tested in float64 to 1e-10). Exactness needs deterministic
forwards: no dropout (its masks are not shared between the passes).

Example (one iteration equals one SGD step):
    >>> import copy
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> ref = copy.deepcopy(net)
    >>> x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    >>> _ = BackMatchingPropagation(net, lr=0.1).step(x, y)
    >>> opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    >>> nn.functional.cross_entropy(ref(x), y).backward(); opt.step()
    >>> max(float((p - q).abs().max()) for p, q in zip(net.parameters(), ref.parameters())) < 1e-14
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from hessiankit.blocks.backmatching_loss import backmatching_loss, backmatching_target
from hessiankit.blocks.capture import LossFn, resolve_loss, run_block
from hessiankit.blocks.modes import FunctionalState
from hessiankit.blocks.split import Block, BlockSpec, BlockSplit, split_blocks
from hessiankit.errors import DataError, OperatorError

__all__ = ["BackMatchingPropagation", "BackMatchingStep", "InnerSolver", "ZUpdate"]

InnerSolver = Literal["one-step", "k-steps", "least-squares"]
ZUpdate = Literal["jacobi", "gauss-seidel"]
_SOLVERS = ("one-step", "k-steps", "least-squares")


@dataclass(frozen=True)
class BackMatchingStep:
    """What one back-matching iteration did.

    Attributes:
        loss: training loss on the batch before the update.
        matching_before: ``l_b`` at the old weights, per block (1..B); equals
            ``eta^2 mean_i ||g_b^(i)||^2 / 2`` at the top, and so on down.
        matching_after: ``l_b(W_b^{new}, z_{b-1})`` per block (same targets and inputs), or
            ``None`` when not recorded.
    """

    loss: float
    matching_before: tuple[float, ...]
    matching_after: tuple[float, ...] | None


def _per_block(value: float | Sequence[float], n: int, what: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * n
    vals = [float(v) for v in value]
    if len(vals) != n:
        raise OperatorError(f"{what} needs one value per block ({n}), got {len(vals)}")
    return vals


class BackMatchingPropagation:
    """Train a model by back-matching propagation (Procedure 1); updates the model in place.

    Args:
        model: the network (or its :class:`BlockSplit`).
        lr: eta, the step of the top target ``z_B - eta g_B``.
        weight_solver: inner solver for the weights: ``"one-step"``, ``"k-steps"`` or
            ``"least-squares"`` (linear blocks only).
        input_solver: inner solver for the input targets (default: ``weight_solver``).
        steps: inner steps for ``"k-steps"``.
        step_w: inner step size ``a_W`` (one value, or one per block 1..B).
        step_z: inner step size ``a_z`` (one value, or one per block 1..B).
        z_update: ``"jacobi"`` (input target at the old weights) or ``"gauss-seidel"`` (at the
            new ones).
        prox: proximal weight rho of the k-step solver (0: none).
        loss_fn: ``"cross-entropy"``, ``"mse"`` or a callable reducing by the batch mean.
        blocks: explicit block split (see :func:`hessiankit.split_blocks`).

    Raises:
        OperatorError: an unknown option, or least squares on a block that is not one Linear.
    """

    def __init__(
        self,
        model: nn.Module | BlockSplit,
        *,
        lr: float,
        weight_solver: InnerSolver = "one-step",
        input_solver: InnerSolver | None = None,
        steps: int = 1,
        step_w: float | Sequence[float] = 1.0,
        step_z: float | Sequence[float] = 1.0,
        z_update: ZUpdate = "jacobi",
        prox: float = 0.0,
        loss_fn: str | LossFn = "cross-entropy",
        blocks: Sequence[BlockSpec] | None = None,
    ) -> None:
        self.split = model if isinstance(model, BlockSplit) else split_blocks(model, blocks)
        self.model = self.split.model
        input_solver = weight_solver if input_solver is None else input_solver
        for s in (weight_solver, input_solver):
            if s not in _SOLVERS:
                raise OperatorError(f"unknown inner solver {s!r}; use one of {list(_SOLVERS)}")
        if z_update not in ("jacobi", "gauss-seidel"):
            raise OperatorError(f"unknown z_update {z_update!r}; use 'jacobi' or 'gauss-seidel'")
        if steps < 1:
            raise OperatorError(f"steps must be at least 1, got {steps}")
        if not lr > 0:
            raise OperatorError(f"lr must be positive, got {lr}")
        n = len(self.split)
        self.lr = float(lr)
        self.weight_solver: InnerSolver = weight_solver
        self.input_solver: InnerSolver = input_solver
        self.steps = int(steps) if "k-steps" in (weight_solver, input_solver) else 1
        self.step_w = _per_block(step_w, n, "step_w")
        self.step_z = _per_block(step_z, n, "step_z")
        self.z_update: ZUpdate = z_update
        self.prox = float(prox)
        self.loss_fn = resolve_loss(loss_fn)
        if "least-squares" in (weight_solver, input_solver):
            for block in self.split:
                self._linear(block)
        self._state = FunctionalState.live(self.model)
        self._params = self._state.params

    # ------------------------------------------------------------------ block evaluation

    def _linear(self, block: Block) -> nn.Linear:
        named = dict(self.model.named_modules())
        mods = [named[n] for n in block.module_names if n in named]
        lin = [m for m in mods if isinstance(m, nn.Linear)]
        rest = [m for m in mods if not isinstance(m, (nn.Linear, nn.Flatten, nn.Identity))]
        if len(lin) != 1 or rest or block.has_skip:
            raise OperatorError(
                f"least squares needs blocks that are one nn.Linear; block {block.index} "
                f"({block.name}) is not; use 'one-step' or 'k-steps'"
            )
        return lin[0]

    def _call(self, block: Block, params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        # The modules' own flags (bn=None), as the training forward ran; buffers are cloned so
        # that evaluating F_b again does not move batch norm's running statistics.
        return run_block(block, self._state, None, z, params)

    def _matching(
        self, block: Block, params: dict[str, torch.Tensor], z: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return backmatching_loss(self._call(block, params, z), target)

    # --------------------------------------------------------------------------- solvers

    def _solve_weights(
        self, block: Block, w0: dict[str, torch.Tensor], z: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        a = self.step_w[block.index - 1]
        if self.weight_solver == "least-squares":
            return self._lstsq_weights(block, w0, z, target)
        w = {n: t.detach().clone() for n, t in w0.items()}
        for _ in range(self.steps if self.weight_solver == "k-steps" else 1):
            leaves = {n: t.requires_grad_(True) for n, t in w.items()}
            with torch.enable_grad():
                grads = torch.autograd.grad(
                    self._matching(block, leaves, z, target),
                    list(leaves.values()),
                    allow_unused=True,
                )
            new = {}
            for (n, t), g in zip(leaves.items(), grads):
                step = torch.zeros_like(t) if g is None else g
                if self.prox and self.weight_solver == "k-steps":
                    step = step + self.prox * (t.detach() - w0[n])
                new[n] = (t.detach() - a * step).detach()
            w = new
        return w

    def _solve_input(
        self, block: Block, w: dict[str, torch.Tensor], z0: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        a = self.step_z[block.index - 1]
        m = z0.shape[0]
        if self.input_solver == "least-squares":
            lin = self._linear(block)
            W = w[self._pname(lin, "weight")]
            resid = (target - self._call(block, w, z0)).reshape(m, -1)
            dz = resid @ torch.linalg.pinv(W.T)
            z1: torch.Tensor = (z0.reshape(m, -1) + dz).reshape(z0.shape)
            return z1
        z = z0.detach().clone()
        for _ in range(self.steps if self.input_solver == "k-steps" else 1):
            leaf = z.requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._matching(block, w, leaf, target), [leaf])
            step = m * g  # per-sample metric
            if self.prox and self.input_solver == "k-steps":
                step = step + self.prox * (leaf.detach() - z0)
            z = (leaf.detach() - a * step).detach()
        return z

    def _pname(self, module: nn.Module, attr: str) -> str:
        for n, mod in self.model.named_modules():
            if mod is module:
                return f"{n}.{attr}" if n else attr
        raise OperatorError("module not found in the model")  # pragma: no cover

    def _lstsq_weights(
        self, block: Block, w0: dict[str, torch.Tensor], z: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        lin = self._linear(block)
        m = z.shape[0]
        resid = (target - self._call(block, w0, z)).reshape(m, -1)
        Z = z.reshape(m, -1)
        if lin.bias is not None:
            Z = torch.cat([Z, torch.ones(m, 1, dtype=Z.dtype, device=Z.device)], 1)
        delta = (torch.linalg.pinv(Z) @ resid).T  # minimum-change solution
        out = {n: t.detach().clone() for n, t in w0.items()}
        wn = self._pname(lin, "weight")
        out[wn] = out[wn] + delta[:, : lin.in_features]
        if lin.bias is not None:
            bn = self._pname(lin, "bias")
            out[bn] = out[bn] + delta[:, lin.in_features]
        return out

    # ------------------------------------------------------------------------- iteration

    def step(self, x: torch.Tensor, y: torch.Tensor, *, record: bool = True) -> BackMatchingStep:
        """One back-matching iteration on the batch ``(x, y)``; updates the model's weights.

        Args:
            x: inputs.
            y: labels for the loss.
            record: also evaluate every block's matching loss after its update.
        """
        blocks = list(self.split)
        with torch.no_grad():
            zs = [x]
            for block in blocks:
                zs.append(block.function(zs[-1]))
        top = zs[-1].detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.loss_fn(top, y)
            if loss.ndim != 0:
                raise DataError("loss_fn must return a scalar (the mean over the batch)")
            (g_top,) = torch.autograd.grad(loss, [top])
        m = x.shape[0]
        target = backmatching_target(top.detach(), m * g_top, self.lr)
        before, after = [], []
        updates: dict[str, torch.Tensor] = {}
        for block in reversed(blocks):
            z_in = zs[block.index - 1].detach()
            w0 = {n: self._params[n].detach() for n in block.param_names}
            with torch.no_grad():
                before.append(float(self._matching(block, w0, z_in, target)))
            w_new = self._solve_weights(block, w0, z_in, target)
            if record:
                with torch.no_grad():
                    after.append(float(self._matching(block, w_new, z_in, target)))
            if block.index > 1:
                w_ref = w0 if self.z_update == "jacobi" else w_new
                target = self._solve_input(block, w_ref, z_in, target)
            updates.update(w_new)
        with torch.no_grad():
            for n, t in updates.items():
                self._params[n].copy_(t)
        return BackMatchingStep(
            loss=float(loss.detach()),
            matching_before=tuple(reversed(before)),
            matching_after=tuple(reversed(after)) if record else None,
        )
