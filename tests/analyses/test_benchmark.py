"""The benchmark's short mode: every tool's numbers agree (speed is not asserted in tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.analyses.scripts import load_script

pytestmark = pytest.mark.slow  # runs an analysis script end to end

ROOT = Path(__file__).resolve().parents[2]


def test_short_benchmark_agrees_with_the_float64_reference(tmp_path, capsys):
    bench = load_script("benchmark", "hk_benchmark")
    # main() raises AssertionError when a tool that ran disagrees with the reference.
    results = bench.main(["--short", "--models", "cnn", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "every tool that ran agrees" in out
    res = results["models"]["cnn"]
    for task in ("top1", "top10", "trace", "blocks"):
        assert "seconds" in res["tasks"][task]["hessiankit"]
    # hessiankit's eigenvalues against the float64 reference, to the requested accuracy.
    assert res["tasks"]["top10"]["hessiankit"]["rel_error"] <= 10 * results["rtol"]
    assert (tmp_path / "results.json").exists() and (tmp_path / "results.md").exists()
    for anchor, why in results["skipped_anchors"].items():
        print(f"{anchor} skipped: {why}")  # shown with -rA; not a failure


def test_anchor_that_cannot_be_imported_is_skipped_with_its_reason():
    bench = load_script("benchmark", "hk_benchmark")
    bench.IMPORTS["pyhessian"] = "no_such_module_for_the_test"
    ok, skipped = bench.available_anchors(["pyhessian"])
    assert ok == [] and "ModuleNotFoundError" in skipped["pyhessian"]


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_full_size_models_have_the_sizes_the_issue_asks_for(model):
    bench = load_script("benchmark", "hk_benchmark")
    net, x, _ = bench.build(model, "full", 2, 0, "cpu")
    n = sum(p.numel() for p in net.parameters())
    assert (60_000 <= n <= 150_000) if model == "cnn" else (200_000 <= n <= 400_000)
    assert tuple(x.shape[1:]) == (3, 32, 32)
