"""``hessiankit spectrum --max-basis-mib``: the Lanczos basis budget reaches the solver and the
JSON output, and the eigenvalues still agree with dense eigh within the reported bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cli.conftest import Run, read_json


def test_max_basis_mib_spills_the_basis_and_is_reported(hk: Run, tmp_path: Path, mlp_files) -> None:
    common = ["spectrum", "mlp.pt", "--data", "d.pt", "--block", "model", "--top", "3"]
    common += ["--bottom", "1", "--tol", "1e-4", "--quiet"]
    # The whole MLP: 79 weights; 0.0065 MiB holds 10 float64 vectors of 79 numbers, 21 float32;
    # asking for the smallest eigenvalue, Lanczos runs at least 20.
    r = hk(*common, "--method", "lanczos", "--max-basis-mib", "0.0065", "--json", "k.json")
    assert r.returncode == 0, r.stderr
    d = hk(*common, "--method", "dense", "--json", "d.json")
    assert d.returncode == 0, d.stderr
    res, ref = read_json(tmp_path / "k.json"), read_json(tmp_path / "d.json")
    assert res["dimension"] == 79 and res["method"] == "lanczos"
    assert res["max_basis_bytes"] == int(0.0065 * 2**20)
    assert 0 < res["basis_bytes"] <= res["max_basis_bytes"]
    assert res["basis_dtype"] == "float32"
    assert all(res["converged"]) and all(res["smallest_converged"])
    err = np.abs(np.array(res["eigenvalues"]) - ref["eigenvalues"])
    assert np.all(err <= np.array(res["error_bounds"]) + np.array(ref["error_bounds"]))
    err = np.abs(np.array(res["smallest"]) - ref["smallest"])
    assert np.all(err <= np.array(res["smallest_error_bounds"]) + ref["smallest_error_bounds"])


def test_too_small_a_basis_budget_is_a_one_line_error(hk: Run, tmp_path: Path, mlp_files) -> None:
    r = hk(
        "spectrum",
        "mlp.pt",
        "--data",
        "d.pt",
        "--block",
        "model",
        "--method",
        "lanczos",
        "--max-basis-mib",
        "0.0001",
        "--json",
        "out.json",
    )
    assert r.returncode == 2
    assert "raise --max-basis-mib to " in r.stderr and "Traceback" not in r.stderr
    assert "max_basis_bytes" not in r.stderr
    assert not (tmp_path / "out.json").exists()
