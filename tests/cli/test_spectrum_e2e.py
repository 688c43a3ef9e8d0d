"""End to end: the installed executable on saved models and data files, against dense float64
references built independently in the test (tests/references.py: torch.func, no hessiankit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomise_bn
from references import dense_reference
from torch import nn

from cli.conftest import Run, read_json

REQUIRED_KEYS = {
    "block",
    "name",
    "wrt",
    "kind",
    "dtype",
    "eigenvalues",
    "smallest",
    "residuals",
    "converged",
    "lambda_max",
    "lambda_min_nonzero",
    "rank",
    "dimension",
    "condition_number",
    "num_products",
    "seconds",
    "seed",
    "hessiankit_version",
    "torch_version",
}


def _check(
    result: dict, H: torch.Tensor, *, psd: bool, top: int, bottom: int, rtol: float = 1e-9
) -> None:
    ev = torch.linalg.eigvalsh(H).numpy()  # ascending
    scale = float(np.abs(ev).max())
    assert result["dimension"] == H.shape[0]
    np.testing.assert_allclose(result["eigenvalues"], ev[::-1][:top], rtol=0, atol=rtol * scale)
    assert all(result["converged"]) and all(result["smallest_converged"])
    assert max(result["residuals"]) < 1e-8 * scale
    if psd:
        nonzero = ev[ev > 1e-9 * scale]
        np.testing.assert_allclose(result["smallest"], nonzero[:bottom], rtol=0, atol=rtol * scale)
        assert result["lambda_min_nonzero"] == pytest.approx(nonzero[0], rel=1e-6)
        if result["rank"] is not None:
            assert result["rank"] == len(nonzero)
        assert result["condition_number"] == pytest.approx(scale / nonzero[0], rel=1e-6)
    else:
        np.testing.assert_allclose(result["smallest"], ev[:bottom], rtol=0, atol=rtol * scale)
    assert result["lambda_max"] == pytest.approx(ev[-1], rel=1e-9, abs=rtol * scale)


def test_gauss_newton_weights_of_one_block(hk: Run, tmp_path: Path, mlp_files) -> None:
    net, x, y = mlp_files
    r = hk(
        "spectrum",
        "mlp.pt",
        "--data",
        "d.pt",
        "--block",
        "2",
        "--top",
        "3",
        "--bottom",
        "2",
        "--json",
        "out.json",
    )
    assert r.returncode == 0, r.stderr
    assert "largest eigenvalues" in r.stdout and "condition number" in r.stdout
    res = read_json(tmp_path / "out.json")
    assert set(res) >= REQUIRED_KEYS
    assert (res["block"], res["name"], res["wrt"], res["kind"], res["dtype"]) == (
        2,
        "2",
        "weights",
        "gauss-newton",
        "float64",
    )
    assert res["hessiankit_version"] and res["torch_version"] == torch.__version__
    H = dense_reference(net, 2, 4, x, y, bn="train", wrt="weights", kind="gauss-newton")
    _check(res, H, psd=True, top=3, bottom=2)


def test_exact_input_hessian_of_a_bn_block_lanczos(hk: Run, tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(48, 3),
    ).double()
    randomise_bn(net, 1)
    x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    torch.save(net, tmp_path / "cnn.pt")
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    r = hk(
        "spectrum",
        "cnn.pt",
        "--data",
        "d.npz",
        "--block",
        "1",
        "--wrt",
        "input",
        "--kind",
        "exact",
        "--eta",
        "0.5",
        "--bn",
        "train",
        "--top",
        "4",
        "--bottom",
        "2",
        "--method",
        "lanczos",
        "--json",
        "out.json",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # --quiet
    res = read_json(tmp_path / "out.json")
    assert (res["method"], res["kind"], res["eta"], res["bn"]) == ("lanczos", "exact", 0.5, "train")
    H = dense_reference(net, 0, 4, x, y, bn="train", wrt="input", kind="exact", eta=0.5)
    _check(res, H, psd=False, top=4, bottom=2, rtol=1e-8)


def test_loss_hessian_of_the_whole_model_and_every_block(
    hk: Run, tmp_path: Path, mlp_files
) -> None:
    net, x, y = mlp_files
    r = hk(
        "spectrum",
        "mlp.pt",
        "--data",
        "d.pt",
        "--block",
        "model",
        "--kind",
        "loss",
        "--top",
        "5",
        "--bottom",
        "2",
        "--json",
        "model.json",
    )
    assert r.returncode == 0, r.stderr
    res = read_json(tmp_path / "model.json")
    assert (res["block"], res["name"], res["loss"]) == (0, "model", "cross-entropy")
    H = dense_reference(net, 0, 5, x, y, bn="train", wrt="weights", kind="loss")
    assert H.shape == (79, 79)
    _check(res, H, psd=False, top=5, bottom=2)

    r = hk(
        "spectrum", "mlp.pt", "--data", "d.pt", "--block", "all", "--top", "2", "--json", "all.json"
    )
    assert r.returncode == 0, r.stderr
    rows = read_json(tmp_path / "all.json")
    assert isinstance(rows, list) and [row["block"] for row in rows] == [1, 2, 3]
    for row, (lo, hi) in zip(rows, [(0, 2), (2, 4), (4, 5)]):
        assert set(row) >= REQUIRED_KEYS
        _check(
            row,
            dense_reference(net, lo, hi, x, y, bn="train", wrt="weights", kind="gauss-newton"),
            psd=True,
            top=2,
            bottom=1,
        )
    # One table row per block.
    assert sum(line.split()[:1] in (["1"], ["2"], ["3"]) for line in r.stdout.splitlines()) == 3


def test_several_batches_mean_for_weights_direct_sum_for_inputs(
    hk: Run, tmp_path: Path, mlp_files
) -> None:
    net, x, y = mlp_files
    x6, y6 = x[:6], y[:6]
    r = hk(
        "spectrum",
        "mlp.pt",
        "--data",
        "d.pt",
        "--block",
        "2",
        "--batch-size",
        "3",
        "--num-batches",
        "2",
        "--top",
        "3",
        "--json",
        "w.json",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    H = (
        sum(
            dense_reference(
                net,
                2,
                4,
                x6[i : i + 3],
                y6[i : i + 3],
                bn="train",
                wrt="weights",
                kind="gauss-newton",
            )
            for i in (0, 3)
        )
        / 2
    )
    res = read_json(tmp_path / "w.json")
    assert (res["batch_size"], res["num_batches"]) == (3, 2)
    _check(res, H, psd=True, top=3, bottom=1)
    r = hk(
        "spectrum",
        "mlp.pt",
        "--data",
        "d.pt",
        "--block",
        "3",
        "--wrt",
        "input",
        "--batch-size",
        "3",
        "--num-batches",
        "2",
        "--top",
        "3",
        "--json",
        "i.json",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    H = torch.block_diag(
        *[
            dense_reference(
                net,
                4,
                5,
                x6[i : i + 3],
                y6[i : i + 3],
                bn="train",
                wrt="input",
                kind="gauss-newton",
            )
            for i in (0, 3)
        ]
    )
    _check(read_json(tmp_path / "i.json"), H, psd=True, top=3, bottom=1)


def test_torchscript_archive_gives_the_reference(hk: Run, tmp_path: Path, mlp_files) -> None:
    net, x, y = mlp_files
    torch.jit.save(torch.jit.script(net), tmp_path / "ts.pt")
    r = hk(
        "spectrum",
        "ts.pt",
        "--trust-pickle",  # loading TorchScript runs the archive's code: an explicit opt-in
        "--data",
        "d.pt",
        "--block",
        "2",
        "--top",
        "2",
        "--json",
        "ts.json",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    res = read_json(tmp_path / "ts.json")
    assert res["model_source"] == "torchscript"
    _check(
        res,
        dense_reference(net, 2, 4, x, y, bn="train", wrt="weights", kind="gauss-newton"),
        psd=True,
        top=2,
        bottom=1,
    )


def test_arch_and_trusted_pickle_give_the_reference(
    tmp_path: Path, mlp_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-process (hessiankit.cli.main, what the executable runs): the loading paths, not the process.
    from cli.hk_cli_models import custom
    from hessiankit.cli import main

    _, x, y = mlp_files
    monkeypatch.chdir(tmp_path)
    model = custom()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save(model, tmp_path / "custom.pt")
    H = dense_reference(model.body, 0, 2, x, y, bn="train", wrt="weights", kind="gauss-newton")
    assert (
        main(
            [
                "spectrum",
                "sd.pt",
                "--arch",
                "cli.hk_cli_models:custom",
                "--data",
                "d.pt",
                "--block",
                "body.0",
                "--top",
                "2",
                "--json",
                "arch.json",
                "--quiet",
            ]
        )
        == 0
    )
    _check(read_json(tmp_path / "arch.json"), H, psd=True, top=2, bottom=1)
    assert (
        main(
            [
                "spectrum",
                "custom.pt",
                "--trust-pickle",
                "--data",
                "d.pt",
                "--block",
                "1",
                "--top",
                "2",
                "--json",
                "c.json",
                "--quiet",
            ]
        )
        == 0
    )
    res = read_json(tmp_path / "c.json")
    assert res["model_source"] == "trusted pickle"
    _check(res, H, psd=True, top=2, bottom=1)


def test_blocks_table(hk: Run, tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 3),
    )
    torch.save(net, tmp_path / "cnn.pt")
    torch.save({"x": torch.randn(5, 2, 4, 4)}, tmp_path / "x.pt")
    r = hk("blocks", "cnn.pt", "--data", "x.pt", "--json", "b.json")
    assert r.returncode == 0, r.stderr
    rows = read_json(tmp_path / "b.json")["blocks"]
    # Independent: parameter counts and shapes from the modules themselves.
    assert [row["num_params"] for row in rows] == [2 * 3 * 9 + 3 + 3 + 3, 12 * 3 + 3]
    assert [row["modules"] for row in rows] == [["0", "1", "2", "3", "4"], ["5"]]
    with torch.no_grad():
        z1 = net[:5].eval()(torch.zeros(5, 2, 4, 4))
    assert rows[0]["input_shape"] == [2, 4, 4] and rows[0]["output_shape"] == list(
        z1.shape[1:]
    ) == [12]
    assert rows[1]["output_shape"] == [3]
    assert [(row["has_bn"], row["has_skip"]) for row in rows] == [(True, False), (False, False)]
    lines = r.stdout.splitlines()
    assert any(line.split()[:2] == ["1", "0"] and "yes" in line for line in lines)


def test_default_model_and_data(hk: Run, tmp_path: Path) -> None:
    from hessiankit.data import load_dataset
    from hessiankit.models import default_model

    r = hk("spectrum", "--block", "4", "--top", "3", "--json", "d.json")
    assert r.returncode == 0, r.stderr
    res = read_json(tmp_path / "d.json")
    assert res["name"] == "classifier" and res["batch_size"] == 32
    net = default_model()
    flat = nn.Sequential(*net.features, net.pool, net.flatten, net.classifier).double()
    x, y = load_dataset(res["dataset"], num_samples=32, input_shape=(1, 28, 28), seed=0)
    H = dense_reference(flat, 14, 15, x.double(), y, bn="train", wrt="weights", kind="gauss-newton")
    _check(res, H, psd=True, top=3, bottom=1)


def test_same_inputs_same_json(hk: Run, tmp_path: Path, mlp_files) -> None:
    args = [
        "spectrum",
        "mlp.pt",
        "--data",
        "d.pt",
        "--block",
        "all",
        "--method",
        "lanczos",
        "--top",
        "2",
        "--bottom",
        "1",
        "--seed",
        "5",
        "--quiet",
    ]
    assert hk(*args, "--json", "a.json").returncode == 0
    assert hk(*args, "--json", "b.json").returncode == 0
    a, b = read_json(tmp_path / "a.json"), read_json(tmp_path / "b.json")
    for rows in (a, b):
        for row in rows:
            assert row.pop("seconds") >= 0
    assert a == b
    assert all(row["seed"] == 5 and row["method"] == "lanczos" for row in a)
