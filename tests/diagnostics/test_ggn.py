"""GGNOperator against J^T H_L J assembled from dense Jacobians (tests/diagnostics/dense.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hessiankit as hk
from diagnostics.dense import Flat, cnn, ggn, gradient, loss_hessian, mlp
from hessiankit.diagnostics import GGNOperator
from hessiankit.errors import DataError
from references import _mode


def _data(kind: str, c: int, m: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    shape = (m, 5) if kind == "mlp" else (m, 1, 6, 6)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return x, torch.arange(m) % c


@pytest.mark.parametrize(
    ("kind", "c"), [("mlp", 3), ("mlp", 5), pytest.param("cnn", 4, marks=pytest.mark.slow)]
)
def test_whole_model_ggn_equals_dense_jt_hl_j(kind: str, c: int) -> None:
    net = mlp(c, seed=0) if kind == "mlp" else cnn(c, seed=0)
    x, y = _data(kind, c)
    G = GGNOperator(hk.capture(net, x, y), "model").to_dense()
    ref = ggn(net, x, y, "cross-entropy")
    assert torch.allclose(G, ref, rtol=1e-10, atol=1e-13)


def test_mse_ggn_and_gradient() -> None:
    net = mlp(3, seed=2)
    x = torch.randn(10, 5, dtype=torch.float64)
    y = torch.randn(10, 3, dtype=torch.float64)
    op = GGNOperator(hk.capture(net, x, y, loss_fn="mse"))
    assert torch.allclose(op.to_dense(), ggn(net, x, y, "mse"), rtol=1e-10, atol=1e-13)
    assert torch.allclose(op.gradient(), gradient(net, x, y, "mse"), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_block_operator_is_the_diagonal_block_of_the_global_ggn(block: int) -> None:
    net = mlp(4, seed=3)
    x, y = _data("mlp", 4)
    op = GGNOperator(hk.capture(net, x, y), block)
    idx = Flat(net).slice(op.primal_names)
    ref = ggn(net, x, y, "cross-entropy")[idx][:, idx]
    assert torch.allclose(op.to_dense(), ref, rtol=1e-10, atol=1e-13)


def test_network_linear_in_weights_has_hessian_equal_to_ggn() -> None:
    # the residual term sum_j dL/dz_j d^2 z_j / dW^2 vanishes for z = W x + b
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(5, 3)).double()
    x, y = torch.randn(9, 5, dtype=torch.float64), torch.arange(9) % 3
    G = GGNOperator(hk.capture(net, x, y)).to_dense()
    assert torch.allclose(G, loss_hessian(net, x, y, "cross-entropy"), rtol=1e-10, atol=1e-13)


@pytest.mark.slow
def test_batch_norm_with_batch_statistics_couples_the_samples() -> None:
    # with batch statistics J couples the samples; H_L stays block-diagonal over them
    torch.manual_seed(13)
    net = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(10, 5, dtype=torch.float64), torch.arange(10) % 3
    G = GGNOperator(hk.capture(net, x, y, bn="train")).to_dense()
    ref = ggn(_mode(net, "train"), x, y, "cross-entropy", keep_mode=True)
    assert torch.allclose(G, ref, rtol=1e-10, atol=1e-13)
    assert not torch.allclose(G, ggn(net, x, y, "cross-entropy"), rtol=1e-3)  # eval differs


def test_ggn_needs_labels() -> None:
    net = mlp(3, seed=0)
    with pytest.raises(DataError, match="labels"):
        GGNOperator(hk.capture(net, torch.randn(4, 5, dtype=torch.float64)))
