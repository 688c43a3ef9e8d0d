"""The SGD vs scale-amended SGD experiment end to end in its smoke configuration (synthetic data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.analyses.scripts import load_script

pytestmark = pytest.mark.slow  # runs an analysis script end to end

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_outputs_and_resumes(tmp_path: Path) -> None:
    exp = load_script("scale_amended_sgd")
    out, ck = tmp_path / "out", tmp_path / "ck"
    argv = [
        "--smoke",
        "--data",
        "synthetic",
        "--out",
        str(out),
        "--checkpoints",
        str(ck),
        "--no-progress",
        "--overhead",
        "--ablation",
    ]
    threads = torch.get_num_threads()
    try:
        assert exp.main(argv) == 0
        first = json.loads((out / "results.json").read_text())
        names = ("curves.png", "curves.svg", "sweep.png", "amendment.png", "pace.png", "table.md")
        for name in names:
            assert (out / name).is_file()
        cfg = exp.CONFIGS["smoke"]
        # one run per rate and optimizer, plus the extra seeds at the best rate
        assert len(list(ck.glob("*.pt"))) == 4 * (len(cfg.lrs) + cfg.seeds - 1)
        assert "ablation_paired_difference" in first and "measured_paired_difference" in first
        for o in (*exp.OPTIMIZERS, exp.ABLATION):
            r = first["optimizers"][o]
            assert r["best_lr"] in cfg.lrs and len(r["final_test_acc"]) == cfg.seeds
            assert all(0.0 <= a <= 1.0 for a in r["final_test_acc"])
            # every block's pace was measured; the spread is the std over blocks per seed
            paces = r["pace_per_block_mean"]
            assert len(paces) == 11 and all(p == p and p <= 1.0 for p in paces)
            assert len(r["pace_spread"]) == cfg.seeds
        d = first["paired_difference"]["test_acc"]
        a, s = first["optimizers"]["scale-amended"], first["optimizers"]["sgd"]
        assert d["values"] == [p - q for p, q in zip(a["final_test_acc"], s["final_test_acc"])]
        assert "Verdict" in (out / "table.md").read_text()
        ob = first["overhead_benchmark"]
        assert ob["ratio_median"] > 0 and len(ob["ratios"]) == ob["rounds"]
        # a second call finds every run finished in its checkpoint and reproduces the results
        assert exp.main(argv) == 0
        again = json.loads((out / "results.json").read_text())
        assert again["optimizers"] == first["optimizers"]
    finally:
        torch.set_num_threads(threads)


def test_mean_ci_matches_student_t() -> None:
    exp = load_script("scale_amended_sgd")
    m, h = exp.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and abs(h - 4.3026527 * 1.0 / 3**0.5) < 1e-6  # t_{0.975, 2} = 4.30265
    m, h = exp.mean_ci([1.0, float("nan")])
    assert m == 1.0 and h != h  # one finite value: no interval
