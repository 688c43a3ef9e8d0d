"""Safe model loading and atomic JSON: the allow-list, TorchScript, --arch, legacy files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hessiankit.errors import ModelLoadError
from hessiankit.io import (
    TORCH_NN_CLASSES,
    OutputError,
    check_writable,
    load_model,
    to_jsonable,
    write_json_atomic,
)


def test_every_common_layer_loads_without_unpickling_code(tmp_path: Path) -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 4),
        nn.LayerNorm(4),
        nn.GELU(),
        nn.Sequential(nn.Linear(4, 4), nn.Tanh()),
        nn.Identity(),
        nn.Linear(4, 2),
    )
    torch.save(net, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.source == "torch.nn"
    x = torch.randn(3, 1, 6, 6)
    net.eval(), loaded.model.eval()
    assert torch.equal(loaded.model(x), net(x))
    assert {nn.Conv2d, nn.BatchNorm2d, nn.Sequential, nn.LayerNorm} <= set(TORCH_NN_CLASSES)
    assert all(c.__module__.startswith("torch.nn") for c in TORCH_NN_CLASSES)


class _NotSequential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + x


def test_torchscript_sequential_and_other(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh(), nn.Linear(4, 2)))
    torch.jit.save(torch.jit.script(net), tmp_path / "s.pt")
    loaded = load_model(tmp_path / "s.pt", trust_torchscript=True)
    assert loaded.source == "torchscript" and isinstance(loaded.model, nn.Sequential)
    x = torch.randn(2, 3)
    assert torch.allclose(loaded.model(x), net(x))
    torch.jit.save(torch.jit.script(_NotSequential()), tmp_path / "o.pt")
    with pytest.raises(ModelLoadError, match="whose blocks cannot be found"):
        load_model(tmp_path / "o.pt", trust_torchscript=True)


def test_legacy_format_needs_trust(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Linear(3, 2))
    torch.save(net, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(ModelLoadError, match="legacy"):
        load_model(tmp_path / "old.pt")
    trusted = load_model(tmp_path / "old.pt", trust_pickle=True)
    assert trusted.source == "trusted pickle"
    assert torch.equal(trusted.model[0].weight, net[0].weight)


def test_arch_errors(tmp_path: Path) -> None:
    torch.save(nn.Sequential(nn.Linear(5, 4)).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match="form package.module:factory"):
        load_model(tmp_path / "sd.pt", arch="nocolon")
    with pytest.raises(ModelLoadError, match="cannot import"):
        load_model(tmp_path / "sd.pt", arch="no_such_pkg_xyz:f")
    with pytest.raises(ModelLoadError, match="has no 'nope'"):
        load_model(tmp_path / "sd.pt", arch="hessiankit.models:nope")
    with pytest.raises(ModelLoadError, match="does not fit arch="):
        load_model(tmp_path / "sd.pt", arch="hessiankit.models:default_model")
    model = load_model(None, arch="hessiankit.models:default_model").model
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, tmp_path / "ckpt.pt")
    again = load_model(tmp_path / "ckpt.pt", arch="hessiankit.models:default_model").model
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values())
    )


def test_atomic_json(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": [1.5, float("nan"), float("inf")], "b": torch.float64})
    assert json.loads(target.read_text()) == {"a": [1.5, None, None], "b": "torch.float64"}

    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("cannot serialise")

    with pytest.raises(RuntimeError):
        write_json_atomic(tmp_path / "bad.json", {"x": Bad()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no partial file, no temp
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "missing" / "x.json")
    assert to_jsonable({"k": (True, 2, 3.0)}) == {"k": [True, 2, 3.0]}
