"""Weight initialisations shared by the model builders: He (Kaiming) normal or orthogonal.

``"he"``: conv kernels ``N(0, 2 / fan_out)`` (Kaiming-normal, fan-out, ReLU gain), linear
weights ``N(0, 0.01^2)``, biases 0 (torchvision's VGG recipe).

``"orthogonal"`` (Saxe et al. 2014): each weight reshaped to ``(out, in * prod(kernel))`` is
``gain * Q`` with ``Q`` orthonormal rows when ``out <= in * prod(kernel)`` (``Q Q^T = I``) and
orthonormal columns otherwise (``Q^T Q = I``); ``gain = sqrt(2)`` (the ReLU gain of
``torch.nn.init.calculate_gain``) for convs, 1 for linear layers; biases 0. ``Q`` comes from
the QR factorisation of a Gaussian matrix, with the signs of ``R``'s diagonal moved into ``Q``
(so that ``Q`` is Haar-distributed), computed in float64 and written into the parameter in
its own dtype: a float64 model has ``Q Q^T = I`` to rounding.

Batch norm: weight 1, bias 0 under both.

Example:
    >>> lin = nn.Linear(6, 3).double()
    >>> init_weights(lin, "orthogonal", seed=0)
    >>> bool(torch.allclose(lin.weight @ lin.weight.T, torch.eye(3, dtype=torch.float64)))
    True
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import torch
from torch import nn

__all__ = ["INITS", "Init", "init_weights", "initialised", "orthogonal_matrix"]

Init = Literal["he", "orthogonal"]
_M = TypeVar("_M", bound=nn.Module)
INITS: tuple[str, ...] = ("he", "orthogonal")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Gain of the orthogonal init for ReLU convs (``calculate_gain("relu")``).
RELU_GAIN = math.sqrt(2.0)


def check_init(init: str) -> None:
    """Raises ValueError for an unknown ``init=``."""
    if init not in INITS:
        raise ValueError(f"unknown init={init!r}; use one of {', '.join(INITS)}")


def orthogonal_matrix(rows: int, cols: int, generator: torch.Generator | None) -> torch.Tensor:
    """A Haar-random ``rows x cols`` float64 matrix with orthonormal rows (rows <= cols) or
    orthonormal columns (rows > cols)."""
    big, small = max(rows, cols), min(rows, cols)
    g = torch.randn(big, small, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    d = torch.diagonal(r)
    q = q * torch.where(d < 0, -1.0, 1.0).to(q.dtype)  # Haar: the signs of R's diagonal into Q
    out: torch.Tensor = q.T.contiguous() if rows < cols else q
    return out


def init_weights(net: nn.Module, init: str = "he", seed: int | None = None) -> None:
    """Initialise every conv, linear and batch-norm module of ``net`` in place.

    Modules are visited in ``net.modules()`` order and draw from one generator seeded with
    ``seed`` (``None``: torch's global generator), so a seed fixes the whole network.

    Raises:
        ValueError: an unknown ``init``.
    """
    check_init(init)
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _CONVS):
                if init == "he":
                    fan_out = m.out_channels * math.prod(m.kernel_size)
                    m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                else:
                    _orthogonal_(m.weight, RELU_GAIN, gen)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, _BNS):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            elif isinstance(m, nn.Linear):
                if init == "he":
                    m.weight.normal_(0.0, 0.01, generator=gen)
                else:
                    _orthogonal_(m.weight, 1.0, gen)
                if m.bias is not None:
                    m.bias.zero_()


def _orthogonal_(w: torch.Tensor, gain: float, gen: torch.Generator | None) -> None:
    rows = int(w.shape[0])
    cols = w.numel() // rows
    q = orthogonal_matrix(rows, cols, gen)
    w.copy_((gain * q).reshape(w.shape).to(w.dtype))


def initialised(net: _M, init: str, seed: int | None, dtype: torch.dtype | None) -> _M:
    """``net`` initialised by ``init`` and cast to ``dtype``, in the builders' order: He draws in
    float32 and then converts (the original draws, unchanged by ``dtype``); orthogonal is drawn
    after the cast, so a float64 model is orthogonal to float64 rounding."""
    if init == "he":
        init_weights(net, init, seed)
    if dtype is not None:
        net.to(dtype)  # in place: a module keeps its identity
    if init != "he":
        init_weights(net, init, seed)
    return net
