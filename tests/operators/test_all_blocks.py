"""Every block at once: the block-diagonal operator against independent dense references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import dense_reference

import hessiankit as hk
from hessiankit.errors import OperatorError
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.solvers.blockwise import blockwise_spectra

# fixture -> reference slices lo:hi of each block, batch-norm modes
SLICES = {
    "mlp_tanh": ([(0, 2), (2, 4), (4, 5)], ["eval"]),
    "conv_bn": ([(0, 4), (4, 5)], ["eval", "train"]),
    "resnet_bn": ([(0, 3), (3, 6), (6, 7)], ["eval", "train"]),
}
# Convolution and ResNet references are slow (see test_against_dense.py).
PARAMS = [
    pytest.param(fx, bn, id=f"{fx}-{bn}", marks=[pytest.mark.slow] if fx != "mlp_tanh" else [])
    for fx, (_, modes) in SLICES.items()
    for bn in modes
]


@pytest.mark.parametrize("fixture,bn", PARAMS)
@pytest.mark.parametrize("kind", ["gauss-newton", "exact"])
@pytest.mark.parametrize("wrt", ["weights", "input"])
def test_all_blocks_is_the_block_diagonal_of_the_references(request, fixture, bn, kind, wrt):
    net, x, y = request.getfixturevalue(fixture)
    cap = hk.capture(net, x, y, bn=bn)
    op = AllBlocksLocalHessian(cap, wrt=wrt, kind=kind, eta=0.7)
    refs = [
        dense_reference(net, lo, hi, x, y, bn=bn, wrt=wrt, kind=kind, eta=0.7)
        for lo, hi in SLICES[fixture][0]
    ]
    ref = torch.block_diag(*refs)
    H = op.to_dense()
    assert [sl.stop - sl.start for sl in op.parts] == [r.shape[0] for r in refs]
    assert float((H - ref).abs().max()) <= 1e-10 * float(ref.abs().max())


@pytest.mark.slow  # the ResNet dense references (see conftest)
def test_blockwise_spectra_match_each_blocks_dense_eigenvalues(resnet_bn):
    net, x, y = resnet_bn
    cap = hk.capture(net, x, y, bn="train")
    op = AllBlocksLocalHessian(cap)
    results = blockwise_spectra(op, top=3, bottom=1, tol=1e-10, seed=0)
    for r, (lo, hi) in zip(results, SLICES["resnet_bn"][0]):
        ev = np.linalg.eigvalsh(
            dense_reference(
                net, lo, hi, x, y, bn="train", wrt="weights", kind="gauss-newton"
            ).numpy()
        )
        scale = np.abs(ev).max()
        assert r.converged and r.operator["wrt"] == "weights"
        np.testing.assert_allclose(r.top.eigenvalues, ev[::-1][:3], rtol=1e-8, atol=1e-12 * scale)
        nonzero = ev[ev > r.condition.threshold]
        np.testing.assert_allclose(r.bottom.eigenvalues, nonzero[:1], rtol=1e-7, atol=1e-12 * scale)
    # One shared product per step: the operator paid for the widest block only.
    assert op.num_products <= sum(r.num_products for r in results)


def test_loss_kind_and_empty_choices_are_refused(mlp_tanh):
    net, x, y = mlp_tanh
    cap = hk.capture(net, x, y)
    with pytest.raises(OperatorError, match="LossHessian"):
        AllBlocksLocalHessian(cap, kind="loss")  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="parts"):
        blockwise_spectra(AllBlocksLocalHessian(cap), parts=[slice(0, 3), slice(2, 5)])


@pytest.mark.slow  # the convolution dense references (see conftest)
@pytest.mark.parametrize("prefer", ["batched", "loop"])
def test_batched_and_looped_products_agree(conv_bn, prefer):
    # Batched (vmap) products are checked once against an unbatched column; batch norm in
    # train mode is the case where torch's batching rules are wrong.
    net, x, y = conv_bn
    cap = hk.capture(net, x, y, bn="train")
    ref = torch.block_diag(
        *[
            dense_reference(net, lo, hi, x, y, bn="train", wrt="weights", kind="exact", eta=0.7)
            for lo, hi in SLICES["conv_bn"][0]
        ]
    )
    op = AllBlocksLocalHessian(cap, kind="exact", eta=0.7)
    op._engine._batched.prefer = prefer
    H = op.to_dense(chunk=8)
    assert float((H - ref).abs().max()) <= 1e-10 * float(ref.abs().max())
