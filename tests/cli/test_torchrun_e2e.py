"""The command line under ``torchrun``: two CPU processes with gloo give the single-process numbers
over the same samples (each rank a shard ``rank::2``, ragged batches), rank 0 alone prints and
writes, and a refused run stops every rank with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomise_bn
from references import dense_reference

from cli.conftest import Run, _env, read_json

N = 13  # shards of 7 and 6 samples; batches of 4: 4 + 4 + 4 + 1 overall, 4 + 3 and 4 + 2 per rank
DATA = ["--data", "b.pt", "--batch-size", "4", "--num-batches", "4"]


def _torchrun(cwd: Path, *args: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        *launcher, "-m", "hessiankit", *args,
    ]  # fmt: skip
    # _env: one thread per process, the worktree importable for `-m hessiankit`
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=180)


@pytest.fixture
def bn_files(tmp_path: Path, conv_bn):
    net, _, _ = conv_bn
    g = torch.Generator().manual_seed(7)
    x = torch.randn((N, 2, 4, 4), generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N,), generator=g)
    torch.save(randomise_bn(net, 3), tmp_path / "bn.pt")
    torch.save({"x": x, "y": y}, tmp_path / "b.pt")
    return net, x, y


def _close(got, ref) -> None:
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12 * max(1.0, np.abs(ref).max()))


def test_two_ranks_give_the_single_process_spectrum(hk: Run, tmp_path: Path, bn_files) -> None:
    net, x, y = bn_files
    args = ["spectrum", "bn.pt", *DATA, "--bn", "eval", "--kind", "exact", "--eta", "0.5",
            "--top", "3", "--bottom", "2"]  # fmt: skip
    r = _torchrun(tmp_path, *args, "--json", "two.json")
    assert r.returncode == 0, r.stderr
    # rank 0 alone prints the table and writes exactly one file
    assert r.stdout.count("every block") == 1 and r.stdout.count("on rank 0 of 2") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pt", "bn.pt", "two.json"]
    two = read_json(tmp_path / "two.json")
    r = hk(*args, "--json", "one.json", "--quiet")
    assert r.returncode == 0, r.stderr
    one = read_json(tmp_path / "one.json")
    assert [d["block"] for d in two] == [d["block"] for d in one] == [1, 2]
    for a, b, (lo, hi) in zip(two, one, [(0, 3), (3, 5)]):
        assert (a["samples"], a["world_size"], a["batch_sizes"]) == (N, 2, [4, 4, 4, 1])
        _close(a["eigenvalues"], b["eigenvalues"])
        _close(a["smallest"], b["smallest"])
        assert all(a["converged"]) and all(a["smallest_converged"])
        # and both are the Hessian of the mean over all 13 samples (eval mode: one batch)
        H = dense_reference(net, lo, hi, x, y, bn="eval", wrt="weights", kind="exact", eta=0.5)
        ev = torch.linalg.eigvalsh(H).numpy()
        _close(a["eigenvalues"], ev[::-1][:3])


def test_two_ranks_give_the_single_process_report(hk: Run, tmp_path: Path, bn_files) -> None:
    args = ["report", "bn.pt", *DATA, "--bn", "eval", "--kind", "loss", "--top", "2",
            "--probes", "2", "--steps", "8", "--trace-products", "12"]  # fmt: skip
    r = _torchrun(tmp_path, *args, "--out", "two.html", "--json", "two.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pt", "bn.pt", "two.html", "two.json"]
    r = hk(*args, "--out", "one.html", "--json", "one.json", "--quiet")
    assert r.returncode == 0, r.stderr
    two, one = read_json(tmp_path / "two.json"), read_json(tmp_path / "one.json")
    # the data-set mean loss, over both shards
    assert two["settings"]["loss"] == pytest.approx(one["settings"]["loss"], rel=1e-12)
    for a, b in zip(two["blocks"], one["blocks"], strict=True):
        _close(a["spectrum"]["eigenvalues"], b["spectrum"]["eigenvalues"])
        _close(a["trace"]["trace"], b["trace"]["trace"])
        _close(a["density"]["nodes"], b["density"]["nodes"])


def test_bn_train_over_ranks_stops_every_rank_with_one_line(tmp_path: Path, bn_files) -> None:
    r = _torchrun(
        tmp_path, "spectrum", "bn.pt", *DATA, "--json", "x.json", "--quiet",
        launcher=("--log-dir", "logs", "--redirects", "3"),
    )  # fmt: skip
    assert r.returncode != 0
    assert not (tmp_path / "x.json").exists()
    # the workers' own streams (torchrun adds its own failure summary to its stderr)
    errs = {p.parent.name: p.read_text() for p in (tmp_path / "logs").rglob("stderr.log")}
    outs = [p.read_text() for p in (tmp_path / "logs").rglob("stdout.log")]
    assert sorted(errs) == ["0", "1"] and not any(outs)
    lines = errs["0"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "hessiankit spectrum: error: batch norm in train"
    )
    assert errs["1"] == ""
