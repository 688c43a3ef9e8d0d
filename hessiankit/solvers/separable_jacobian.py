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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jvp, vmap

from hessiankit._precision import full_precision
from hessiankit.solvers.separable_structure import FactoredBlock

__all__ = ["FactoredJacobian"]


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
        b = self.block
        for s in b.steps:
            if s.kind == "identity":
                continue
            if s.kind == "function":
                assert s.call is not None  # set for every "function" step
                y = s.call(y)
            elif s.kind == "bn":
                mod: nn.modules.batchnorm._BatchNorm = s.module  # type: ignore[assignment]
                rm = b.buffers.get(f"{s.name}.running_mean")
                rv = b.buffers.get(f"{s.name}.running_var")
                batch_stats = b.bn == "train" or rm is None or rv is None
                y = F.batch_norm(
                    y,
                    None if batch_stats or rm is None else rm[channels],
                    None if batch_stats or rv is None else rv[channels],
                    post.get(f"{s.name}.weight"),
                    post.get(f"{s.name}.bias"),
                    batch_stats,
                    0.0,
                    mod.eps,
                )
            else:
                assert s.module is not None  # set for every "module" step
                y = s.module(y.clone() if getattr(s.module, "inplace", False) else y)
        return y

    def output(self, channels: torch.Tensor) -> torch.Tensor:
        """The block output of ``channels``, ``(m, q, S_out)`` (to check against the capture)."""
        post_names = [n for n in self.block.names if n not in self._lin_params]
        post = {n: self.params[n][channels] for n in post_names}
        with torch.no_grad(), full_precision():
            out = self._post(self.block.y[:, channels], post, channels)
        return out.reshape(self.m, channels.numel(), -1)

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

        def post_fn(yy: torch.Tensor, *pv: torch.Tensor) -> torch.Tensor:
            return self._post(yy, dict(zip(post_names, pv)), channels)

        def column(dy: torch.Tensor, *dps: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = jvp(post_fn, (y, *post_vals), (dy, *dps))[1]
            return out

        batched = vmap(column)
        per_column = 8 * y.numel() * 8  # a handful of y-sized tensors per column in flight
        k_max = max(1, self.max_bytes // max(per_column, 1))
        with torch.no_grad():
            out0 = post_fn(y, *post_vals)
        rows = out0.numel() // q
        out_positions = rows // self.m
        J = torch.empty((q, rows, self.num_columns), dtype=dtype, device=y.device)
        col = 0

        def put(tangent_y: torch.Tensor, tangent_p: Sequence[torch.Tensor]) -> None:
            nonlocal col
            k = tangent_y.shape[0]
            got = batched(tangent_y, *tangent_p).reshape(k, self.m, q, out_positions)
            J[:, :, col : col + k] = got.permute(2, 1, 3, 0).reshape(q, rows, k)
            col += k

        def zeros_p(k: int) -> list[torch.Tensor]:
            return [torch.zeros((k, *v.shape), dtype=dtype, device=y.device) for v in post_vals]

        for name in b.names:
            if name == f"{b.lin_name}.weight":
                for j0 in range(0, self.weight_columns, k_max):
                    j1 = min(j0 + k_max, self.weight_columns)
                    u = self.U[:, j0:j1].movedim(1, 0).unsqueeze(2)  # (k, m, 1, *S_in)
                    put(u.expand(j1 - j0, self.m, q, *y.shape[2:]), zeros_p(j1 - j0))
            elif name == f"{b.lin_name}.bias":
                put(torch.ones((1, *y.shape), dtype=dtype, device=y.device), zeros_p(1))
            else:
                i = post_names.index(name)
                dps = zeros_p(1)
                dps[i] = torch.ones_like(dps[i])
                put(torch.zeros((1, *y.shape), dtype=dtype, device=y.device), dps)
        return J
