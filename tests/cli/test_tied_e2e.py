"""A saved model with tied weights through the command line: each block takes the shared tensor
once, the whole model takes it once; eigenvalues against dense float64 references written by
hand as functions of the shared tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian, jacobian

from cli.conftest import Run, read_json


def _save(tmp_path: Path) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 3)
    ).double()
    net[2].weight = net[0].weight
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    torch.save(net, tmp_path / "m.pt")
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    return net, x, y


def _references(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor):
    """Per-block Gauss-Newton local Hessians ``(1/m) J^T J`` and the loss Hessian of the whole
    model, all of hand-written functions of ``W`` (shared), ``b0``, ``b2``, ``V``, ``c``."""
    W, b0 = net[0].weight.detach(), net[0].bias.detach()
    b2, V, c = net[2].bias.detach(), net[4].weight.detach(), net[4].bias.detach()
    m = x.shape[0]
    z1 = torch.tanh(x @ W.T + b0)
    z2 = torch.tanh(z1 @ W.T + b2)

    def gn(fn, point):
        sizes = [p.numel() for p in point]

        def f(v):
            parts = [t.reshape(p.shape) for t, p in zip(torch.split(v, sizes), point)]
            return fn(*parts).reshape(-1)

        J = jacobian(f, torch.cat([p.reshape(-1) for p in point]))
        return J.T @ J / m

    blocks = [
        gn(lambda W_, b_: torch.tanh(x @ W_.T + b_), [W, b0]),
        gn(lambda W_, b_: torch.tanh(z1 @ W_.T + b_), [W, b2]),
        gn(lambda V_, c_: z2 @ V_.T + c_, [V, c]),
    ]
    point = [W, b0, b2, V, c]
    sizes = [p.numel() for p in point]

    def loss(v):
        W_, b0_, b2_, V_, c_ = (t.reshape(p.shape) for t, p in zip(torch.split(v, sizes), point))
        out = torch.tanh(torch.tanh(x @ W_.T + b0_) @ W_.T + b2_) @ V_.T + c_
        return F.cross_entropy(out, y)

    whole = hessian(loss, torch.cat([p.reshape(-1) for p in point]))
    return blocks, whole


def test_blocks_and_spectra_of_a_tied_model(hk: Run, tmp_path: Path) -> None:
    net, x, y = _save(tmp_path)
    blocks, whole = _references(net, x, y)

    r = hk("blocks", "m.pt", "--data", "d.pt", "--json", "b.json")
    assert r.returncode == 0, r.stderr
    table = read_json(tmp_path / "b.json")
    # W (25) in blocks 1 and 2, each with its own bias (5); block 3: 15 + 3. Model: 53.
    assert [row["num_params"] for row in table["blocks"]] == [30, 30, 18]
    assert table["num_params"] == sum(p.numel() for p in net.parameters()) == 53
    assert "53 weights, 25 of them in more than one block (tied)" in r.stdout

    r = hk(
        "spectrum", "m.pt", "--data", "d.pt", "--block", "all", "--top", "3", "--json", "all.json"
    )
    assert r.returncode == 0, r.stderr
    rows = read_json(tmp_path / "all.json")
    assert [row["dimension"] for row in rows] == [30, 30, 18]
    for row, H in zip(rows, blocks):
        ev = np.linalg.eigvalsh(H.numpy())
        np.testing.assert_allclose(row["eigenvalues"], ev[::-1][:3], rtol=1e-8, atol=1e-12)

    r = hk(
        "spectrum",
        "m.pt",
        "--data",
        "d.pt",
        "--block",
        "model",
        "--kind",
        "loss",
        "--top",
        "3",
        "--bottom",
        "2",
        "--json",
        "model.json",
    )
    assert r.returncode == 0, r.stderr
    res = read_json(tmp_path / "model.json")
    assert res["dimension"] == 53
    ev = np.linalg.eigvalsh(whole.numpy())
    scale = float(np.abs(ev).max())
    np.testing.assert_allclose(res["eigenvalues"], ev[::-1][:3], rtol=1e-8, atol=1e-10 * scale)
