"""Fuzzing the loaders: randomly mutated model and data files (bit flips, truncations, header
and zip-directory edits, from a fixed seed) either load or raise one HessiankitError; nothing
else escapes, nothing is written, nothing from the file runs, memory stays under a cap.

Most cases call the loaders in-process (milliseconds each); a few go through the installed
command (``slow``) to check the exit status and that no traceback reaches the user.
"""

from __future__ import annotations

import resource
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cli.conftest import _env, hessiankit_command
from hessiankit.data import load_data_file
from hessiankit.errors import HessiankitError
from hessiankit.io import load_model

SEED = 20181203
CASES_PER_SEED_FILE = 40  # 7 seed files: 280 mutated files
MEMORY_CAP_MIB = 512  # growth of the peak resident set over all cases
INPUT_CAP = 64 * 2**20  # max_input_bytes for the fuzzed files: a declared size above is refused


class _Marker:
    """A payload that would create ``marker`` if it ever ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def _seed_files(folder: Path) -> dict[str, bytes]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    torch.save(net, folder / "model.pt")
    torch.save(net.state_dict(), folder / "sd.pt")
    torch.save(net, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"x": torch.randn(6, 5), "y": torch.arange(6)}, folder / "data.pt")
    torch.save({"x": torch.randn(6, 5), "y": _Marker(folder / "MARKER")}, folder / "payload.pt")
    np.savez(
        folder / "data.npz", x=np.random.default_rng(0).standard_normal((6, 5)), y=np.arange(6)
    )
    np.savez_compressed(folder / "dataz.npz", x=np.zeros((40, 5)), y=np.arange(40))
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    b = bytearray(data)
    kind = rng.choice(["flip", "truncate", "header", "zipdir", "insert"])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == "header":
        n = int(rng.integers(1, 65))
        b[:n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == "zipdir":
        # edit a size, count or offset field of the central directory (or any 4 bytes near
        # the end): the declared sizes lie about the contents
        at = data.rfind(b"PK\x01\x02")
        i = (at + int(rng.choice([20, 24, 42]))) if at >= 0 else max(0, len(b) - 22)
        value = int(rng.choice([0, 1, 2**31 - 1, 2**32 - 1, int(rng.integers(2**32))]))
        b[i : i + 4] = struct.pack("<I", value)
    else:
        i = int(rng.integers(len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 33)), dtype=np.uint8).tobytes()
    return str(kind), bytes(b)


def _loader(name: str) -> Callable[[Path], object]:
    if name.startswith(("model", "legacy")):
        return lambda p: load_model(p, max_input_bytes=INPUT_CAP)
    if name == "sd.pt":
        return lambda p: load_model(p, arch="tests.io.test_fuzz:_arch", max_input_bytes=INPUT_CAP)
    return lambda p: load_data_file(p, max_input_bytes=INPUT_CAP)


def _arch() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.filterwarnings("ignore")
def test_mutated_files_load_or_raise_one_user_error(tmp_path: Path) -> None:
    seeds = _seed_files(tmp_path)
    rng = np.random.default_rng(SEED)
    work = tmp_path / "fuzz"
    work.mkdir()
    start = _peak_mib()
    outcomes: dict[str, int] = {"loaded": 0, "refused": 0}
    cases = 0
    for name, data in seeds.items():
        for i in range(CASES_PER_SEED_FILE):
            kind, mutated = _mutate(data, rng)
            path = work / f"{i:03d}_{kind}_{name}"
            path.write_bytes(mutated)
            try:
                _loader(name)(path)
            except HessiankitError as exc:
                assert "\n" not in str(exc).strip(), (path.name, str(exc))
                outcomes["refused"] += 1
            except Exception as exc:  # noqa: BLE001 - the property under test
                pytest.fail(f"{path.name}: {type(exc).__name__}: {exc}")
            else:
                outcomes["loaded"] += 1
            cases += 1
    assert cases >= 200
    assert outcomes["refused"] > cases // 2 and outcomes["loaded"] > 0  # both paths exercised
    assert not (tmp_path / "MARKER").exists()  # no mutation made the payload run
    written = {p.name for p in tmp_path.rglob("*")} - set(seeds) - {"fuzz"}
    assert written == {p.name for p in work.iterdir()}  # nothing but the fuzzed inputs
    assert _peak_mib() - start < MEMORY_CAP_MIB


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_mutated_files_through_the_command(tmp_path: Path) -> None:
    seeds = _seed_files(tmp_path)
    rng = np.random.default_rng(SEED + 1)
    for i in range(4):
        _, model = _mutate(seeds["model.pt"], rng)
        _, data = _mutate(seeds["data.npz"], rng)
        (tmp_path / "m.pt").write_bytes(model)
        (tmp_path / "d.npz").write_bytes(data)
        before = sorted(p.name for p in tmp_path.iterdir())
        r = subprocess.run(
            [*hessiankit_command(), "blocks", "m.pt", "--data", "d.npz", "--json", "o.json"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert r.returncode in (0, 2), (i, r.stderr)
        assert "Traceback" not in r.stderr, (i, r.stderr)
        if r.returncode == 2:
            assert (
                r.stderr.count("\n") == 1 and sorted(p.name for p in tmp_path.iterdir()) == before
            )
