"""The library pipeline (prepare + run_blocks) without the CLI, against dense float64
references built independently (tests/references.py), and its fast paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from references import dense_reference
from torch import nn

import hessiankit as hk
from hessiankit.errors import OperatorError
from hessiankit.pipeline import (
    DataOptions,
    ModelSource,
    OperatorOptions,
    Progress,
    SolverOptions,
    block_operators,
    prepare,
    run_blocks,
)
from hessiankit.pipeline.run import BlockResult

# mlp_tanh's blocks as index ranges of its nn.Sequential
RANGES = {1: (0, 2), 2: (2, 4), 3: (4, 5)}


def _agrees(res: BlockResult, H: torch.Tensor, top: int, bottom: int, rtol: float = 1e-9) -> None:
    ev = torch.linalg.eigvalsh(H).numpy()
    scale = float(np.abs(ev).max())
    s = res.spectrum
    assert s.dimension == H.shape[0] and s.converged and s.condition.converged
    np.testing.assert_allclose(s.top.eigenvalues, ev[::-1][:top], rtol=0, atol=rtol * scale)
    nonzero = ev[ev > 1e-9 * scale]
    np.testing.assert_allclose(s.bottom.eigenvalues, nonzero[:bottom], rtol=0, atol=rtol * scale)
    assert s.condition.kappa == pytest.approx(scale / nonzero[0], rel=1e-6)


@pytest.fixture
def files(tmp_path: Path, mlp_tanh) -> tuple[Path, nn.Sequential, torch.Tensor, torch.Tensor]:
    net, x, y = mlp_tanh
    torch.save(net, tmp_path / "mlp.pt")
    torch.save({"x": x[:6], "y": y[:6]}, tmp_path / "d.pt")
    return tmp_path, net, x[:6], y[:6]


def test_prepare_and_run_every_block_over_two_batches(files) -> None:
    tmp, net, x, y = files
    prep = prepare(
        ModelSource(path=str(tmp / "mlp.pt"), trust_pickle=False),
        DataOptions(data=str(tmp / "d.pt"), batch_size=3, num_batches=2),
        OperatorOptions(bn="eval"),
    )
    assert prep.notes == () and [c.batch_size for c in prep.captures] == [3, 3]
    rows = run_blocks(prep, "all", SolverOptions(top=3, bottom=2))
    assert [r.index for r in rows] == [1, 2, 3]
    for r in rows:
        lo, hi = RANGES[r.index]
        H = sum(
            dense_reference(net, lo, hi, x[i : i + 3], y[i : i + 3], bn="eval", wrt="weights",
                            kind="gauss-newton")
            for i in (0, 3)
        ) / 2  # fmt: skip
        _agrees(r, H, 3, 2)


@pytest.mark.parametrize(("wrt", "kind"), [("input", "exact"), ("weights", "loss")])
def test_prepare_input_direct_sum_and_loss_hessian(files, wrt: str, kind: str) -> None:
    tmp, net, x, y = files
    prep = prepare(
        ModelSource(path=str(tmp / "mlp.pt")),
        DataOptions(data=str(tmp / "d.pt"), batch_size=3, num_batches=2 if wrt == "input" else 1),
        OperatorOptions(wrt=wrt, kind=kind, eta=0.5),  # type: ignore[arg-type]
    )
    [r] = run_blocks(prep, [2], SolverOptions(top=2, bottom=1, method="lanczos", tol=1e-10))
    lo, hi = RANGES[2]
    if wrt == "input":
        H = torch.block_diag(
            *[
                dense_reference(net, lo, hi, x[i : i + 3], y[i : i + 3], bn="train", wrt="input",
                                kind="exact", eta=0.5)
                for i in (0, 3)
            ]
        )  # fmt: skip
    else:
        H = dense_reference(net, lo, hi, x[:3], y[:3], bn="train", wrt="weights", kind="loss")
    ev = torch.linalg.eigvalsh(H).numpy()
    scale = float(np.abs(ev).max())
    s = r.spectrum
    assert s.method == "lanczos" and s.converged
    np.testing.assert_allclose(s.top.eigenvalues, ev[::-1][:2], rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(s.bottom.eigenvalues, ev[:1], rtol=0, atol=1e-8 * scale)


def test_all_blocks_from_one_product_equal_the_dense_references(mlp_tanh) -> None:
    net, x, y = mlp_tanh
    ops = block_operators(hk.capture(net, x, y), kind="exact", eta=0.5)
    seen: list[str] = []

    class Log(Progress):
        def block_started(self, label: str, dim: int, total: int | None) -> None:
            seen.append(label)

    opts = SolverOptions(top=2, bottom=1, method="lanczos", tol=1e-10, all_blocks="always")
    rows = run_blocks(ops, [1, 2], opts, progress=Log())
    assert seen == ["blocks 1, 2 together"]
    for r in rows:
        lo, hi = RANGES[r.index]
        H = dense_reference(net, lo, hi, x, y, bn="train", wrt="weights", kind="exact", eta=0.5)
        ev = torch.linalg.eigvalsh(H).numpy()
        scale = float(np.abs(ev).max())
        np.testing.assert_allclose(r.spectrum.top.eigenvalues, ev[::-1][:2], atol=1e-8 * scale)
        np.testing.assert_allclose(r.spectrum.bottom.eigenvalues, ev[:1], atol=1e-8 * scale)
        assert any("one product of the summed back-matching losses" in n for n in r.notes)
    # one block at a time gives the same numbers
    alone = run_blocks(ops, [1, 2], SolverOptions(top=2, bottom=1, method="lanczos", tol=1e-10))
    for a, b in zip(rows, alone):
        np.testing.assert_allclose(a.spectrum.top.eigenvalues, b.spectrum.top.eigenvalues,
                                   rtol=1e-8)  # fmt: skip


def test_clip_and_unknown_blocks(mlp_tanh) -> None:
    net, x, y = mlp_tanh
    ops = block_operators(hk.capture(net, x, y))
    with pytest.raises(OperatorError, match="at most 15"):
        run_blocks(ops, [3], SolverOptions(top=16))
    [r] = run_blocks(ops, [3], SolverOptions(top=16, clip=True))
    H = dense_reference(net, 4, 5, x, y, bn="train", wrt="weights", kind="gauss-newton")
    _agrees(r, H, 15, 1)
    with pytest.raises(hk.errors.BlockError):
        run_blocks(ops, [9], SolverOptions())


def _trained_free_mlp() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 3)
    ).double()
    x = torch.randn(64, 10, dtype=torch.float64)
    return net, x, torch.randint(0, 3, (64,))


@pytest.mark.slow  # eight Lanczos runs and a dense loss Hessian
def test_loss_top_starts_from_the_gradient() -> None:
    # A fixed network where the gradient start measurably helps: 16 products against 18-20
    # from random starts (seeds 0..3), the same top eigenvalue as dense eigh.
    net, x, y = _trained_free_mlp()
    cap = hk.capture(net, x, y)
    ops = block_operators(cap, kind="loss")
    lam = float(torch.linalg.eigvalsh(hk.LossHessian(cap, "model").to_dense())[-1])
    for seed in range(4):
        runs = {}
        for start in (True, False):
            opts = SolverOptions(top=1, bottom=0, method="lanczos", tol=1e-8, seed=seed,
                                 gradient_start=start)  # fmt: skip
            [r] = run_blocks(ops, "model", opts)
            assert float(r.spectrum.top.eigenvalues[0]) == pytest.approx(lam, rel=1e-8)
            assert r.spectrum.top.all_converged
            runs[start] = r
        assert any("loss gradient" in n for n in runs[True].notes)
        assert not any("loss gradient" in n for n in runs[False].notes)
        assert runs[True].spectrum.num_products < runs[False].spectrum.num_products


def test_a_binding_basis_budget_is_said_in_a_note(mlp_tanh) -> None:
    # 79 weights; 0.0065 MiB holds 10 float64 vectors, 21 float32: the basis spills to float32
    net, x, y = mlp_tanh
    cap = hk.capture(net, x, y)
    budget = int(0.0065 * 2**20)
    opts = SolverOptions(top=3, bottom=1, method="lanczos", tol=1e-4, max_basis_bytes=budget)
    [r] = run_blocks(block_operators(cap, kind="loss"), "model", opts)
    s = r.spectrum
    assert s.basis_dtype == "float32" and s.max_basis_bytes == budget
    assert any("Lanczos basis was held within" in n and "float32" in n for n in r.notes)
    ev = torch.linalg.eigvalsh(hk.LossHessian(cap, "model").to_dense()).numpy()
    assert np.all(np.abs(s.top.eigenvalues - ev[::-1][:3]) <= s.top.error_bounds + 1e-12)
    # without a binding budget: no note
    [free] = run_blocks(block_operators(cap), [1], SolverOptions(top=2, method="lanczos"))
    assert not any("held within" in n for n in free.notes)


@pytest.mark.slow
def test_all_blocks_leaves_separable_blocks_to_the_exact_route() -> None:
    # all_blocks="always" with method="auto": the two conv blocks are separable over their
    # output channels (624 and 290 weights > SEPARABLE_MIN_DIM), so each goes the exact way on
    # its own; the two Lanczos-bound linear blocks still share products. Each answer against dense float64.
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(4, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 2, 3), nn.Tanh(), nn.Flatten(),
        nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3),
    ).double()  # fmt: skip
    x = torch.randn(6, 4, 6, 6, dtype=torch.float64)
    ops = block_operators(hk.capture(net, x, bn="train"), kind="gauss-newton")
    seen: list[str] = []

    class Log(Progress):
        def block_started(self, label: str, dim: int, total: int | None) -> None:
            seen.append(label)

    opts = SolverOptions(
        top=2, bottom=1, tol=1e-10, all_blocks="always", dense_threshold=0, max_products=4000
    )
    rows = run_blocks(ops, "all", opts, progress=Log())
    assert seen[0] == "blocks 3, 4 together" and len(seen) == 3
    methods = [r.spectrum.method for r in rows]
    assert [m.startswith("separable") for m in methods[:2]] == [True, True]
    assert methods[2:] == ["lanczos", "lanczos"]
    ranges = {1: (0, 3), 2: (3, 6), 3: (6, 8), 4: (8, 9)}
    for r in rows:
        lo, hi = ranges[r.index]
        H = dense_reference(net, lo, hi, x, None, bn="train", wrt="weights", kind="gauss-newton")
        _agrees(r, H, 2, 1, rtol=1e-7)
