"""Data-set operators: a loader sweep with a ragged last batch equals one batch of all samples."""

from __future__ import annotations

import pytest
import torch
from references import dense_reference
from torch.utils.data import DataLoader, TensorDataset

import hessiankit as hk
from hessiankit.errors import DataError, OperatorError
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.operators.dataset import DatasetOperator


def _more_data(
    x: torch.Tensor, y: torch.Tensor, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn((n, *x.shape[1:]), generator=g, dtype=x.dtype)
    ys = torch.randint(0, 3, (n,), generator=g)
    return xs, ys


# One case in the quick run; the others use the same convolution dense reference (see conftest).
@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,keep_graphs",
    [
        (kind, keep)
        if (kind, keep) == ("gauss-newton", False)
        else pytest.param(kind, keep, marks=pytest.mark.slow)
        for kind in ("gauss-newton", "exact", "loss")
        for keep in (True, False)
    ],
)
def test_loader_sweep_equals_the_whole_batch_reference(conv_bn, kind, keep_graphs):
    net, x, y = conv_bn
    X, Y = _more_data(x, y, 11, seed=3)
    loader = DataLoader(TensorDataset(X, Y), batch_size=4)  # 4 + 4 + 3
    op = DatasetOperator(
        net,
        loader,
        lambda cap: hk.hessian_operator(cap, 1, kind=kind, eta=0.5),
        keep_graphs=keep_graphs,
    )
    assert op.batch_sizes == (4, 4, 3) and op.num_samples == 11
    ref = dense_reference(net, 0, 4, X, Y, bn="eval", wrt="weights", kind=kind, eta=0.5)
    H = op.to_dense()
    assert float((H - ref).abs().max()) <= 1e-10 * float(ref.abs().max())


def test_all_blocks_over_a_loader(mlp_tanh):
    net, x, y = mlp_tanh
    X, Y = _more_data(x, y, 9, seed=4)
    data = [(X[:5], Y[:5]), (X[5:], Y[5:])]
    op = DatasetOperator(net, data, AllBlocksLocalHessian)
    ref = torch.block_diag(
        *[
            dense_reference(net, lo, hi, X, Y, bn="eval", wrt="weights", kind="gauss-newton")
            for lo, hi in [(0, 2), (2, 4), (4, 5)]
        ]
    )
    assert len(op.parts) == 3 and op.describe_part(1)["batch_size"] == 9
    assert float((op.to_dense() - ref).abs().max()) <= 1e-10 * float(ref.abs().max())


@pytest.mark.slow
def test_batch_norm_train_over_several_batches_is_refused(conv_bn):
    net, x, y = conv_bn
    with pytest.raises(DataError, match="depend on how the data was split"):
        DatasetOperator(
            net, [(x[:3], y[:3]), (x[3:], y[3:])], lambda c: hk.LocalHessian(c, 1), bn="train"
        )
    # One batch is fine: it is the ordinary train-mode operator.
    one = DatasetOperator(net, [(x, y)], lambda c: hk.LocalHessian(c, 1), bn="train")
    ref = dense_reference(net, 0, 4, x, y, bn="train", wrt="weights", kind="gauss-newton")
    assert float((one.to_dense() - ref).abs().max()) <= 1e-10 * float(ref.abs().max())


def test_bad_loaders_are_refused(mlp_tanh):
    net, x, y = mlp_tanh
    with pytest.raises(DataError, match="no batch"):
        DatasetOperator(net, [], lambda c: hk.LocalHessian(c, 1))
    with pytest.raises(DataError, match="a batch must be"):
        DatasetOperator(net, [{"x": x}], lambda c: hk.LocalHessian(c, 1))
    with pytest.raises(OperatorError, match="one dimension"):
        DatasetOperator(net, [x[:4], x[4:]], lambda c: hk.LocalHessian(c, 1, wrt="input"))


def test_recorded_captures_give_the_same_operator_as_raw_batches(conv_bn):
    net, x, y = conv_bn
    X, Y = _more_data(x, y, 9, seed=6)
    batches = [(X[:4], Y[:4]), (X[4:], Y[4:])]
    split = hk.split_blocks(net)
    caps = [hk.capture(split, xb, yb, bn="eval") for xb, yb in batches]

    def make(cap):
        return hk.hessian_operator(cap, 2, kind="exact")

    from_caps = DatasetOperator(split, caps, make)
    assert from_caps.batch_sizes == (4, 5)
    ref = DatasetOperator(split, batches, make).to_dense()
    assert torch.equal(from_caps.to_dense(), ref)
    with pytest.raises(DataError, match="same batch-norm mode"):
        DatasetOperator(split, caps, make, bn="train")
