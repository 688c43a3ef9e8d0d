"""Hostile and malformed inputs through the command line: exit status 2, one line, no traceback,
nothing written (no output, no marker of a payload), inputs never overwritten."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cli.conftest import Run, read_json
from hessiankit.cli import main
from hessiankit.errors import NumericalError
from hessiankit.io import atomic, write_json_atomic
from hessiankit.operators import MatrixOperator
from tests.io.test_hostile import _SavesOnLoad

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _one_line_error(err: str, command: str) -> None:
    assert err.startswith(f"hessiankit {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_torchscript_never_runs_without_opt_in(
    hk: Run, tmp_path: Path, mlp_files, capfd: pytest.CaptureFixture[str], monkeypatch
) -> None:
    marker = tmp_path / "MARKER"
    torch.jit.save(torch.jit.script(nn.Sequential(_SavesOnLoad(str(marker)))), tmp_path / "ts.pt")
    marker.unlink(missing_ok=True)
    before = _listing(tmp_path)
    r = hk("spectrum", "ts.pt", "--data", "d.pt", "--json", "o.json")  # the installed command
    assert r.returncode == 2
    _one_line_error(r.stderr, "spectrum")
    assert "TorchScript archive" in r.stderr and "aten::save" in r.stderr
    assert "--trust-pickle" in r.stderr and "trust_torchscript" not in r.stderr
    monkeypatch.chdir(tmp_path)
    for command, extra in (
        ("blocks", []),
        ("density", ["--block", "1", "--plot", "p"]),
        ("report", ["--out", "r.html"]),
    ):
        assert main([command, "ts.pt", "--data", "d.pt", "--json", "o.json", *extra]) == 2
        err = capfd.readouterr().err
        _one_line_error(err, command)
        assert "TorchScript archive" in err
    assert not marker.exists() and _listing(tmp_path) == before


def test_outputs_never_overwrite_inputs(tmp_path: Path, mlp_files, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.symlink("mlp.pt", tmp_path / "link.json")
    os.link(tmp_path / "d.pt", tmp_path / "hard.json")
    cases = [
        (["spectrum", "mlp.pt", "--data", "d.pt", "--json", "mlp.pt"], "is the input file mlp.pt"),
        (["spectrum", "mlp.pt", "--data", "d.pt", "--json", "./d.pt"], "is the input file d.pt"),
        (["blocks", "mlp.pt", "--data", "d.pt", "--json", "link.json"], "is the input file mlp.pt"),
        (["blocks", "mlp.pt", "--data", "d.pt", "--json", "hard.json"], "is the input file d.pt"),
        (["report", "mlp.pt", "--data", "d.pt", "--out", "mlp.pt"], "is the input file mlp.pt"),
        (
            ["report", "mlp.pt", "--data", "dx.npz", "--format", "md", "--out", "dx.md"],
            "--out 'dx.json'",  # the JSON twin beside dx.md
        ),
        (["density", "mlp.pt", "--data", "d.pt", "--block", "1", "--plot", "d.pt"], "--plot"),
        (["spectrum", "mlp.pt", "--data", "d.pt", "--json", "newdir/"], "is a folder"),
        (["report", "mlp.pt", "--data", "d.pt", "--out", "/proc/r.html"], "folder '/proc'"),
        (["spectrum", "mlp.pt", "--data", "d.pt", "--json", "/dev/null"], "not a regular file"),
    ]
    os.link(tmp_path / "dx.npz", tmp_path / "dx.json")  # the md report's JSON twin is an input
    before = _listing(tmp_path)
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        _one_line_error(err, args[0])
        assert message in err, (args, err)
    assert _listing(tmp_path) == before  # nothing written, nothing overwritten
    assert not (tmp_path / "newdir").exists()


def test_once_differentiable_is_refused_and_a_twice_differentiable_one_is_exact(
    tmp_path: Path, mlp_files, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--arch", "cli.hk_hostile_models:once_diff", "--data", "d.pt", "--json", "o.json"]
    assert main(["spectrum", *args]) == 2
    err = capsys.readouterr().err
    _one_line_error(err, "spectrum")
    assert "module '1' calls the autograd Function OnceTanh" in err
    assert "@once_differentiable" in err and not (tmp_path / "o.json").exists()
    # The same network through a custom Function with a differentiable backward is accepted
    # and agrees with built-in tanh (autograd's own second derivative) to round-off.
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    from cli.hk_hostile_models import twice_diff

    net.load_state_dict(twice_diff().state_dict())
    torch.save(net, tmp_path / "ref.pt")
    common = ["--data", "d.pt", "--block", "1", "--kind", "exact", "--top", "4", "--quiet"]
    assert (
        main(
            ["spectrum", "--arch", "cli.hk_hostile_models:twice_diff", *common, "--json", "t.json"]
        )
        == 0
    )
    assert main(["spectrum", "ref.pt", *common, "--json", "r.json"]) == 0
    got, ref = read_json(tmp_path / "t.json"), read_json(tmp_path / "r.json")
    assert abs(ref["eigenvalues"][0]) > 1e-6  # not the zero operator
    np.testing.assert_allclose(got["eigenvalues"], ref["eigenvalues"], rtol=1e-10, atol=1e-14)


def test_non_finite_options_and_products_are_errors(
    tmp_path: Path, mlp_files, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for flag, value in (
        ("--eta", "nan"),
        ("--eta", "inf"),
        ("--tol", "0"),
        ("--tol", "-1"),
        ("--tol", "nan"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["spectrum", "mlp.pt", "--data", "d.pt", flag, value])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {flag}: '{value}' must be" in err and "Traceback" not in err
    A = torch.eye(4, dtype=torch.float64)
    A[1, 1] = float("inf")
    with pytest.raises(NumericalError, match="NaN or Inf"):
        MatrixOperator(A).matvec(torch.ones(4, dtype=torch.float64))
    from hessiankit.solvers import spectrum

    with pytest.raises(NumericalError, match="NaN or Inf"):
        spectrum(MatrixOperator(A), top=1, bottom=0, method="lanczos")


def test_disk_full_is_one_line_and_leaves_nothing(
    tmp_path: Path, mlp_files, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    before = _listing(tmp_path)
    assert main(["blocks", "mlp.pt", "--data", "d.pt", "--json", "o.json", "--quiet"]) == 2
    err = capsys.readouterr().err
    _one_line_error(err, "blocks")
    assert "cannot write 'o.json' (No space left on device)" in err
    assert _listing(tmp_path) == before and not list(tmp_path.glob(".hessiankit-*"))


def test_outputs_honour_the_umask_and_keep_an_existing_mode(
    tmp_path: Path, mlp_files, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "a.json", {"a": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
        (tmp_path / "a.json").chmod(0o604)
        write_json_atomic(tmp_path / "a.json", {"a": 2})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o604
        # a command's outputs: JSON and HTML alike get 0o666 minus the umask
        os.umask(0o022)
        args = ["mlp.pt", "--data", "d.pt", "--blocks", "3", "--no-density", "--top", "1"]
        assert main(["report", *args, "--out", "r.html", "--json", "r.json", "--quiet"]) == 0
    finally:
        os.umask(old)
    assert {(tmp_path / n).stat().st_mode & 0o777 for n in ("r.html", "r.json")} == {0o644}


def test_temps_of_killed_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".hessiankit-{dead.pid}-0123abcd.tmp"
    live = tmp_path / f".hessiankit-{os.getppid()}-0123abcd.tmp"
    legacy = tmp_path / ".hessiankit-k3j4h5g6.json"
    for p in (stale, live, legacy):
        p.write_text("partial")
    os.utime(legacy, (1e9, 1e9))  # a mkstemp temp of an older version, long abandoned
    write_json_atomic(tmp_path / "r.json", {"ok": True})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([live.name, "r.json"])


def _save_meta_model(path: Path) -> None:
    with torch.device("meta"):
        torch.save(nn.Sequential(nn.Linear(5, 3)), path)


MALFORMED = {
    "meta model": (
        lambda t: _save_meta_model(t / "m.pt"),
        ["m.pt", "--data", "d.pt"],
        "meta device",
    ),
    "sparse data": (
        lambda t: torch.save({"x": torch.randn(7, 5).to_sparse()}, t / "s.pt"),
        ["mlp.pt", "--data", "s.pt"],
        "x in s.pt is sparse_coo",
    ),
    "meta data": (
        lambda t: torch.save({"x": torch.empty(7, 5, device="meta")}, t / "s.pt"),
        ["mlp.pt", "--data", "s.pt"],
        "meta device",
    ),
    "long double npz": (
        lambda t: np.savez(t / "s.npz", x=np.zeros((7, 5), dtype=np.longdouble)),
        ["mlp.pt", "--data", "s.npz"],
        "long double",
    ),
    "strings npz": (
        lambda t: np.savez(t / "s.npz", x=np.array([["a"] * 5] * 7)),
        ["mlp.pt", "--data", "s.npz"],
        "array of strings",
    ),
    "compressed bomb": (
        lambda t: np.savez_compressed(t / "s.npz", x=np.zeros((2000, 1000))),
        ["mlp.pt", "--data", "s.npz", "--max-input-mib", "10"],
        "declares 15.3 MiB of arrays, over the 10 MiB input limit; raise --max-input-mib",
    ),
    "wrong shape for a bare module": (
        lambda t: (
            torch.save(nn.Linear(5, 3).double(), t / "m.pt"),
            torch.save({"x": torch.randn(4, 7, dtype=torch.float64)}, t / "s.pt"),
        ),
        ["m.pt", "--data", "s.pt"],
        "does not fit block 1",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_inputs_are_one_line(
    case: str, tmp_path: Path, mlp_files, capfd, monkeypatch
) -> None:
    make, args, message = MALFORMED[case]
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path)
    assert main(["spectrum", *args, "--json", "o.json"]) == 2
    err = capfd.readouterr().err  # capfd: also what torch or numpy would print themselves
    _one_line_error(err, "spectrum")
    assert message in err
    assert _listing(tmp_path) == before


def test_once_differentiable_is_found_in_nested_modules_without_side_effects() -> None:
    from cli.hk_hostile_models import once_diff, twice_diff
    from hessiankit.blocks.differentiable import once_differentiable_calls

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 5), nn.BatchNorm1d(5), nn.Dropout(0.5), once_diff()).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    stats, rng = net[1].running_mean.clone(), torch.random.get_rng_state()
    assert once_differentiable_calls(net, x) == [("3.1", "OnceTanh")]  # the innermost module
    assert torch.equal(net[1].running_mean, stats)  # batch-norm statistics untouched
    assert torch.equal(torch.random.get_rng_state(), rng)  # dropout drew nothing for good
    assert once_differentiable_calls(twice_diff(), x) == []
    # the zero Hessian it prevents is real: the gradient through OnceTanh is cut from the
    # graph (autograd's allow_unused reads that as zero), tanh's own is not
    z = torch.randn(3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(once_diff()[1](z).sum(), z, create_graph=True)
    (g_ref,) = torch.autograd.grad(torch.tanh(z).sum(), z, create_graph=True)
    assert torch.allclose(g, g_ref) and not g.requires_grad and g_ref.requires_grad
