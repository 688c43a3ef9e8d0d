"""Running the installed ``hessiankit`` executable, and the files the CLI tests feed it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]


def hessiankit_command() -> list[str]:
    """The installed executable: beside this interpreter, else on PATH, else ``-m hessiankit``."""
    beside = Path(sys.executable).parent / "hessiankit"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("hessiankit")
    return [found] if found else [sys.executable, "-m", "hessiankit"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    # tests/ for the --arch factories (cli.hk_cli_models), the worktree for `-m hessiankit`.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def hk(tmp_path: Path) -> Run:
    """``hk("spectrum", "m.pt", ...)`` runs the executable in ``tmp_path``."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*hessiankit_command(), *args],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


@pytest.fixture
def mlp_files(tmp_path: Path) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """mlp.pt (torch.save of torch.nn classes), d.pt with x, y; dx.npz with x only."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)
    ).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    torch.save(net, tmp_path / "mlp.pt")
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    import numpy as np

    np.savez(tmp_path / "dx.npz", x=x.numpy())
    return net, x, y
