r"""Scale-amended SGD (the paper's Algorithm 2, digest section 5), a :class:`torch.optim.Optimizer`.

Replacing each block's local Hessians by multiples of the identity, ``H_{W_b} ~ m_{b,W} I`` and
``H_{z_{b-1}} ~ m_{b,z} I`` (measured in :mod:`hessiankit.optim.scales`, closed forms in
:mod:`hessiankit.analytic.scalar`: the one definition of these scalars), and solving every
back-matching problem by the Newton step of that scalar model is, by the generalised
Proposition 1, plain SGD with a **per-block learning rate**

.. math::

    s_B = 1, \qquad s_{b-1} = s_b / m_{b,z}, \qquad \eta_b = \eta\, s_b / m_{b,W},

the cumulative amendment ``s_b`` carrying the rescaling of the backward signal from the blocks
above. This optimizer is ``torch.optim.SGD`` (momentum, dampening, weight decay, Nesterov,
maximize; same update order) whose step for block b uses ``lr * r_b`` with ``r_b = s_b/m_{b,W}``
after the options below:

``method``
    how the scalars are computed: ``"closed-form"`` (default; one forward pass, no Hessian
    products), ``"trace"`` (Hutch++ mean eigenvalue) or ``"lambda-max"``;
``refresh_every`` (K)
    recompute the scalars every K steps (the paper recomputes them periodically);
``normalize``
    ``"mean"`` (default: the mean of ``r_b`` over the amended blocks is 1, so the mean amended
    rate equals ``lr`` and learning-rate sweeps stay comparable with SGD), ``"geometric"``
    (geometric mean 1) or ``"none"`` (the raw ``s_b/m_{b,W}``);
``clip``
    clamp every ``r_b`` to ``[1/clip, clip]`` after normalising (``None``: no clipping);
``ema``
    smoothing of ``log r_b`` across refreshes (0: none);
``per_channel``
    one multiplier per output channel of the main weight: ``r_b`` times the row's share
    ``(||w_i||^2/gamma_i^2) / mean_j(||w_j||^2/gamma_j^2)``, the inverse of the row's
    batch-norm scalar normalised to mean 1 (rows of blocks without batch norm share ``r_b``);
``amend`` on each parameter group
    whether the group gets the multiplier. :func:`block_param_groups` gives every block's main
    weight the amended rate and, by default, its other parameters (bias, batch-norm gamma and
    beta) the plain rate (``others="plain"``) or the amended one (``others="amended"``).

The multipliers live in the parameter groups (``group["amendment"]``) and, per channel, in the
parameter state, so ``state_dict()``/``load_state_dict()`` restore them; LR schedulers change
``group["lr"]`` as for SGD. With ``amend=False`` (or groups without ``amend``) every step is
bit-for-bit ``torch.optim.SGD``'s.

Where the scalars come from: ``refresh(x)`` runs one capture on the batch ``x``;
:meth:`ScaleAmendedSGD.for_model` registers a forward pre-hook that keeps the latest training
batch so ``step()`` refreshes by itself every K steps.

Example:
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> opt = ScaleAmendedSGD.for_model(net, lr=0.1, momentum=0.9)
    >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    >>> nn.functional.cross_entropy(net(x), y).backward()
    >>> opt.step()
    >>> [round(g["amendment"], 3) for g in opt.param_groups if g["role"] == "main"]  # doctest: +SKIP
    [0.2..., 1.7...]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer

from hessiankit.analytic.scalar import BlockScale, main_weight_name
from hessiankit.blocks.capture import capture
from hessiankit.blocks.modes import is_batchnorm
from hessiankit.blocks.split import BlockSplit, split_blocks
from hessiankit.errors import OperatorError
from hessiankit.optim.scales import ScaleMethod, block_scales

__all__ = ["ScaleAmendedSGD", "amendment_from_scales", "block_param_groups"]

Normalize = Literal["mean", "geometric", "none"]


def block_param_groups(
    model: nn.Module | BlockSplit, *, others: Literal["plain", "amended"] = "plain"
) -> list[dict[str, Any]]:
    """Parameter groups for :class:`ScaleAmendedSGD`, two per block: its main weight and the rest.

    Args:
        model: the network or its block split.
        others: whether a block's bias and batch-norm gamma/beta get the amended rate
            (``"amended"``) or the plain one (``"plain"``).

    Returns:
        Dicts with ``params``, ``block`` (index from 1), ``block_name``, ``role`` (``"main"`` or
        ``"other"``) and ``amend``. Parameters in no block form a last group with ``amend=False``.
    """
    if others not in ("plain", "amended"):
        raise OperatorError(f"unknown others={others!r}; use 'plain' or 'amended'")
    split = model if isinstance(model, BlockSplit) else split_blocks(model)
    params = dict(split.model.named_parameters())
    groups: list[dict[str, Any]] = []
    seen: set[str] = set()
    for block in split:
        main = main_weight_name(split.model, block)
        names = [n for n in block.param_names if n in params and n not in seen]
        seen.update(names)
        if main in names:
            groups.append(
                {
                    "params": [params[main]],
                    "block": block.index,
                    "block_name": block.name,
                    "role": "main",
                    "amend": True,
                    "param_names": [main],
                }
            )
        rest = [n for n in names if n != main]
        if rest:
            groups.append(
                {
                    "params": [params[n] for n in rest],
                    "block": block.index,
                    "block_name": block.name,
                    "role": "other",
                    "amend": others == "amended",
                    "param_names": rest,
                }
            )
    stray = [n for n in params if n not in seen]
    if stray:
        groups.append(
            {
                "params": [params[n] for n in stray],
                "block": 0,
                "block_name": "none",
                "role": "other",
                "amend": False,
                "param_names": stray,
            }
        )
    return groups


def amendment_from_scales(
    scales: Sequence[BlockScale], *, normalize: Normalize = "mean", clip: float | None = None
) -> dict[int, float]:
    r"""Per-block multipliers ``r_b = s_b / m_{b,W}`` from the scalars (Algorithm 2).

    ``s_B = 1``, ``s_{b-1} = s_b / m_{b,z}``; then normalised and clipped as documented in the
    module. Blocks without weights get no entry; a block whose scalars are not finite and
    positive gets none either (the caller keeps its previous multiplier).

    Example (two blocks, ``m_2z = 4``: the lower block's signal is 4 times too large):
        >>> from hessiankit.analytic.scalar import BlockScale
        >>> sc = [BlockScale(1, "a", 2.0, 1.0, "closed-form", 0, 0),
        ...       BlockScale(2, "b", 0.5, 4.0, "closed-form", 0, 0)]
        >>> amendment_from_scales(sc, normalize="none")   # r_1 = (1/4)/2, r_2 = 1/0.5
        {1: 0.125, 2: 2.0}
    """
    if normalize not in ("mean", "geometric", "none"):
        raise OperatorError(f"unknown normalize {normalize!r}; use 'mean', 'geometric' or 'none'")
    if clip is not None and not clip >= 1.0:
        raise OperatorError(f"clip must be at least 1 (a ratio), got {clip}")
    ordered = sorted(scales, key=lambda s: s.index)
    s = 1.0
    raw: dict[int, float] = {}
    for sc in reversed(ordered):
        if sc.m_w is not None and math.isfinite(s) and s > 0 and _ok(sc.m_w):
            raw[sc.index] = s / sc.m_w
        s = s / sc.m_z if _ok(sc.m_z) else s
    if not raw:
        return {}
    vals = list(raw.values())
    if normalize == "mean":
        c = sum(vals) / len(vals)
    elif normalize == "geometric":
        c = math.exp(sum(math.log(v) for v in vals) / len(vals))
    else:
        c = 1.0
    out = {b: v / c for b, v in raw.items()}
    if clip is not None:
        out = {b: min(max(v, 1.0 / clip), clip) for b, v in out.items()}
    return {b: out[b] for b in sorted(out) if _ok(out[b])}


def _ok(v: float) -> bool:
    return math.isfinite(v) and v > 0


class ScaleAmendedSGD(Optimizer):
    """SGD with the per-block learning rates of scale-amended SGD (see the module docstring).

    Args:
        params: parameters or groups; groups with ``amend=True`` and a ``block`` index get the
            block's multiplier (build them with :func:`block_param_groups`).
        lr, momentum, dampening, weight_decay, nesterov, maximize: as ``torch.optim.SGD``.
        split: the model's block split (needed to compute the scalars).
        amend: switch the amendment off to get exactly ``torch.optim.SGD``.
        method: ``"closed-form"``, ``"trace"`` or ``"lambda-max"``.
        refresh_every: K, steps between recomputations of the scalars.
        normalize, clip, ema, per_channel: see the module docstring.
        num_products, seed: for ``"trace"``/``"lambda-max"``.
        bn: batch-norm mode of the capture (default: ``"train"`` if the model is in training
            mode, else ``"eval"``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        split: BlockSplit | None = None,
        amend: bool = True,
        method: ScaleMethod = "closed-form",
        refresh_every: int = 1,
        normalize: Normalize = "mean",
        clip: float | None = None,
        ema: float = 0.0,
        per_channel: bool = False,
        num_products: int = 10,
        seed: int = 0,
        bn: Literal["train", "eval"] | None = None,
    ) -> None:
        if lr < 0.0:
            raise OperatorError(f"invalid learning rate {lr}; use lr >= 0")
        if momentum < 0.0 or weight_decay < 0.0:
            raise OperatorError("momentum and weight_decay must be non-negative")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise OperatorError("Nesterov momentum needs momentum > 0 and dampening 0")
        if refresh_every < 1:
            raise OperatorError(f"refresh_every must be at least 1, got {refresh_every}")
        if not 0.0 <= ema < 1.0:
            raise OperatorError(f"ema must lie in [0, 1), got {ema}")
        if method not in ("closed-form", "trace", "lambda-max"):
            raise OperatorError(
                f"unknown method {method!r}; use 'closed-form', 'trace' or 'lambda-max'"
            )
        amendment_from_scales([], normalize=normalize, clip=clip)  # validates both
        if per_channel and method != "closed-form":
            raise OperatorError("per_channel needs method='closed-form'")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            amend=False,
            block=0,
            role="other",
            amendment=1.0,
        )
        super().__init__(params, defaults)
        if amend and any(g["amend"] for g in self.param_groups) and split is None:
            raise OperatorError(
                "the amendment needs the block split: pass split=split_blocks(model), use "
                "ScaleAmendedSGD.for_model(model, ...), or amend=False"
            )
        self.split = split
        self.amend = amend
        self.method: ScaleMethod = method
        self.refresh_every = int(refresh_every)
        self.normalize: Normalize = normalize
        self.clip = clip
        self.ema = float(ema)
        self.per_channel = per_channel
        self.num_products = num_products
        self.seed = seed
        self.bn = bn
        self.last_scales: tuple[BlockScale, ...] | None = None
        self._last_input: torch.Tensor | None = None
        self._hook: Any = None
        self._steps = 0
        self._refreshes = 0

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        lr: float,
        *,
        others: Literal["plain", "amended"] = "plain",
        **kwargs: Any,
    ) -> ScaleAmendedSGD:
        """Build groups from the block split and keep the latest training batch for refreshes.

        A forward pre-hook on ``model`` stores (a reference to) its input whenever the model runs
        in training mode; :meth:`close` removes it.
        """
        split = split_blocks(model)
        opt = cls(block_param_groups(split, others=others), lr, split=split, **kwargs)

        def keep(module: nn.Module, args: tuple[Any, ...]) -> None:
            if module.training and args and torch.is_tensor(args[0]):
                opt._last_input = args[0].detach()

        opt._hook = model.register_forward_pre_hook(keep)
        return opt

    def close(self) -> None:
        """Remove the forward hook installed by :meth:`for_model`."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["amendment_counters"] = {"steps": self._steps, "refreshes": self._refreshes}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        counters = sd.pop("amendment_counters", None)
        super().load_state_dict(sd)
        if counters:
            self._steps = int(counters["steps"])
            self._refreshes = int(counters["refreshes"])

    # -------------------------------------------------------------------------- amendment

    @torch.no_grad()
    def refresh(self, x: torch.Tensor) -> tuple[BlockScale, ...]:
        """Recompute the scalars on batch ``x`` (one capture) and update every multiplier."""
        if self.split is None:
            raise OperatorError("refresh needs the block split; pass split= to the optimizer")
        model = self.split.model
        bn = self.bn or ("train" if model.training else "eval")
        cap = capture(self.split, x, bn=bn)
        scales = block_scales(
            cap, method=self.method, num_products=self.num_products, seed=self.seed
        )
        r = amendment_from_scales(scales, normalize=self.normalize, clip=self.clip)
        for group in self.param_groups:
            if not group["amend"] or group["block"] not in r:
                continue
            new = r[group["block"]]
            if self.ema and self._refreshes > 0:
                new = math.exp(
                    self.ema * math.log(group["amendment"]) + (1 - self.ema) * math.log(new)
                )
            group["amendment"] = new
            if self.per_channel and group["role"] == "main":
                for p in group["params"]:
                    self.state[p]["channel_amendment"] = self._row_factors(group, p)
        self.last_scales = scales
        self._refreshes += 1
        return scales

    def _row_factors(self, group: dict[str, Any], p: torch.Tensor) -> torch.Tensor:
        """Per-row rate shares ``(||w_i||^2/gamma_i^2)/mean_j(...)`` (batch-norm closed form)."""
        assert self.split is not None
        block = self.split.block(group["block"])
        named = dict(self.split.model.named_modules())
        bn = next(
            (named[n] for n in block.module_names if n in named and is_batchnorm(named[n])), None
        )
        shape = (p.shape[0],) + (1,) * (p.ndim - 1)
        if bn is None:
            return torch.ones(shape, dtype=p.dtype, device=p.device)
        rows = p.detach().reshape(p.shape[0], -1).pow(2).sum(1).clamp_min(1e-30)
        g2 = (
            torch.ones_like(rows)
            if bn.weight is None
            else bn.weight.detach().pow(2).clamp_min(1e-30)
        )
        inv = rows / g2  # the row's rate is inverse to its scalar gamma_i^2/||w_i||^2
        share = inv / inv.mean()  # mean 1: the block keeps r_b on average
        return share.reshape(shape).to(p.dtype)

    # ------------------------------------------------------------------------------- step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One SGD step at the amended rates; refreshes the scalars every ``refresh_every`` steps."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.amend and self.split is not None and self._steps % self.refresh_every == 0:
            if self._last_input is not None:
                self.refresh(self._last_input)
            elif self._refreshes == 0 and any(g["amend"] for g in self.param_groups):
                raise OperatorError(
                    "no batch to compute the amendment from: call opt.refresh(x) before step(), "
                    "or build the optimizer with ScaleAmendedSGD.for_model(model, ...)"
                )
        for group in self.param_groups:
            self._update_group(group)
        self._steps += 1
        return loss

    def _update_group(self, group: dict[str, Any]) -> None:
        wd, mom, damp = group["weight_decay"], group["momentum"], group["dampening"]
        nesterov, maximize = group["nesterov"], group["maximize"]
        amended = self.amend and group["amend"]
        lr = group["lr"] * group["amendment"] if amended else group["lr"]
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise OperatorError("ScaleAmendedSGD does not support sparse gradients")
            grad = p.grad if not maximize else -p.grad
            if wd != 0:
                grad = grad.add(p, alpha=wd)
            if mom != 0:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = grad.detach().clone()
                    state["momentum_buffer"] = buf
                else:
                    buf.mul_(mom).add_(grad, alpha=1 - damp)
                grad = grad.add(buf, alpha=mom) if nesterov else buf
            channel = self.state[p].get("channel_amendment") if amended else None
            if channel is not None:
                p.addcmul_(grad, channel, value=-lr)
            else:
                p.add_(grad, alpha=-lr)
