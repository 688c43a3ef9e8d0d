"""Product counts of what a user runs (issue 16): ``hessiankit spectrum --kind loss --block model``
through the command line's own path (argument parsing, option mapping, pipeline), on a small
conv net with batch norm in eval mode, the issue's case in miniature. Every answer is checked
against ``torch.func.hessian`` of the batch-mean cross-entropy (float64, dense ``eigvalsh``).
Counts, never times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from hessiankit.cli import main

# Measured on this network (1,692 weights, batch 32, float64, seed 0). Each includes the one
# product method="auto" times to price its routes. A regression would exceed them.
TOP1_PRODUCTS = 13  # tol 1e-6 (default), from the gradient start
TOP1_LOOSE_PRODUCTS = 11  # --tol 1e-3
TOP10_PRODUCTS = 62  # single-vector Lanczos from the gradient (a block of 10 spends 131)

pytestmark = pytest.mark.slow  # each test runs a whole analysis (seconds each)


def _net() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(96, 16),
        nn.Tanh(),
        nn.Linear(16, 4),
    )
    g = torch.Generator().manual_seed(1)
    bn = net[1]
    with torch.no_grad():  # running statistics and affine weights away from their defaults
        bn.weight.copy_(1 + 0.2 * torch.randn(6, generator=g))
        bn.bias.copy_(0.1 * torch.randn(6, generator=g))
        bn.running_mean.copy_(0.1 * torch.randn(6, generator=g))
        bn.running_var.copy_(0.5 + torch.rand(6, generator=g))
    x = torch.randn(32, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (32,), generator=g)
    return net.eval(), x, y


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.Tensor]:
    """The model and data files, and the loss Hessian's eigenvalues, descending."""
    net, x, y = _net()
    d = tmp_path_factory.mktemp("counts")
    torch.save(net, d / "m.pt")
    torch.save({"x": x, "y": y}, d / "d.pt")
    net = net.double()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(w: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = w[i : i + s.numel()].reshape(s)
            i += s.numel()
        return nn.functional.cross_entropy(functional_call(net, params, (x.double(),)), y)

    ev = torch.linalg.eigvalsh(hessian(loss)(flat)).flip(0)
    return d / "m.pt", d / "d.pt", ev


def _spectrum(case: tuple[Path, Path, torch.Tensor], tmp_path: Path, *flags: str) -> dict:
    model, data, _ = case
    out = tmp_path / "out.json"
    argv = ["spectrum", str(model), "--data", str(data), "--block", "model", "--kind", "loss"]
    argv += ["--bottom", "0", "--bn", "eval", "--quiet", "--json", str(out), *flags]
    assert main(argv) == 0
    record: dict = json.loads(out.read_text())
    assert record["method"] == "lanczos" and all(record["converged"])
    assert any("loss gradient" in n for n in record["notes"])
    return record


def _rel_error(record: dict, ev: torch.Tensor) -> float:
    got = torch.tensor(record["eigenvalues"], dtype=torch.float64)
    return float(((got - ev[: len(got)]).abs() / ev[: len(got)].abs()).max())


def test_top1_from_the_gradient_and_a_looser_tol_costs_fewer_products(
    case: tuple[Path, Path, torch.Tensor], tmp_path: Path
) -> None:
    ev = case[2]
    tight = _spectrum(case, tmp_path, "--top", "1")
    assert tight["block_size"] == 1
    assert tight["num_products"] <= TOP1_PRODUCTS
    assert _rel_error(tight, ev) <= 1e-6
    loose = _spectrum(case, tmp_path, "--top", "1", "--tol", "1e-3")
    assert loose["num_products"] <= TOP1_LOOSE_PRODUCTS
    assert loose["num_products"] < tight["num_products"]
    assert _rel_error(loose, ev) <= 1e-3


def test_top10_runs_single_vector_lanczos_by_default_and_beats_a_block(
    case: tuple[Path, Path, torch.Tensor], tmp_path: Path
) -> None:
    ev = case[2]
    assert float(ev[9] - ev[10]) > 1e-3 * float(ev[0])  # the tenth is apart from the eleventh
    single = _spectrum(case, tmp_path, "--top", "10")
    assert single["block_size"] == 1
    assert any("block_size" in n for n in single["notes"])
    assert single["num_products"] <= TOP10_PRODUCTS
    assert _rel_error(single, ev) <= 1e-6
    block = _spectrum(case, tmp_path, "--top", "10", "--block-size", "10")
    assert block["block_size"] == 10
    assert _rel_error(block, ev) <= 1e-6
    assert single["num_products"] < block["num_products"]


def test_max_products_caps_the_run_and_says_what_did_not_converge(
    case: tuple[Path, Path, torch.Tensor], tmp_path: Path
) -> None:
    # --max-products 20 stops the top-10 run (62 products unbounded) early: at most 20 products
    # plus the one auto's pricing spends, not every eigenvalue converged; the converged ones are
    # the dense ones, and every reported value has an eigenvalue within its stated error bound
    # (the residual bound: an unconverged Ritz value need not be the i-th eigenvalue).
    model, data, ev = case
    out = tmp_path / "cap.json"
    argv = ["spectrum", str(model), "--data", str(data), "--block", "model", "--kind", "loss"]
    argv += ["--bottom", "0", "--bn", "eval", "--quiet", "--json", str(out)]
    assert main([*argv, "--top", "10", "--max-products", "20"]) == 0
    record = json.loads(out.read_text())
    assert record["num_products"] <= 21
    assert not all(record["converged"])
    got = torch.tensor(record["eigenvalues"], dtype=torch.float64)
    bounds = torch.tensor(record["error_bounds"], dtype=torch.float64)
    nearest = (got[:, None] - ev[None, :]).abs().min(dim=1).values
    assert bool((nearest <= bounds * (1 + 1e-6) + 1e-12).all())
    conv = torch.tensor(record["converged"])
    assert bool(conv[0]) and bool(((got - ev[:10]).abs()[conv] <= 1e-6 * ev[0]).all())
