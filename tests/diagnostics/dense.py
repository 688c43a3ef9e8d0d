"""Dense float64 references for the diagnostics, built without hessiankit.

Every matrix comes from :mod:`references` (``torch.func`` jvp / grad, one column at a time, no
vmap) on an ``nn.Sequential`` called directly: the full-model loss Hessian, the generalized
Gauss-Newton ``J^T H_L J`` assembled from the dense Jacobian of the outputs and the dense
Hessian of the loss w.r.t. the outputs, gradients and class-mean gradients by plain autograd.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from references import hessian, jacobian


def loss_of(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        return 0.5 * (out - y).pow(2).sum() / out.shape[0]
    return nn.functional.cross_entropy(out, y)


class Flat:
    """The network as a function of one flat parameter vector (``named_parameters`` order)."""

    def __init__(self, net: nn.Module, *, keep_mode: bool = False) -> None:
        self.net = net if keep_mode else net.eval()
        self.names = [n for n, _ in net.named_parameters()]
        ps = dict(net.named_parameters())
        self.shapes = [ps[n].shape for n in self.names]
        self.sizes = [ps[n].numel() for n in self.names]
        self.v0 = torch.cat([ps[n].detach().reshape(-1) for n in self.names])

    def slice(self, names: list[str]) -> torch.Tensor:
        """Indices of the given parameters in the flat vector (in the given order)."""
        starts = {}
        off = 0
        for n, s in zip(self.names, self.sizes):
            starts[n] = (off, s)
            off += s
        return torch.cat([torch.arange(starts[n][0], starts[n][0] + starts[n][1]) for n in names])

    def out(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ps = {n: t.reshape(s) for n, t, s in zip(self.names, v.split(self.sizes), self.shapes)}
        return functional_call(self.net, ps, (x,))


def loss_hessian(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    f = Flat(net)
    return hessian(lambda v: loss_of(f.out(v, x), y, loss), f.v0).detach()


def ggn(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, *, keep_mode: bool = False
) -> torch.Tensor:
    """``J^T H_L J`` from dense matrices: J = d vec(out) / d W, H_L = d^2 L / d vec(out)^2.

    ``keep_mode``: run the network in the modes it is in (batch norm with batch statistics
    after ``references._mode(net, "train")``), else in eval mode.
    """
    f = Flat(net, keep_mode=keep_mode)
    J = jacobian(lambda v: f.out(v, x), f.v0)
    z0 = f.out(f.v0, x).detach()
    HL = hessian(lambda z: loss_of(z.reshape(z0.shape), y, loss), z0.reshape(-1))
    return (J.T @ HL @ J).detach()


def gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    L = loss_of(net.eval()(x), y, loss)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(L, list(net.parameters()))])


def class_means(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Columns: per class (ascending), the gradient of the mean loss over that class's samples."""
    cols = []
    for c in torch.unique(y).tolist():
        idx = y == c
        L = nn.functional.cross_entropy(net.eval()(x[idx]), y[idx])
        g = torch.autograd.grad(L, list(net.parameters()))
        cols.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(cols, dim=1).detach()


def mlp(c: int, *, seed: int, width: int = 8, d: int = 5) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, c)
    ).double()


def cnn(c: int, *, seed: int) -> nn.Sequential:
    """conv3x3(1->2)-tanh-avgpool2 on 6x6, then a linear classifier: 2 blocks, 77 weights."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(18, c),
    ).double()


def top_eigh(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Top-k eigenvalues (descending), their eigenvectors, and the relative gap after the k-th."""
    w, V = torch.linalg.eigh(A)
    w, V = w.flip(0), V.flip(1)
    gap = float((w[k - 1] - w[k]) / w[0].abs()) if k < w.numel() else 1.0
    return w[:k], V[:, :k], gap
