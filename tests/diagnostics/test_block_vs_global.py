"""Local H_W against the global GGN's diagonal block, from dense Jacobians."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hessiankit as hk
from diagnostics.dense import Flat, cnn, ggn, mlp
from hessiankit.diagnostics import compare_blocks
from references import dense_reference


def _blocks(net: nn.Sequential, kind: str) -> list[tuple[int, int]]:
    return [(0, 2), (2, 4), (4, 5)] if kind == "mlp" else [(0, 4), (4, 5)]


@pytest.mark.parametrize("kind", ["mlp", pytest.param("cnn", marks=pytest.mark.slow)])
def test_against_dense_local_and_ggn_blocks(kind: str) -> None:
    torch.manual_seed(9)
    if kind == "mlp":
        net, x = mlp(4, seed=9), torch.randn(16, 5, dtype=torch.float64)
    else:
        net, x = cnn(4, seed=9), torch.randn(16, 1, 6, 6, dtype=torch.float64)
    y = torch.arange(16) % 4
    rows = compare_blocks(hk.capture(net, x, y), top=3, method="dense", seed=0)
    G = ggn(net, x, y, "cross-entropy")
    flat = Flat(net)
    for r, (lo, hi) in zip(rows, _blocks(net, kind), strict=True):
        names = [n for n, _ in net.named_parameters() if int(n.split(".")[0]) in range(lo, hi)]
        idx = flat.slice(names)
        Gb = G[idx][:, idx]
        Hl = dense_reference(net, lo, hi, x, y, bn="eval", wrt="weights", kind="gauss-newton")
        assert r.dense and r.dimension == idx.numel()
        assert abs(r.trace_local - float(Hl.trace())) < 1e-10 * float(Hl.trace())
        assert abs(r.trace_global - float(Gb.trace())) < 1e-10 * float(Gb.trace())
        rel = float(torch.linalg.matrix_norm(Hl - Gb) / torch.linalg.matrix_norm(Gb))
        assert r.relative_frobenius is not None and abs(r.relative_frobenius - rel) < 1e-8
        c = float((Hl * Gb).sum() / (Hl * Hl).sum())
        srel = float(torch.linalg.matrix_norm(c * Hl - Gb) / torch.linalg.matrix_norm(Gb))
        assert r.scaled_relative_frobenius is not None
        assert abs(r.scaled_relative_frobenius - srel) < 1e-8
        assert r.scaled_relative_frobenius <= r.relative_frobenius + 1e-12
        top_l = torch.linalg.eigvalsh(Hl).flip(0)[:3].numpy()
        top_g = torch.linalg.eigvalsh(Gb).flip(0)[:3].numpy()
        assert abs(r.local.top.eigenvalues - top_l).max() < 1e-9 * top_l[0]
        assert abs(r.global_block.top.eigenvalues - top_g).max() < 1e-9 * top_g[0]
    # last block, cross-entropy: M_B = blockdiag(diag p - p p^T)/m <= I/(2m), so G_BB <= H_W/2
    last = rows[-1]
    lo, hi = _blocks(net, kind)[-1]
    idx = flat.slice([n for n, _ in net.named_parameters() if n.startswith(f"{lo}.")])
    Hl = dense_reference(net, lo, hi, x, y, bn="eval", wrt="weights", kind="gauss-newton")
    assert float(torch.linalg.eigvalsh(Hl / 2 - G[idx][:, idx])[0]) > -1e-12
    assert last.top_ratio >= 2.0 - 1e-9 and last.trace_ratio >= 2.0 - 1e-9


def test_last_block_under_squared_error_is_the_local_hessian() -> None:
    torch.manual_seed(10)
    net = mlp(3, seed=10)
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    rows = compare_blocks(hk.capture(net, x, y, loss_fn="mse"), top=2, seed=0)
    assert rows[-1].relative_frobenius is not None and rows[-1].relative_frobenius < 1e-12
    assert abs(rows[-1].trace_ratio - 1.0) < 1e-12
    assert rows[0].relative_frobenius is not None and rows[0].relative_frobenius > 1e-3


def test_hutch_plus_plus_route_is_exact_with_a_full_sketch() -> None:
    # with at least 3n products Hutch++'s sketch spans the whole space: the trace is exact
    torch.manual_seed(11)
    net = mlp(3, seed=11)
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.arange(12) % 3
    cap = hk.capture(net, x, y)
    (dense,) = compare_blocks(cap, [3], top=2, seed=0)
    (est,) = compare_blocks(cap, [3], top=2, max_dense=0, trace_products=3 * 27 + 3, seed=0)
    assert not est.dense and est.relative_frobenius is None
    assert abs(est.trace_ratio - dense.trace_ratio) < 1e-8 * dense.trace_ratio
