"""Every user error: exit status 2, one line naming the problem and the fix, no traceback, and
no output file. In-process through ``hessiankit.cli.main`` (the function the executable runs);
the payload case also through the installed executable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from cli.conftest import Run
from hessiankit.cli import main
from hessiankit.data import sources


class _Payload:
    """Unpickling this runs ``os.system("touch <marker>")``: a real code payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def files(tmp_path: Path, mlp_files) -> Path:
    t = tmp_path
    (t / "junk.pt").write_bytes(b"this is not a model")
    (t / "trunc.pt").write_bytes((t / "mlp.pt").read_bytes()[:300])
    torch.save(nn.Sequential(nn.Flatten(), nn.Tanh()), t / "noparams.pt")
    torch.save({"x": torch.randn(7, 4, dtype=torch.float64)}, t / "wrong_shape.pt")
    nan = nn.Sequential(nn.Linear(5, 3)).double()
    with torch.no_grad():
        nan[0].weight[0, 0] = float("nan")
    torch.save(nan, t / "nan.pt")
    huge = nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 3)).double()
    with torch.no_grad():
        huge[0].weight.fill_(1e200)
        huge[1].weight.fill_(1e200)
    torch.save(huge, t / "overflow.pt")
    torch.save(nn.Sequential(nn.Linear(200, 121)).double(), t / "big.pt")
    torch.save({"x": torch.randn(3, 200, dtype=torch.float64)}, t / "big_x.pt")
    torch.save(nn.Sequential(nn.Linear(5, 3)).state_dict(), t / "sd.pt")
    (t / "a_file").write_text("")
    from cli.hk_cli_models import custom

    torch.save(custom(), t / "custom.pt")
    return t


CASES = {
    "missing model file": (["nope.pt", "--data", "d.pt"], "does not exist"),
    "corrupt model file": (["junk.pt", "--data", "d.pt"], "not a PyTorch file"),
    "truncated model file": (["trunc.pt", "--data", "d.pt"], "not a PyTorch file"),
    "unknown class": (
        ["custom.pt", "--data", "d.pt"],
        "needs class cli.hk_cli_models.Custom, which is not in torch.nn",
    ),
    "state dict without arch": (["sd.pt", "--data", "d.pt"], "--arch package.module:factory"),
    "block out of range": (
        ["mlp.pt", "--data", "d.pt", "--block", "7"],
        "block 7 is out of range; this model has blocks 1..3",
    ),
    "unknown block name": (
        ["mlp.pt", "--data", "d.pt", "--block", "encoder"],
        "no block contains module 'encoder'",
    ),
    "block without parameters": (
        ["noparams.pt", "--data", "d.pt", "--block", "1"],
        "has no parameters; use --wrt input",
    ),
    "data shape does not fit": (["mlp.pt", "--data", "wrong_shape.pt"], "does not fit block 1"),
    "missing data file": (["mlp.pt", "--data", "none.pt"], "does not exist"),
    "labels missing for exact": (
        ["mlp.pt", "--data", "dx.npz", "--kind", "exact"],
        "--kind exact needs labels",
    ),
    "labels missing for loss": (
        ["mlp.pt", "--data", "dx.npz", "--kind", "loss", "--block", "model"],
        "--kind loss needs labels",
    ),
    "NaN in weights": (["nan.pt", "--data", "d.pt"], "holds NaN/Inf"),
    "Inf in activations": (["overflow.pt", "--data", "d.pt"], "produces NaN/Inf activations"),
    "top larger than dimension": (
        ["mlp.pt", "--data", "d.pt", "--block", "3", "--top", "16"],
        "use --top and --bottom at most 15",
    ),
    "non-differentiable block": (
        ["--arch", "cli.hk_cli_models:detached", "--data", "d.pt", "--block", "1"],
        "is not differentiable",
    ),
    "json folder missing": (
        ["mlp.pt", "--data", "d.pt", "--json", "no/such/dir/out.json"],
        "does not exist; create it first",
    ),
    "json under a file": (
        ["mlp.pt", "--data", "d.pt", "--json", "a_file/out.json"],
        "does not exist; create it first",
    ),
    "json is a directory": (
        ["mlp.pt", "--data", "d.pt", "--json", "."],
        "is a folder; give a file name",
    ),
    "dense too large": (
        ["big.pt", "--data", "big_x.pt", "--method", "dense"],
        "GiB for dimension 24321",
    ),
    "no eigenvalue asked": (
        ["mlp.pt", "--data", "d.pt", "--top", "0", "--bottom", "0"],
        "at least one eigenvalue",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_error(
    case: str, files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args, message = CASES[case]
    monkeypatch.chdir(files)
    before = set(files.rglob("*"))
    json_args = [] if "--json" in args else ["--json", "out.json"]
    rc = main(["spectrum", *args, *json_args])
    err = capsys.readouterr()
    assert rc == 2
    assert err.err.startswith("hessiankit spectrum: error: ") and err.err.count("\n") == 1, err.err
    assert message in err.err
    assert "Traceback" not in err.err and err.out == ""
    assert set(files.rglob("*")) == before  # no output file, no temporary left behind


def test_payload_pickle_never_runs(
    hk: Run, files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = files / "PWNED"
    torch.save(_Payload(marker), files / "evil.pt")
    torch.save({"x": torch.zeros(2, 5), "y": _Payload(marker)}, files / "evil_data.pt")
    r = hk("spectrum", "evil.pt", "--data", "d.pt", "--json", "out.json")
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == (
            "hessiankit spectrum: error: refusing to load evil.pt: its pickle calls posix.system when "
            "loaded (code, not a model or data); do not use this file"
        )
        or "calls nt.system" in r.stderr
    )
    monkeypatch.chdir(files)
    for cmd in (
        ["blocks", "evil.pt", "--data", "d.pt"],
        ["spectrum", "mlp.pt", "--data", "evil_data.pt"],
    ):
        assert main(cmd) == 2
        assert "refusing to load evil" in capsys.readouterr().err
    assert not marker.exists() and not (files / "out.json").exists()
    # The payload is real: --trust-pickle (documented as running the file's code) runs it.
    assert main(["spectrum", "evil.pt", "--trust-pickle", "--data", "d.pt"]) == 2
    assert "evil.pt holds a int object, not a model" in capsys.readouterr().err
    assert marker.exists()


def test_missing_data_package_names_the_install_command(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(files)
    monkeypatch.setenv("HESSIANKIT_FASHION_MNIST", str(files / "nowhere"))
    sources._fashion_mnist.cache_clear()
    try:
        assert main(["spectrum", "--dataset", "fashion-mnist", "--json", "o.json"]) == 2
    finally:
        sources._fashion_mnist.cache_clear()
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and not (files / "o.json").exists()


@pytest.mark.slow  # a whole spectrum command on the default network and data
def test_default_data_falls_back_with_a_note(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(files)
    monkeypatch.setenv("HESSIANKIT_FASHION_MNIST", str(files / "nowhere"))
    sources._fashion_mnist.cache_clear()
    try:
        assert main(["spectrum", "--block", "4", "--top", "1", "--json", "o.json"]) == 0
    finally:
        sources._fashion_mnist.cache_clear()
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and "note: using --dataset" in err
    import json

    assert json.loads((files / "o.json").read_text())["dataset"] in ("mnist", "digits")


def test_internal_errors_keep_their_traceback(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hessiankit.pipeline.solve as solve  # where every command's per-block solve calls spectrum()

    def boom(*a: object, **k: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.chdir(files)
    monkeypatch.setattr(solve, "spectrum", boom)
    with pytest.raises(ZeroDivisionError):
        main(["spectrum", "mlp.pt", "--data", "d.pt"])
