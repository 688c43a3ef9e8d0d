r"""Per-channel Jacobians of a channel-separable block, explicitly, without the wasted convolutions.

For a block ``F = post(lin(x))`` (:class:`~hessiankit.solvers.separable_structure.FactoredBlock`)
the pre-activation of channel o is ``y_o = w_o * x + b_o``: linear in the filter, with a
Jacobian ``U = d y_o / d w_o`` that is **the same for every channel** (the unfolded input
patches, ``im2col``; ``x`` itself for a linear layer). So channel o's Jacobian is

.. math::

    J_o = \bigl[\, D_o U,\; D_o \mathbf 1,\; \partial\,\mathrm{post}_o / \partial \gamma_o,\;
    \partial\,\mathrm{post}_o / \partial \beta_o \,\bigr],

with ``D_o`` the Jacobian of the per-channel steps (batch norm, activation, pooling). ``U`` is
formed once (one convolution with identity filters); column j of every ``J_o`` is then one
forward-mode product of the cheap per-channel steps, with the tangent ``U_j`` placed in every
channel at once, and many columns go in one vmapped call. The convolution is never re-run per
column, which is what a Jacobian-vector product through the whole block would do.

A subset of the channels is the same computation on sliced tensors (per-channel steps keep
channels apart), so the work and memory scale with the channels asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jvp

from hessiankit._precision import full_precision
from hessiankit.solvers.separable_structure import FactoredBlock

__all__ = ["FactoredJacobian"]


def _names(block: FactoredBlock) -> set[str]:
    return {*block.names, f"{block.lin_name}.weight", f"{block.lin_name}.bias"}


_MAX_POOL: dict[type[nn.Module], Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    nn.MaxPool1d: F.max_pool1d_with_indices,
    nn.MaxPool2d: F.max_pool2d_with_indices,
    nn.MaxPool3d: F.max_pool3d_with_indices,
}


class FactoredJacobian:
    """Columns of the per-channel Jacobians ``J_o`` (rows: samples x output positions).

    Args:
        block: the factored block.
        params: the block's parameters by full name (the capture's functional state).
        max_bytes: working memory for one vmapped batch of columns.
    """

    def __init__(
        self, block: FactoredBlock, params: dict[str, torch.Tensor], *, max_bytes: int
    ) -> None:
        self.block = block
        self.params = params
        lin = block.lin
        self._lin_params = {f"{block.lin_name}.weight", f"{block.lin_name}.bias"}
        weight = params[f"{block.lin_name}.weight"]
        self.weight_columns = int(weight[0].numel())
        with torch.no_grad(), full_precision():
            if isinstance(lin, nn.Linear):
                self.U = block.x  # (m, in)
            else:
                eye = torch.eye(self.weight_columns, dtype=block.x.dtype, device=block.x.device)
                conv: nn.modules.conv._ConvNd = lin  # type: ignore[assignment]
                self.U = conv._conv_forward(block.x, eye.reshape(-1, *weight.shape[1:]), None)
        self.m = int(block.y.shape[0])
        self.in_positions = int(block.y[0, 0].numel())
        self.max_bytes = int(max_bytes)

    @classmethod
    def in_float64(
        cls, block: FactoredBlock, params: dict[str, torch.Tensor], *, max_bytes: int
    ) -> FactoredJacobian:
        """The same Jacobians computed in float64 at the same point (weights and input as
        stored, whatever their dtype): the weighted layer's output is recomputed in float64,
        so batch-norm statistics, masks and every entry are those of exact arithmetic at that
        point (up to float64 rounding), not of the model dtype's rounding."""
        wide = {n: t.to(torch.float64) for n, t in params.items() if n in _names(block)}
        x = block.x.to(torch.float64)
        weight = wide[f"{block.lin_name}.weight"]
        bias = wide.get(f"{block.lin_name}.bias")
        with torch.no_grad(), full_precision():
            if isinstance(block.lin, nn.Linear):
                y = F.linear(x, weight, bias)
            else:
                conv: nn.modules.conv._ConvNd = block.lin  # type: ignore[assignment]
                y = conv._conv_forward(x, weight, bias)
        buffers = {
            n: t.to(torch.float64) if t.is_floating_point() else t for n, t in block.buffers.items()
        }
        return cls(replace(block, x=x, y=y, buffers=buffers), wide, max_bytes=max_bytes)

    @property
    def num_columns(self) -> int:
        """d: variables per channel."""
        return sum(
            self.weight_columns if n.endswith(".weight") and n in self._lin_params else 1
            for n in self.block.names
        )

    def _post(
        self, y: torch.Tensor, post: dict[str, torch.Tensor], channels: torch.Tensor
    ) -> torch.Tensor:
        """The steps after the weighted layer on ``y`` (m, q, ...) for the given channels."""
        b = self.block
        for s in b.steps:
            if s.kind == "identity":
                continue
            if s.kind == "flatten":
                y = y.flatten(1)
            elif s.kind == "function":
                assert s.call is not None  # set for every "function" step
                y = s.call(y)
            elif s.kind == "bn":
                mod: nn.modules.batchnorm._BatchNorm = s.module  # type: ignore[assignment]
                mean, inv, _ = self._bn_stats(s.name, y, channels, mod.eps)
                y = (y - mean) * inv
                w, bias = post.get(f"{s.name}.weight"), post.get(f"{s.name}.bias")
                shape = (1, -1) + (1,) * (y.ndim - 2)
                y = y if w is None else y * w.reshape(shape)
                y = y if bias is None else y + bias.reshape(shape)
            else:
                assert s.module is not None  # set for every "module" step
                y = s.module(y.clone() if getattr(s.module, "inplace", False) else y)
        return y

    def _bn_stats(
        self, name: str, y: torch.Tensor, channels: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Mean and ``1/sqrt(var + eps)`` broadcastable to ``y``, and whether they are batch
        statistics (train mode, or no running statistics) rather than running ones."""
        b = self.block
        rm = b.buffers.get(f"{name}.running_mean")
        rv = b.buffers.get(f"{name}.running_var")
        shape = (1, -1) + (1,) * (y.ndim - 2)
        if b.bn == "train" or rm is None or rv is None:
            dims = [0, *range(2, y.ndim)]
            mean = y.mean(dim=dims, keepdim=True)
            var = (y - mean).pow(2).mean(dim=dims, keepdim=True)
            return mean, 1.0 / torch.sqrt(var + eps), True
        mean, var = rm[channels].reshape(shape), rv[channels].reshape(shape)
        return mean, 1.0 / torch.sqrt(var + eps), False

    def _post_jvp(
        self,
        y: torch.Tensor,
        dy: torch.Tensor,
        post: dict[str, torch.Tensor],
        dpost: dict[str, torch.Tensor],
        channels: torch.Tensor,
    ) -> torch.Tensor:
        """Tangents of the steps for k columns at once.

        ``y`` is the primal ``(m, q, *S)``; ``dy`` the tangents ``(m, k, q or 1, *S)`` (1: the
        same tangent in every channel, broadcast); ``dpost`` the nonzero parameter tangents,
        ``(k, q)`` each. Batch norm is linearised by hand (a few passes over the tangents);
        the other steps run forward mode on the primal tiled k times along the channels
        (they act per channel, so channel (i, o) of the tiled tensor is channel o under
        column i).
        """
        b = self.block
        m, k = int(y.shape[0]), int(dy.shape[1])
        q = int(y.shape[1])
        x = y
        owned = False  # whether dy is a fresh tensor of ours (in-place updates allowed)
        for s in b.steps:
            if s.kind == "identity":
                continue
            rest = tuple(x.shape[2:])
            if s.kind == "flatten":
                x = x.reshape(m, q, -1)
                dy = dy.reshape(m, k, dy.shape[2], -1)
                owned = owned and dy.is_contiguous()
                continue
            if s.kind == "bn":
                mod: nn.modules.batchnorm._BatchNorm = s.module  # type: ignore[assignment]
                mean, inv, batch_stats = self._bn_stats(s.name, x, channels, mod.eps)
                xhat = (x - mean) * inv  # (m, q, *S)
                xh = xhat.unsqueeze(1)  # (m, 1, q, *S)
                inv1 = inv.unsqueeze(1)
                m1: torch.Tensor | None
                m2: torch.Tensor | None
                if batch_stats:
                    # d xhat = (dy - mean(dy) - xhat mean(dy xhat)) / sigma, per channel.
                    dims = [0, *range(3, dy.ndim)]
                    count = m * max(1, math.prod(rest))
                    m1 = dy.mean(dim=dims, keepdim=True)  # (1, k, q|1, 1..)
                    flat_dy = dy.reshape(m, k, dy.shape[2], -1)
                    flat_x = xhat.reshape(m, q, -1)
                    if flat_dy.shape[2] == 1:
                        m2 = torch.einsum("nks,ncs->kc", flat_dy[:, :, 0], flat_x)
                    else:
                        m2 = torch.einsum("nkcs,ncs->kc", flat_dy, flat_x)
                    m2 = (m2 / count).reshape((1, k, q) + (1,) * len(rest))
                else:
                    m1 = m2 = None  # running statistics: a diagonal scaling
                w = post.get(f"{s.name}.weight")
                bias = post.get(f"{s.name}.bias")
                c = inv1 if w is None else inv1 * w.reshape((1, 1, q) + (1,) * len(rest))
                # Two passes over the full (m, k, q, *S) tangent: a scaled copy, a fused update.
                d = ((dy if m1 is None else dy - m1) * c).expand(m, k, q, *rest).contiguous()
                if m2 is not None:
                    d.addcmul_(xh, m2 * c, value=-1.0)
                dw, db = dpost.get(f"{s.name}.weight"), dpost.get(f"{s.name}.bias")
                shape_k = (1, k, q) + (1,) * len(rest)
                if dw is not None:
                    d.addcmul_(xh, dw.reshape(shape_k))
                if db is not None:
                    d.add_(db.reshape(shape_k))
                shape = (1, q) + (1,) * len(rest)
                x = xhat if w is None else xhat * w.reshape(shape)
                x = x if bias is None else x + bias.reshape(shape)
                dy, owned = d, True
                continue
            if type(s.module) is nn.ReLU:  # the tangent through the active units
                mask = (x > 0).unsqueeze(1)
                dy = dy.mul_(mask) if owned else dy * mask
                owned = True
                x = torch.relu(x)
                continue
            pool_fn = _MAX_POOL.get(type(s.module)) if s.module is not None else None
            if pool_fn is not None:  # the tangent at the selected positions
                pool: nn.MaxPool2d = s.module  # type: ignore[assignment]
                x, idx = pool_fn(
                    x,
                    pool.kernel_size,
                    pool.stride,
                    pool.padding,
                    pool.dilation,
                    ceil_mode=pool.ceil_mode,
                    return_indices=True,
                )
                flat = dy.expand(m, k, q, *rest).reshape(m, k, q, -1)
                sel = idx.reshape(m, 1, q, -1).expand(m, k, q, -1)
                dy, owned = torch.gather(flat, 3, sel).reshape(m, k, q, *x.shape[2:]), True
                continue
            fn = s.call if s.kind == "function" else s.module
            assert fn is not None  # set for "function" and "module" steps
            # contiguous: reshape keeps expand's stride-0 view when k = 1 or the map is 1x1,
            # and forward-mode AD refuses a dual whose elements share memory
            tiled = x.unsqueeze(1).expand(m, k, q, *rest).reshape(m, k * q, *rest).contiguous()
            tangent = dy.expand(m, k, q, *rest).reshape(m, k * q, *rest).contiguous()
            if getattr(fn, "inplace", False) and tiled.data_ptr() == x.data_ptr():
                tiled = tiled.clone()
            got = jvp(fn, (tiled,), (tangent,))
            out, dout = got[0], got[1]
            x = out.reshape(m, k, q, *out.shape[2:])[:, 0]
            dy, owned = dout.reshape(m, k, q, *dout.shape[2:]), True
        return dy.expand(m, k, q, *dy.shape[3:])

    def output(self, channels: torch.Tensor) -> torch.Tensor:
        """The block output of ``channels``, ``(m, q, S_out)`` (to check against the capture)."""
        post_names = [n for n in self.block.names if n not in self._lin_params]
        post = {n: self.params[n][channels] for n in post_names}
        with torch.no_grad(), full_precision():
            out = self._post(self.block.y[:, channels], post, channels)
            out = out.reshape(self.m, channels.numel(), -1)
            if self.block.skip is not None:  # a residual unit's identity path
                out = out + self.block.skip[:, channels].reshape(out.shape).to(out.dtype)
        return out

    def jacobians(self, channels: torch.Tensor) -> torch.Tensor:
        """``J_o`` for the given channels: ``(q, m S_out, d)``, columns in the operator's order."""
        with full_precision():
            return self._jacobians(channels)

    def _jacobians(self, channels: torch.Tensor) -> torch.Tensor:
        b = self.block
        q = int(channels.numel())
        post_names = [n for n in b.names if n not in self._lin_params]
        post_vals = tuple(self.params[n][channels] for n in post_names)
        y = b.y[:, channels]
        dtype = y.dtype

        per_column = 8 * y.numel() * 8  # a handful of y-sized tensors per column in flight
        k_max = max(1, self.max_bytes // max(per_column, 1))
        with torch.no_grad():
            out0 = self._post(y, dict(zip(post_names, post_vals)), channels)
        rows = out0.numel() // q
        out_positions = rows // self.m
        J = torch.empty((q, rows, self.num_columns), dtype=dtype, device=y.device)
        col = 0
        post = dict(zip(post_names, post_vals))

        def put(tangent_y: torch.Tensor, dpost: dict[str, torch.Tensor]) -> None:
            nonlocal col
            k = tangent_y.shape[1]
            with torch.no_grad():
                got = self._post_jvp(y, tangent_y, post, dpost, channels)
            got = got.reshape(self.m, k, q, out_positions)
            J[:, :, col : col + k] = got.permute(2, 0, 3, 1).reshape(q, rows, k)
            col += k

        for name in b.names:
            if name == f"{b.lin_name}.weight":
                for j0 in range(0, self.weight_columns, k_max):
                    j1 = min(j0 + k_max, self.weight_columns)
                    put(self.U[:, j0:j1].unsqueeze(2), {})  # (m, k, 1, *S_in): every channel
            elif name == f"{b.lin_name}.bias":
                put(torch.ones((self.m, 1, 1, *y.shape[2:]), dtype=dtype, device=y.device), {})
            else:
                zero = torch.zeros((self.m, 1, 1, *y.shape[2:]), dtype=dtype, device=y.device)
                put(zero, {name: torch.ones((1, q), dtype=dtype, device=y.device)})
        return J
