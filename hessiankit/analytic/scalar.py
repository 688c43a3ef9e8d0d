r"""Closed forms of the scalar local Hessians: ``H_{W_b} ~ m_{b,W} I``, ``H_{z_{b-1}} ~ m_{b,z} I``.

The scalars that scale-amended SGD (paper digest, section 5) runs on, as formulas.
Normalisation is the core's (:mod:`hessiankit.operators.local`): the weight local Hessian is
the Hessian of the **batch-mean** back-matching loss, ``H_W = (1/m) J_W^T J_W``; the input local
Hessian is **per sample**, ``H_z = J_z^T J_z``. The best scalar stand-in for a symmetric matrix
in the Frobenius sense is its mean eigenvalue ``tr(H)/dim``, so that is what every closed form
below computes.

The formulas (the digest's section 5, and exact counting for convolutions) need one pass over
the weights and the block input, no Hessian products. :func:`closed_form_scales` applies them
to the blocks of a capture: blocks made of one ``Linear``/``Conv{1,2,3}d``, optionally followed
by a batch norm and by parameter-free modules whose Jacobian selects entries (ReLU, max pooling,
flatten, dropout), whose effect enters through :func:`activation_gain`. Other blocks (smooth
nonlinearities, average pooling, skip connections, custom layers) raise
:class:`~hessiankit.errors.OperatorError`. The *measured* scalars (Hutch++ traces, power
iteration) and the one entry point over all three methods, :func:`block_scales`, live next to
the optimizer in :mod:`hessiankit.optim.scales` (importable from here as before).

Which weights: ``m_{b,W}`` is taken over the block's **main weight** (the weight tensor of its
first ``Linear``/``Conv``; bias excluded), the quantity the formulas describe. The bias of a
linear/conv block corresponds to a constant input of 1; it adds ``1`` (linear) or the number of
output positions (conv) to the Hessian's diagonal, which :func:`linear_m_w` and
:func:`conv_m_w` include on request (``bias=True``).

Example (a linear block: ``m_W`` is the mean squared input, ``m_z = ||W||_F^2 / n_in``):
    >>> w = torch.tensor([[1.0, 2.0], [0.0, 2.0]], dtype=torch.float64)
    >>> linear_m_z(w)
    4.5
    >>> linear_m_w(torch.tensor([[1.0, 1.0], [3.0, -1.0]], dtype=torch.float64))
    3.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from hessiankit.blocks.capture import BlockCapture
from hessiankit.blocks.modes import is_batchnorm
from hessiankit.blocks.module_kinds import ADAPTIVE_MAX_POOL, CONV, DROPOUT, MAX_POOL
from hessiankit.blocks.split import Block
from hessiankit.errors import OperatorError
from hessiankit.solvers.results import plain_dict

__all__ = [
    "BlockScale",
    "activation_gain",
    "batchnorm_m_w",
    "batchnorm_m_z",
    "closed_form_scales",
    "conv_m_w",
    "conv_m_z",
    "linear_m_w",
    "linear_m_z",
    "main_weight_name",
]

# Parameter-free modules whose Jacobian selects entries (0/1 rows): their effect on the traces is
# the fraction of the pre-activation entries that reach the block output (see activation_gain).
_SELECTING = (nn.ReLU, nn.Identity, nn.Flatten, *MAX_POOL, *ADAPTIVE_MAX_POOL, *DROPOUT)


@dataclass(frozen=True)
class BlockScale:
    """The scalar approximations of one block's local Hessians.

    Attributes:
        index: block index (from 1).
        name: block name.
        m_w: ``m_{b,W}``, mean eigenvalue (or top eigenvalue) of the weight local Hessian;
            ``None`` for a block without weights.
        m_z: ``m_{b,z}``, the same for the per-sample input local Hessian.
        method: ``"trace"``, ``"closed-form"`` or ``"lambda-max"``.
        m_w_std_error: standard error (trace), error bound (lambda-max) or 0 (closed form).
        m_z_std_error: the same for ``m_z``.
    """

    index: int
    name: str
    m_w: float | None
    m_z: float
    method: str
    m_w_std_error: float
    m_z_std_error: float

    def to_dict(self) -> dict[str, object]:
        return plain_dict(self, index="block")


# ---------------------------------------------------------------- closed forms, linear blocks


def linear_m_w(z_in: torch.Tensor, *, bias: bool = False) -> float:
    r"""``m_W`` of a linear block ``F(W, z) = W z (+ b)``: the mean squared input.

    ``H_W = I_{n_out} kron (Z^T Z / m)`` (rows of ``Z`` = samples), so
    ``tr(H_W)/dim = ||Z||_F^2 / (m n_in)``. Exact for the linear map itself; an element-wise
    nonlinearity after it (``D_i`` factors, digest 4.3) is ignored. With ``bias=True`` the bias
    is the weight of a constant input 1: ``(||Z||_F^2/m + 1) / (n_in + 1)``.

    Args:
        z_in: block input, ``m x n_in`` (trailing dimensions are flattened).
        bias: include the bias in ``W``.
    """
    z = z_in.reshape(z_in.shape[0], -1).to(torch.float64)
    m, n = z.shape
    sq = float(z.pow(2).sum()) / m
    return (sq + 1.0) / (n + 1) if bias else sq / n


def linear_m_z(weight: torch.Tensor) -> float:
    r"""``m_z`` of a linear block: ``tr(W^T W)/n_in = ||W||_F^2 / n_in``.

    Per-sample input local Hessian ``H_z = W^T W`` (exact for the linear map; a following
    nonlinearity is ignored; the bias does not enter).

    Args:
        weight: ``n_out x n_in``.
    """
    return float(weight.to(torch.float64).pow(2).sum()) / weight.shape[1]


# ------------------------------------------------------------------ closed forms, convolutions


def _geometry(conv: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    if not isinstance(conv, CONV) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise OperatorError(
            f"no closed form for {type(conv).__name__} with groups/padding mode "
            f"{getattr(conv, 'groups', '?')}/{getattr(conv, 'padding_mode', '?')}; use method='trace'"
        )
    if isinstance(conv.padding, str):
        raise OperatorError(
            "no closed form for string padding ('same'/'valid'); use method='trace'"
        )
    return tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation)


def _tap_counts(
    size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> torch.Tensor:
    """For each kernel tap, how many output positions read an in-range (non-padding) input."""
    counts: torch.Tensor | None = None
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        out = (n + 2 * p - d * (k - 1) - 1) // s + 1
        c = torch.tensor(
            [sum(1 for o in range(out) if 0 <= o * s - p + t * d < n) for t in range(k)],
            dtype=torch.float64,
        )
        counts = c if counts is None else counts[..., None] * c
    assert counts is not None
    return counts


def conv_m_w(z_in: torch.Tensor, conv: nn.Module, *, bias: bool = False) -> float:
    r"""``m_W`` of a convolution block: the mean squared patch entry, summed over positions.

    A convolution is linear in W: ``H_W = (1/m) sum_{samples, positions} u u^T kron I_{c_out}``
    (u = the ``c_in k^d`` input patch, zero padding included), so
    ``tr(H_W)/dim = (1/m) sum ||u||^2 / (c_in k^d)``: the **number of output positions times**
    the mean squared patch entry. Exact for the convolution (groups 1, zero padding); a
    following nonlinearity is ignored. ``bias=True``: a constant 1 appended to every patch.

    Args:
        z_in: block input, ``m x c_in x spatial``.
        conv: the ``Conv1d/2d/3d`` module.
        bias: include the bias in ``W``.
    """
    stride, padding, dilation = _geometry(conv)
    kernel = tuple(int(k) for k in cast(Sequence[int], conv.kernel_size))
    z = z_in.to(torch.float64)
    sq = z.pow(2).sum(dim=1, keepdim=True)
    ones = torch.ones((1, 1, *kernel), dtype=torch.float64, device=z.device)
    convnd = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(kernel)]
    per_pos = convnd(sq, ones, stride=stride, padding=padding, dilation=dilation)
    m = z.shape[0]
    fan_in = int(cast(int, conv.in_channels)) * math.prod(kernel)
    total = float(per_pos.sum()) / m
    if bias:
        positions = per_pos[0].numel()
        return float((total + positions) / (fan_in + 1))
    return float(total / fan_in)


def conv_m_z(weight: torch.Tensor, conv: nn.Module, input_size: Sequence[int]) -> float:
    r"""``m_z`` of a convolution block: ``||J_z||_F^2 / (c_in prod(input_size))``, exact.

    ``tr(J_z^T J_z)`` counts every weight once per output position whose tap lands on a real
    (non-padding) input pixel: ``sum_{o,c,tap} W[o,c,tap]^2 count(tap)``. Interior taps of a
    stride-1 'same' convolution count every position, so then ``m_z ~ ||W||_F^2 / c_in`` (not
    ``/(c_in k^2)``: each input pixel feeds ``k^2`` patches). A following nonlinearity is
    ignored.

    Args:
        weight: ``c_out x c_in x kernel`` (may differ from ``conv.weight``, e.g. rescaled rows).
        conv: the module (for stride, padding, dilation).
        input_size: spatial size of the block input.
    """
    stride, padding, dilation = _geometry(conv)
    kernel = tuple(weight.shape[2:])
    counts = _tap_counts(input_size, kernel, stride, padding, dilation).to(weight.device)
    tap_sq = weight.to(torch.float64).pow(2).sum(dim=(0, 1))
    return float((tap_sq * counts).sum()) / (weight.shape[1] * math.prod(input_size))


# -------------------------------------------------------------------- closed forms, batch norm


def _row_sq(weight: torch.Tensor) -> torch.Tensor:
    return weight.to(torch.float64).reshape(weight.shape[0], -1).pow(2).sum(dim=1)


def batchnorm_m_w(
    weight: torch.Tensor,
    gamma: torch.Tensor | None,
    *,
    input_variance: float = 1.0,
    eps: float = 0.0,
    positions: int = 1,
    per_channel: bool = False,
) -> float | torch.Tensor:
    r"""``m_W`` of a linear/conv block followed by batch norm (train mode), isotropic input.

    With batch statistics, output unit i sees ``y_i = gamma_i (w_i^T c - mu_i)/sqrt(v_i + eps)``,
    ``v_i = w_i^T Sigma w_i`` (``Sigma`` = covariance of the centred input/patches). Its rows
    decouple (digest 4.6) and, in the batch-mean normalisation and under the **isotropic-input
    approximation** ``Sigma = s^2 I``, ``v_i = s^2 ||w_i||^2``,

    ``tr(H_{w_i}) = P gamma_i^2/(v_i+eps) [n s^2 - s^4 ||w_i||^2 (2/(v_i+eps) - v_i/(v_i+eps)^2)]``

    (n = fan-in, P = output positions, 1 for a linear layer), which for ``eps = 0`` is
    ``P gamma_i^2 (n-1)/||w_i||^2``: independent of the input scale and mean, inversely
    proportional to the squared row norm (scale invariance). Returns the mean eigenvalue
    ``mean_i tr(H_{w_i}) / n`` (or the per-row values with ``per_channel=True``). Exact when the
    input (patch) covariance is ``s^2 I``; the following activation/pooling is ignored.

    Args:
        weight: ``n_out x fan-in`` (conv: ``c_out x c_in x kernel``).
        gamma: batch-norm scale (``None``: no affine, gamma = 1).
        input_variance: ``s^2``, per-coordinate variance of the block input (matters only with
            ``eps > 0``).
        eps: the batch norm's epsilon.
        positions: output positions per sample (conv: spatial size of the output).
        per_channel: return a tensor with one value per output unit.
    """
    r2 = _row_sq(weight)
    n = weight[0].numel()
    g2 = torch.ones_like(r2) if gamma is None else gamma.to(torch.float64).pow(2)
    s2 = float(input_variance)
    v = s2 * r2
    ve = v + eps
    tr = positions * g2 / ve * (n * s2 - s2 * s2 * r2 * (2.0 / ve - v / ve.pow(2)))
    per_row = tr / n
    return per_row if per_channel else float(per_row.mean())


def batchnorm_m_z(
    weight: torch.Tensor,
    gamma: torch.Tensor | None,
    input_variance: float,
    *,
    eps: float = 0.0,
    conv: nn.Module | None = None,
    input_size: Sequence[int] | None = None,
    batch_entries: int | None = None,
) -> float:
    r"""``m_z`` of a linear/conv block followed by batch norm (train mode), isotropic input.

    The input local Hessian is ``sum_i gamma_i^2/(v_i+eps) (I kron w_i) P_i^2 (I kron w_i^T)``
    with ``P_i = I - 1 1^T/M - c_i a_i a_i^T`` (M = batch entries per unit, ``c_i = v_i/(v_i+eps)``,
    ``a_i`` the unit-norm centred pre-activation; digest 4.6). Its trace only needs
    ``tr(P_i^2) = M - 1 - 2 c_i + c_i^2``, so for a **linear** layer

    ``m_z = (1/(m n_in)) sum_i gamma_i^2 ||w_i||^2 (M - 1 - 2c_i + c_i^2) / (v_i + eps)``

    exactly, with ``v_i = w_i^T Sigma w_i``; here ``v_i = s^2 ||w_i||^2`` (**isotropic-input
    approximation**). For ``eps = 0`` and large M it is ``(n_out/n_in) mean_i(gamma_i^2) / s^2``:
    independent of W, inversely proportional to the input variance. ``batch_entries=None``
    drops the projections (factor 1 instead of ``tr(P_i^2)/M``). For a convolution the same
    row-rescaled weight goes through :func:`conv_m_z` (then also approximate in how the
    projections and the tap counts interact). The following activation is ignored.

    Args:
        weight: ``n_out x n_in`` or ``c_out x c_in x kernel``.
        gamma: batch-norm scale (``None``: gamma = 1).
        input_variance: ``s^2``, per-coordinate variance of the block input.
        eps: the batch norm's epsilon.
        conv: the convolution module (``None`` for a linear layer).
        input_size: spatial size of the block input (conv only).
        batch_entries: M, entries each unit is normalised over (m, or m times the output
            positions for a conv); ``None`` ignores the batch-coupling projections.
    """
    if input_variance <= 0:
        raise OperatorError("the block input has zero variance; batch norm's m_z is undefined")
    r2 = _row_sq(weight)
    g2 = torch.ones_like(r2) if gamma is None else gamma.to(torch.float64).pow(2)
    v = input_variance * r2
    ratio = torch.ones_like(r2)
    if batch_entries is not None:
        c = v / (v + eps)
        ratio = (batch_entries - 1 - 2 * c + c * c) / batch_entries
    factor = (g2 * ratio / (v + eps)).sqrt()
    w = weight.to(torch.float64) * factor.reshape(-1, *([1] * (weight.ndim - 1)))
    if conv is None:
        return linear_m_z(w.reshape(w.shape[0], -1))
    if input_size is None:
        raise OperatorError("batchnorm_m_z for a convolution needs input_size")
    return conv_m_z(w, conv, input_size)


_AVG_POOL = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


def activation_gain(z_out: torch.Tensor, pre_numel: int) -> float:
    r"""Fraction of a block's pre-activation entries that reach its output: ``nnz(z_b) / pre_numel``.

    ReLU, max pooling and dropout have Jacobians whose rows select single entries (0/1), so they
    multiply ``tr(J^T J)`` by the fraction of pre-activation entries passed on, **assuming each
    entry carries an equal share of the trace** (isotropy again). ``nnz`` of the block output
    counts them (an output that is exactly 0 came through an inactive ReLU).

    Args:
        z_out: the block output ``z_b``.
        pre_numel: entries of the linear/conv (or batch-norm) output over the batch.
    """
    return float((z_out != 0).sum()) / pre_numel


# ------------------------------------------------------------------------ at a capture's blocks


def closed_form_scales(
    capture: BlockCapture, blocks: Sequence[int | str | Block] | None = None
) -> tuple[BlockScale, ...]:
    """``m_{b,W}`` (main weight) and ``m_{b,z}`` from the closed forms, per block of a capture.

    Args:
        capture: the recorded batch (``bn="train"`` for blocks with batch norm: the formulas
            describe batch statistics).
        blocks: the blocks (indices from 1, module paths or :class:`Block`); default all.

    Raises:
        OperatorError: a block has no closed form (the message says why).
    """
    chosen = [capture.split.block(b) for b in blocks] if blocks is not None else list(capture.split)
    out = []
    for block in chosen:
        m_w, m_z = _closed_form(capture, block)
        out.append(BlockScale(block.index, block.name, m_w, m_z, "closed-form", 0.0, 0.0))
    return tuple(out)


def _modules(capture: BlockCapture, block: Block) -> list[tuple[str, nn.Module]]:
    named = dict(capture.split.model.named_modules())
    return [(n, named[n]) for n in block.module_names if n in named]


def main_weight_name(capture_or_model: BlockCapture | nn.Module, block: Block) -> str | None:
    """The model's name of the block's main weight (first ``Linear``/``Conv`` weight), if any."""
    model = (
        capture_or_model.split.model
        if isinstance(capture_or_model, BlockCapture)
        else capture_or_model
    )
    named = dict(model.named_modules())
    for n in block.module_names:
        mod = named.get(n)
        if isinstance(mod, (nn.Linear, *CONV)):
            return f"{n}.weight"
    for n in block.param_names:
        owner = named.get(n.rsplit(".", 1)[0]) if "." in n else None
        if n.endswith("weight") and not (owner is not None and is_batchnorm(owner)):
            return n
    return None


def _closed_form(capture: BlockCapture, block: Block) -> tuple[float | None, float]:
    if block.has_skip:
        raise OperatorError(
            f"block {block.index} ({block.name}) has a skip connection: no closed-form scalar; "
            "use method='trace'"
        )
    main: nn.Module | None = None
    bn: nn.Module | None = None
    selecting_after = False
    tail: list[nn.Module] = []
    for name, mod in _modules(capture, block):
        if isinstance(mod, (nn.Linear, *CONV)) and main is None:
            main = mod
        elif is_batchnorm(mod) and main is not None and bn is None:
            bn = mod
        elif list(mod.children()) or isinstance(mod, _SELECTING):
            selecting_after = selecting_after or (
                main is not None and not isinstance(mod, (nn.Flatten, nn.Identity))
            )
            tail.append(mod)
            continue
        elif isinstance(mod, _AVG_POOL) and main is not None:
            tail.append(mod)  # allowed only where it is the identity (checked below)
            continue
        else:
            raise OperatorError(
                f"block {block.index} ({block.name}) contains {type(mod).__name__} ({name}), which "
                "has no closed-form scalar; use method='trace'"
            )
    if main is None:
        raise OperatorError(
            f"block {block.index} ({block.name}) has no Linear/Conv layer: no closed-form scalar; "
            "use method='trace'"
        )
    prefix = next(n for n, m in _modules(capture, block) if m is main)
    state = capture.state
    weight = state.params[f"{prefix}.weight"]
    z_in = capture.block_input(block)
    if isinstance(main, nn.Linear):
        z_in = z_in.reshape(z_in.shape[0], -1)
    is_conv = isinstance(main, CONV)
    spatial = tuple(z_in.shape[2:]) if is_conv else ()
    m = capture.batch_size
    positions = _conv_positions(main, spatial) if is_conv else 1
    _check_avg_pools(tail, weight, main, spatial, block)
    gain = 1.0
    if selecting_after:
        gain = activation_gain(capture.block_output(block), m * weight.shape[0] * positions)
    if bn is None:
        if is_conv:
            return gain * conv_m_w(z_in, main), gain * conv_m_z(weight, main, spatial)
        return gain * linear_m_w(z_in), gain * linear_m_z(weight)
    bn_prefix = next(n for n, m in _modules(capture, block) if m is bn)
    gamma = state.params.get(f"{bn_prefix}.weight")
    if capture.bn == "eval":
        raise OperatorError(
            "the batch-norm closed forms describe train mode (batch statistics); capture with "
            "bn='train' or use method='trace'"
        )
    zi = z_in.to(torch.float64)
    dims = [0, *range(2, zi.ndim)]
    s2 = float(zi.var(dim=dims, unbiased=False).mean())
    eps = float(cast(float, bn.eps))
    if is_conv:
        m_w = batchnorm_m_w(weight, gamma, input_variance=s2, eps=eps, positions=positions)
        m_z = batchnorm_m_z(
            weight,
            gamma,
            s2,
            eps=eps,
            conv=main,
            input_size=spatial,
            batch_entries=capture.batch_size * positions,
        )
    else:
        m_w = batchnorm_m_w(weight, gamma, input_variance=s2, eps=eps)
        m_z = batchnorm_m_z(weight, gamma, s2, eps=eps, batch_entries=capture.batch_size)
    assert isinstance(m_w, float)
    return gain * m_w, gain * m_z


def _check_avg_pools(
    tail: list[nn.Module],
    weight: torch.Tensor,
    main: nn.Module,
    spatial: Sequence[int],
    block: Block,
) -> None:
    """Average pooling is allowed in a closed-form block only where it leaves the shape alone."""
    if not any(isinstance(t, _AVG_POOL) for t in tail):
        return
    out_spatial = (
        tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(spatial, main.kernel_size, *_geometry(main))
        )
        if isinstance(main, CONV)
        else ()
    )
    h = torch.zeros(1, weight.shape[0], *out_spatial)
    for t in tail:
        before = h.numel()
        h = t(h)
        if isinstance(t, _AVG_POOL) and h.numel() != before:
            raise OperatorError(
                f"block {block.index} ({block.name}) averages over pooling windows: no closed-form "
                "scalar; use method='trace'"
            )


def _conv_positions(conv: nn.Module, spatial: Sequence[int]) -> int:
    stride, padding, dilation = _geometry(conv)
    out = 1
    kernel = cast(Sequence[int], conv.kernel_size)
    for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation):
        out *= (n + 2 * p - d * (k - 1) - 1) // s + 1
    return out


_MEASURED = ("ScaleMethod", "block_scales")


def __getattr__(name: str) -> object:
    # The measured scalars moved to hessiankit.optim.scales; their old import path stays
    # (imported lazily: that module imports this one).
    if name in _MEASURED:
        from hessiankit.optim import scales

        return getattr(scales, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
