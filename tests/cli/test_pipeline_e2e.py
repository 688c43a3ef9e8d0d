"""The commands through the library pipeline give what the pre-pipeline path gave (capture,
one operator per block, ``spectrum``/``slq`` called directly) on the built-in default model,
and a log (stderr not a terminal) gets one plain line per finished block."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

import hessiankit
from cli.conftest import Run, read_json
from hessiankit.blocks import capture
from hessiankit.cli.progress import LogLines
from hessiankit.data import load_dataset
from hessiankit.models import default_model
from hessiankit.resources import dense_budget_bytes
from hessiankit.solvers.slq import slq

SMALL = ["--batch-size", "8"]


def _old_path(dataset: str) -> hessiankit.BlockCapture:
    """What cli/common.build_operators did for the defaults: the built-in model, 8 samples."""
    x, y = load_dataset(dataset, num_samples=8, input_shape=(1, 28, 28), seed=0)
    return capture(default_model(seed=0), x, y, bn="train", dtype=torch.float64)


def test_spectrum_equals_the_old_path(hk: Run, tmp_path: Path) -> None:
    r = hk("spectrum", *SMALL, "--top", "3", "--json", "s.json", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = read_json(tmp_path / "s.json")
    cap = _old_path(rows[0]["dataset"])
    for row in rows:
        old = hessiankit.spectrum(
            hessiankit.hessian_operator(cap, row["block"]),
            top=3,
            bottom=1,
            method="auto",
            tol=1e-6,
            seed=0,
            max_dense_bytes=dense_budget_bytes(),
        )
        assert row["method"] == old.method
        scale = abs(old.condition.lambda_max)
        np.testing.assert_allclose(row["eigenvalues"], old.top.eigenvalues, atol=1e-9 * scale)
        np.testing.assert_allclose(row["smallest"], old.bottom.eigenvalues, atol=1e-9 * scale)
        assert row["condition_number"] == old.condition.kappa or np.isclose(
            row["condition_number"], old.condition.kappa, rtol=1e-6
        )


def test_density_equals_the_old_path(hk: Run, tmp_path: Path) -> None:
    r = hk("density", *SMALL, "--block", "4", "--probes", "2", "--steps", "20", "--json", "d.json")
    assert r.returncode == 0, r.stderr
    d = read_json(tmp_path / "d.json")
    old = slq(
        hessiankit.hessian_operator(_old_path(d["dataset"]), 4), num_probes=2, num_steps=20, seed=0
    )
    for nodes, ref in zip(d["nodes"], old.nodes):
        np.testing.assert_allclose(nodes, ref, rtol=1e-9, atol=1e-12 * float(np.max(ref)))


def test_report_equals_the_old_path(hk: Run, tmp_path: Path) -> None:
    r = hk("report", *SMALL, "--blocks", "1,4", "--top", "3", "--no-density", "--format", "md",
           "--out", "r.md", "--json", "r.json", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = read_json(tmp_path / "r.json")
    cap = _old_path(rep["settings"]["dataset"])
    for b in rep["blocks"]:
        old = hessiankit.spectrum(
            hessiankit.hessian_operator(cap, b["block"]), top=3, bottom=1, seed=0
        )
        scale = abs(old.condition.lambda_max)
        np.testing.assert_allclose(
            b["spectrum"]["eigenvalues"], old.top.eigenvalues, atol=1e-9 * scale
        )
        np.testing.assert_allclose(
            b["spectrum"]["smallest"], old.bottom.eigenvalues, atol=1e-9 * scale
        )


def test_a_log_gets_one_line_per_finished_block(hk: Run, tmp_path: Path, mlp_files) -> None:
    # stderr is a pipe here (capture_output): no bars, one plain line per block
    r = hk("spectrum", "mlp.pt", "--data", "d.pt", "--top", "2", "--json", "o.json")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("hessiankit: [")]
    assert len(lines) == 3
    rows = read_json(tmp_path / "o.json")
    for i, (line, row) in enumerate(zip(lines, rows), start=1):
        assert line.startswith(f"hessiankit: [{i}/3] block {row['block']} ({row['name']}) done:")
        assert f"dimension {row['dimension']}, {row['method']}" in line and "converged" in line
    assert "\r" not in r.stderr  # no bar redraws in a log
    q = hk("spectrum", "mlp.pt", "--data", "d.pt", "--top", "2", "--quiet")
    assert q.returncode == 0 and q.stderr == "" and q.stdout == ""


def test_a_long_block_reports_every_interval() -> None:
    stream = io.StringIO()
    log = LogLines(stream, interval=0.0)  # every product call is "a minute later"
    log.begin(1)
    log.block_started("block 2 (features.4)", 592, 592)
    log.products(64, 592)
    log.products(128, 592)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("hessiankit: block 2 (features.4): 128 of 592 products so far")
