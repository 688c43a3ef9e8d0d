"""The optimizer experiment's plan without training: sweeps over several seeds, the rate grid grown
until the optimum is bracketed, and the lock files that let worker processes share the runs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tests.analyses.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def hist(lr: float, seed: int, acc: float, loss: float, diverged: bool = False) -> dict:
    return {"lr": lr, "seed": seed, "val_acc": [acc], "train_loss": [loss], "diverged": diverged}


def test_sweep_rows_average_the_seeds_and_count_divergence_as_zero() -> None:
    exp = load_script("scale_amended_sgd")
    sweep = [
        hist(0.1, 0, 0.80, 0.5),
        hist(0.1, 1, 0.90, 0.3),
        hist(0.3, 0, 0.95, 0.2),
        hist(0.3, 1, math.nan, math.nan, diverged=True),
    ]
    rows = {r["lr"]: r for r in exp.sweep_rows(sweep)}
    assert rows[0.1]["final_val_acc"] == pytest.approx(0.85)
    assert rows[0.1]["final_train_loss"] == pytest.approx(0.4)
    assert rows[0.3]["final_val_acc"] == pytest.approx(0.475) and rows[0.3]["diverged"] == 1
    assert exp.best_rate(sweep) == 0.1  # one diverged seed sinks the higher mean of the rest
    tie = [hist(0.1, 0, 0.9, 0.4), hist(0.3, 0, 0.9, 0.3)]
    assert exp.best_rate(tie) == 0.3  # equal accuracy: the lower training loss


def test_bracketed_grows_the_grid_only_at_an_end() -> None:
    exp = load_script("scale_amended_sgd")
    grid = [0.01, 0.03, 0.1, 0.3]
    assert exp.bracketed(grid, 0.3) == [*grid, 1.0]
    assert exp.bracketed(grid, 0.01) == [0.003, *grid]
    assert exp.bracketed(grid, 0.1) == grid
    assert exp.bracketed([1.0, 3.0], 3.0) == [1.0, 3.0]  # the ladder ends there
    assert exp.bracketed([0.05, 0.5], 0.5) == [0.05, 0.5]  # rates off the ladder: left alone


def test_plan_grows_until_bracketed_and_reuses_the_sweep_seeds(tmp_path: Path) -> None:
    exp = load_script("scale_amended_sgd")
    cfg = replace(exp.CONFIGS["cpu"], seeds=4, sweep_seeds=2)
    trained: list[tuple[str, float, int]] = []
    store: dict = {}  # stands in for the checkpoint files

    class Fake(exp.Runner):  # type: ignore[name-defined, misc]
        def _finished(self, r):
            return r in store

        def _train(self, r):  # validation accuracy peaks at lr 1 for every arm
            if r not in store:
                trained.append((r.optimizer, r.lr, r.seed))
                acc = 0.9 - 0.1 * abs(math.log10(r.lr)) + 0.001 * r.seed
                store[r] = hist(r.lr, r.seed, acc, 1.0 - acc)
            return store[r]

    runner = Fake(cfg, None, tmp_path, torch.device("cpu"), False)
    sweeps, finals = exp.plan(cfg, runner, ("sgd", "scale-amended"))
    for o in ("sgd", "scale-amended"):
        grid = sorted({h["lr"] for h in sweeps[o]})
        assert grid == [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]  # grown twice: to 1, then past it
        assert len(sweeps[o]) == 2 * len(grid)
        assert [(h["lr"], h["seed"]) for h in finals[o]] == [(1.0, s) for s in range(4)]
    # every run trained once (the finals' seeds 0 and 1 are the sweep's), no lock left behind
    assert len(trained) == len(set(trained)) == 2 * (2 * 6 + 2)
    assert not list(tmp_path.glob("*.lock"))


def test_a_run_claimed_by_a_live_worker_is_skipped_and_a_dead_ones_taken_over(
    tmp_path: Path,
) -> None:
    exp = load_script("scale_amended_sgd")
    runner = exp.Runner(exp.CONFIGS["smoke"], None, tmp_path, torch.device("cpu"), False)
    run = exp.Run("sgd", 0.1, 0)
    lock = tmp_path / "sgd_lr0.1_seed0.lock"
    lock.write_text(str(os.getppid()))  # a live process
    assert not runner._claim(run) and lock.read_text() == str(os.getppid())
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock.write_text(done.stdout.strip())  # a process that has exited
    assert runner._claim(run) and lock.read_text() == str(os.getpid())
    assert not runner._claim(run)  # now ours: a second claim fails


def test_collect_summarises_finished_runs_with_seed_matched_prefixes(tmp_path: Path) -> None:
    exp = load_script("scale_amended_sgd")
    cfg = replace(exp.CONFIGS["cpu"], seeds=5, sweep_seeds=2)
    store: dict = {}

    class Finished(exp.Runner):  # type: ignore[name-defined, misc]
        def _finished(self, r):
            return r in store

        def _train(self, r):
            return store[r]

    def put(o: str, lr: float, seed: int, acc: float) -> None:
        store[exp.Run(o, lr, seed)] = hist(lr, seed, acc, 1.0 - acc)

    for lr, acc in ((0.03, 0.80), (0.1, 0.85), (0.3, 0.82)):
        for s in (0, 1):
            put("sgd", lr, s, acc)
    for s in (2, 3, 4):
        put("sgd", 0.1, s, 0.85)
    put("scale-amended", 0.1, 0, 0.9)  # seed 1 of the sweep missing: rate 0.1 not usable
    for s in (0, 1):
        put("scale-amended", 0.3, s, 0.8)
    for s in (2, 4):  # seed 3 missing: the finals stop at seed 2
        put("scale-amended", 0.3, s, 0.8)
    runner = Finished(cfg, None, tmp_path, torch.device("cpu"), False)
    sweeps, finals, status = exp.collect(cfg, runner, ("sgd", "scale-amended", "none"))
    assert status["sgd"] == {"seeds": 5, "of": 5, "bracketed": True}
    assert [h["seed"] for h in finals["sgd"]] == [0, 1, 2, 3, 4]
    assert {h["lr"] for h in sweeps["scale-amended"]} == {0.3}
    assert [h["seed"] for h in finals["scale-amended"]] == [0, 1, 2]
    assert status["scale-amended"] == {"seeds": 3, "of": 5, "bracketed": False}
    assert "none" not in finals
