"""Independent dense references, built with torch.func on plainly written functions.

Nothing here uses hessiankit's tracing, capture or product engines: blocks are given as index
ranges of an ``nn.Sequential``, activations come from running the modules directly, gradients
from ``torch.autograd.grad`` on the full network, Hessians from ``torch.func.jvp`` of ``torch.func.grad`` and
Jacobians from ``torch.func.jvp``, one column at a time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

# torch.func.hessian / jacrev vmap over the basis vectors, and in torch 2.13 the vmap batching
# rule of batch norm's backward in training mode gives wrong second derivatives (checked
# against finite differences and against plain autograd double backward). The references
# therefore build every matrix one basis vector at a time, with no vmap.


def jacobian(F, v0: torch.Tensor) -> torch.Tensor:
    """d F / d v as a (numel(F), numel(v)) matrix, by one forward-mode jvp per column."""
    cols = []
    for i in range(v0.numel()):
        e = torch.zeros_like(v0)
        e.view(-1)[i] = 1
        cols.append(jvp(F, (v0,), (e,))[1].reshape(-1))
    return torch.stack(cols, dim=1)


def hessian(phi, v0: torch.Tensor) -> torch.Tensor:
    """d^2 phi / d v^2 by one forward-over-reverse product per column (no vmap)."""
    return jacobian(grad(phi), v0)


@dataclass
class RefPoint:
    net: nn.Sequential  # a private copy in the analysed mode
    lo: int  # block = net[lo:hi]
    hi: int
    x: torch.Tensor
    y: torch.Tensor
    loss: str


def _mode(net: nn.Module, bn: str) -> nn.Module:
    net = copy.deepcopy(net)
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(bn == "train")
            # Batch statistics without touching buffers (torch.func forbids the update).
            m.track_running_stats = bn == "eval"
    return net


def _loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        return 0.5 * (out - y).pow(2).sum() / out.shape[0]
    return nn.functional.cross_entropy(out, y)


def _pieces(
    net: nn.Sequential, lo: int, hi: int
) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    return net[:lo], net[lo:hi], net[hi:]


def dense_reference(
    net: nn.Sequential,
    lo: int,
    hi: int,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bn: str,
    wrt: str,
    kind: str,
    eta: float = 1.0,
    loss: str = "cross-entropy",
) -> torch.Tensor:
    """Dense float64 Hessian of the given kind for block ``net[lo:hi]``.

    Conventions (as documented by hessiankit): mean over the batch; input Hessians per sample
    (times m); target ``z_b - eta * m * dL/dz_b``.
    """
    net = _mode(net, bn)
    below, block, above = _pieces(net, lo, hi)
    m = x.shape[0]
    with torch.no_grad():
        z_in = below(x)
    names = [n for n, _ in block.named_parameters()]
    params = {n: p.detach() for n, p in block.named_parameters()}
    sizes = [params[n].numel() for n in names]
    shapes = [params[n].shape for n in names]

    def unflat(v: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.reshape(s) for n, t, s in zip(names, v.split(sizes), shapes)}

    if wrt == "weights":
        v0 = torch.cat([params[n].reshape(-1) for n in names])

        def F(v: torch.Tensor) -> torch.Tensor:
            return functional_call(block, unflat(v), (z_in,))

        c_local, c_loss = 1.0 / m, 1.0
    else:
        v0 = z_in.reshape(-1).clone()

        def F(v: torch.Tensor) -> torch.Tensor:
            return functional_call(block, params, (v.reshape(z_in.shape),))

        c_local, c_loss = 1.0, float(m)

    if kind == "gauss-newton":
        J = jacobian(F, v0)
        return (c_local * J.T @ J).detach()
    if kind == "exact":
        z_out_leaf = F(v0).detach().requires_grad_(True)
        L = _loss(above(z_out_leaf), y, loss)
        (g,) = torch.autograd.grad(L, z_out_leaf)
        target = z_out_leaf.detach() - eta * m * g

        def phi(v: torch.Tensor) -> torch.Tensor:
            return c_local * 0.5 * (target - F(v)).pow(2).sum()

        return hessian(phi, v0).detach()

    def psi(v: torch.Tensor) -> torch.Tensor:
        return c_loss * _loss(above(F(v)), y, loss)

    return hessian(psi, v0).detach()


def block_gradients(
    net: nn.Sequential,
    cuts: list[int],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bn: str,
    loss: str = "cross-entropy",
) -> list[torch.Tensor]:
    """dL/dz_b at the block outputs ``net[:cut]`` for each cut, by plain autograd."""
    net = _mode(net, bn)
    zs = []
    z = x
    start = 0
    for cut in cuts:
        z = net[start:cut](z)
        z.retain_grad()
        zs.append(z)
        start = cut
    L = _loss(net[start:](z), y, loss)
    return list(torch.autograd.grad(L, zs))
