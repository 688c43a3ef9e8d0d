"""Composition operators (direct sum, scaling, the reporting wrapper) and the members every
operator declares, against dense float64 references built without them."""

from __future__ import annotations

import pytest
import torch
from references import dense_reference

import hessiankit as hk
from hessiankit.errors import OperatorError
from hessiankit.operators import DirectSum, MatrixOperator, Reporting, Scaled
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.operators.dataset import DatasetOperator
from hessiankit.solvers.blockwise import blockwise_spectra


def _sym(n: int, seed: int, psd: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn((n, n), generator=g, dtype=torch.float64)
    return A @ A.T if psd else A + A.T


def test_direct_sum_is_the_block_diagonal_matrix() -> None:
    mats = [_sym(4, 0, psd=True), _sym(3, 1, psd=True), _sym(5, 2, psd=True)]
    op = DirectSum([MatrixOperator(m, is_psd=True) for m in mats])
    ref = torch.block_diag(*mats)
    assert torch.allclose(op.to_dense(), ref, rtol=0, atol=1e-12)
    assert op.is_psd is True and [sl.stop - sl.start for sl in op.parts or ()] == [4, 3, 5]
    # restrict keeps the chosen summands, in order
    assert torch.allclose(
        op.restrict([2, 0]).to_dense(), torch.block_diag(mats[2], mats[0]), atol=1e-12
    )
    assert op.can_restrict and op.describe_part(1) == {}
    # blockwise on its parts: each summand's extremes, from the dense eigendecomposition
    big = [_sym(30, 4), _sym(20, 5), _sym(40, 6)]
    res = blockwise_spectra(DirectSum([MatrixOperator(m) for m in big]), top=2, bottom=1, tol=1e-10)
    for r, m in zip(res, big):
        ev = torch.linalg.eigvalsh(m).numpy()
        assert r.top.eigenvalues == pytest.approx(ev[::-1][:2], rel=1e-9)
        assert r.bottom.eigenvalues[0] == pytest.approx(ev[0], rel=1e-8)


def test_direct_sum_of_input_hessians_over_batches(mlp_tanh) -> None:
    net, x, y = mlp_tanh
    halves = [(x[:3], y[:3]), (x[3:], y[3:])]
    ops = [hk.LocalHessian(hk.capture(net, xb, yb), 2, wrt="input") for xb, yb in halves]
    op = DirectSum(ops)
    ref = torch.block_diag(
        *[
            dense_reference(net, 2, 4, xb, yb, bn="train", wrt="input", kind="gauss-newton")
            for xb, yb in halves
        ]
    )
    assert float((op.to_dense() - ref).abs().max()) <= 1e-10 * float(ref.abs().max())
    assert op.num_samples == 7 and op.batch_dependent is False
    assert op.describe()["num_batches"] == 2 and op.describe()["dimension"] == 7 * 6


def test_direct_sum_refuses_nothing_and_mixed_dtypes() -> None:
    with pytest.raises(OperatorError):
        DirectSum([])
    with pytest.raises(OperatorError):
        DirectSum([MatrixOperator(torch.eye(2)), MatrixOperator(torch.eye(2).double())])


@pytest.mark.parametrize("scale", [2.5, -0.5])
def test_scaled_is_the_scaled_matrix(scale: float) -> None:
    M = _sym(6, 3, psd=True)
    op = Scaled(MatrixOperator(M, is_psd=True), scale)
    assert torch.allclose(op.to_dense(), scale * M, rtol=0, atol=1e-12)
    assert op.is_psd is (True if scale >= 0 else None)
    ev = torch.linalg.eigvalsh(scale * M).numpy()
    r = hk.spectrum(op, top=1, bottom=1, method="lanczos", tol=1e-10)
    assert float(r.top.eigenvalues[0]) == pytest.approx(ev[-1], rel=1e-9)
    with pytest.raises(OperatorError):
        Scaled(op, float("nan"))


def test_reporting_is_the_operator_and_counts_every_product(mlp_tanh) -> None:
    net, x, y = mlp_tanh
    cap = hk.capture(net, x, y)
    inner = AllBlocksLocalHessian(cap)
    seen: list[tuple[int, int | None]] = []
    op = Reporting(inner, lambda done, total: seen.append((done, total)), None)
    ref = torch.block_diag(
        *[
            dense_reference(net, lo, hi, x, y, bn="train", wrt="weights", kind="gauss-newton")
            for lo, hi in [(0, 2), (2, 4), (4, 5)]
        ]
    )
    assert float((op.to_dense(chunk=16) - ref).abs().max()) <= 1e-10 * float(ref.abs().max())
    assert seen[-1][0] == op.num_products == op.dim and len(seen) == -(-op.dim // 16)
    assert op.parts == inner.parts and op.capture is cap and op.num_samples == 7
    assert op.can_restrict and op.describe() == inner.describe()
    # a restricted copy goes on counting
    sub = op.restrict([1])
    sub.matmat(torch.eye(sub.dim, dtype=torch.float64))
    assert seen[-1][0] == op.dim + sub.dim
    assert torch.allclose(sub.op.to_dense(), ref[inner.parts[1], inner.parts[1]], atol=1e-10)


def test_declared_defaults_of_every_operator(conv_bn) -> None:
    net, x, y = conv_bn
    plain = MatrixOperator(torch.eye(3, dtype=torch.float64))
    assert plain.describe() == {} and plain.parts is None and plain.capture is None
    assert plain.num_samples is None and plain.batch_dependent is False
    assert plain.describe_part(2) == {"part": 2} and not plain.can_restrict
    with pytest.raises(OperatorError, match="cannot be restricted"):
        plain.restrict([0])
    # a capture's operator: its batch, and batch norm in train mode makes it batch-dependent
    for bn, dependent in (("train", True), ("eval", False)):
        op = hk.LocalHessian(hk.capture(net, x, y, bn=bn), 1)
        assert op.num_samples == 6 and op.batch_dependent is dependent
    ds = DatasetOperator(net, [(x[:4], y[:4]), (x[4:], y[4:])], lambda c: hk.LocalHessian(c, 1))
    assert ds.num_samples == 6 and ds.batch_dependent is False and ds.parts is None
    ab = DatasetOperator(net, [(x[:4], y[:4]), (x[4:], y[4:])], AllBlocksLocalHessian)
    assert ab.parts is not None and ab.describe_part(0)["batch_size"] == 6
