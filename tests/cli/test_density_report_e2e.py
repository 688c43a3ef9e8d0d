"""End to end: ``hessiankit density`` and ``hessiankit report`` on a saved model and data file,
against dense float64 references built independently (tests/references.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from plots.files import assert_valid_png, assert_valid_svg
from references import dense_reference
from scipy.integrate import trapezoid

from cli.conftest import Run, read_json


def test_density_moments_nodes_and_plot(hk: Run, tmp_path: Path, mlp_files) -> None:
    net, x, y = mlp_files
    r = hk(
        "density",
        "mlp.pt",
        "--data",
        "d.pt",
        "--block",
        "2",
        "--probes",
        "6",
        "--plot",
        "dens",
        "--json",
        "d.json",
    )
    assert r.returncode == 0, r.stderr
    assert "mean eigenvalue" in r.stdout and "zero mass" in r.stdout
    d = read_json(tmp_path / "d.json")
    H = dense_reference(net, 2, 4, x, y, bn="train", wrt="weights", kind="gauss-newton").numpy()
    ev = np.linalg.eigvalsh(H)
    n = ev.size
    assert (d["block"], d["dimension"], d["num_probes"], d["num_steps"]) == (2, n, 6, n)
    # n steps: every node is an eigenvalue; the mean over 6 probes is within 4 standard errors
    for nodes, weights in zip(d["nodes"], d["weights"]):
        assert np.abs(np.subtract.outer(nodes, ev)).min(axis=1).max() < 1e-9 * ev.max()
        assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    se = math.sqrt(2 * (np.sum(H * H) - np.sum(np.diag(H) ** 2)) / n**2 / 6)
    assert abs(d["mean_eigenvalue"] - ev.mean()) <= 4 * se
    assert trapezoid(d["linear"]["density"], d["linear"]["grid"]) == pytest.approx(1.0, abs=1e-9)
    assert_valid_png(tmp_path / "dens.png")
    assert_valid_svg(tmp_path / "dens.svg")


def test_report_html_and_markdown(hk: Run, tmp_path: Path, mlp_files) -> None:
    net, x, y = mlp_files
    r = hk(
        "report",
        "mlp.pt",
        "--data",
        "d.pt",
        "--probes",
        "2",
        "--steps",
        "10",
        "--top",
        "3",
        "--out",
        "r.html",
        "--json",
        "r.json",
    )
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    data = read_json(tmp_path / "r.json")
    assert [b["block"] for b in data["blocks"]] == [1, 2, 3]
    for b, (lo, hi) in zip(data["blocks"], [(0, 2), (2, 4), (4, 5)]):
        ev = np.linalg.eigvalsh(
            dense_reference(
                net, lo, hi, x, y, bn="train", wrt="weights", kind="gauss-newton"
            ).numpy()
        )
        assert b["spectrum"]["lambda_max"] == pytest.approx(ev[-1], rel=1e-10)
        assert b["trace"]["trace_exact"] == pytest.approx(ev.sum(), rel=1e-10)
        assert (
            f'id="row-block-{b["block"]}"' in page
            and f'id="fig-block-{b["block"]}-density"' in page
        )
    assert data["settings"]["data"] == "d.pt" and data["settings"]["bn"] == "train"
    md = hk(
        "report",
        "mlp.pt",
        "--data",
        "d.pt",
        "--no-density",
        "--blocks",
        "1,3",
        "--format",
        "md",
        "--out",
        "out.md",
        "--quiet",
    )
    assert md.returncode == 0, md.stderr
    assert md.stdout == ""
    assert "| 3 |" in (tmp_path / "out.md").read_text()
    assert sorted(p.name for p in (tmp_path / "out_files").iterdir()) == [
        "block-1-eigenvalues.png",
        "block-3-eigenvalues.png",
        "overview.png",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--blocks", "9"], "block"),
        (["--out", "missing/r.html"], "does not exist"),
        (["--trace-products", "2"], "at least 6"),
    ],
)
def test_report_errors_are_one_line_and_leave_no_file(
    hk: Run, tmp_path: Path, mlp_files, args, message
) -> None:
    r = hk("report", "mlp.pt", "--data", "d.pt", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("hessiankit report: error:") and message in lines[0]
    )
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.html")) and not (tmp_path / "missing").exists()
