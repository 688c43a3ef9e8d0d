"""Hostile model and data files, built for real in each test: nothing in them may run, allocate
or write before the user opts in, and every refusal is one HessiankitError naming the reason."""

from __future__ import annotations

import io
import os
import pickle
import resource
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hessiankit.data import load_data_file
from hessiankit.errors import DataError, ModelLoadError
from hessiankit.io import is_payload, load_model, read_torch_file
from hessiankit.io.picklescan import scan_pickle
from hessiankit.io.sniff import is_torchscript, torchscript_hazards


class _SavesOnLoad(nn.Module):
    """A scripted layer whose ``__setstate__`` calls ``torch.save`` (``aten::save``) to a path
    stored in the archive: loading the archive writes that file."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)

    @torch.jit.export
    def __getstate__(self) -> tuple[nn.Linear, bool, str]:
        return (self.lin, self.training, self.marker)

    @torch.jit.export
    def __setstate__(self, state: tuple[nn.Linear, bool, str]) -> None:
        self.lin = state[0]
        self.training = state[1]
        self.marker = state[2]
        torch.save([1.0], self.marker)


class _MapsFile(nn.Module):
    """A scripted layer whose forward maps a file of the archive's choosing."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file("/etc/hostname", shared=False, size=1, dtype=torch.uint8)
        return self.lin(x) + t.sum().to(x.dtype) * 0


def _evil_archive(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    scripted = torch.jit.script(nn.Sequential(_SavesOnLoad(str(marker))))
    path = tmp_path / "evil_ts.pt"
    torch.jit.save(scripted, path)
    marker.unlink(missing_ok=True)  # scripting does not run __setstate__; make sure
    return path, marker


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_is_refused_without_running_its_code(tmp_path: Path) -> None:
    path, marker = _evil_archive(tmp_path)
    assert is_torchscript(path)
    with pytest.raises(ModelLoadError, match="TorchScript archive") as info:
        load_model(path)
    message = str(info.value)
    assert "__setstate__" in message and "aten::save" in message
    assert "trust_torchscript=True" in message and "\n" not in message
    # the data and state-dict readers refuse it too (torch.load would dispatch to jit.load)
    with pytest.raises(DataError, match="TorchScript"):
        read_torch_file(path, error=DataError)
    with pytest.raises(ModelLoadError, match="TorchScript"):
        load_model(path, arch="hessiankit.models:default_model")
    with pytest.raises(ModelLoadError, match="TorchScript"):
        load_model(path, trust_pickle=True)  # trusting pickles is not trusting TorchScript
    assert not marker.exists()
    # The payload is real: with the opt-in, torch.jit.load runs __setstate__, which writes.
    with pytest.raises(ModelLoadError, match="blocks cannot be found"):
        load_model(path, trust_torchscript=True)  # a scripted custom layer holding a child
    assert marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_hazards_are_read_from_the_code_text(tmp_path: Path) -> None:
    torch.jit.save(torch.jit.script(nn.Sequential(_MapsFile())), tmp_path / "maps.pt")
    assert any("from_file" in h for h in torchscript_hazards(tmp_path / "maps.pt"))
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(3, 2))), tmp_path / "plain.pt")
    assert torchscript_hazards(tmp_path / "plain.pt") == []
    with pytest.raises(ModelLoadError, match="forward runs its own code"):
        load_model(tmp_path / "plain.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "eager.pt")
    assert not is_torchscript(tmp_path / "eager.pt")


class _Calls:
    """Pickles as ``func(*args)``: what a crafted file can ask the unpickler to call."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (self.func, self.args)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_allocation_bomb_is_refused_before_unpickling(tmp_path: Path) -> None:
    # 1.2 KB on disk; torch's weights-only unpickler would call nn.Linear(20000, 20000)
    # (allow-listed class, so REDUCE on it is allowed): 1.6 GB of float32 and its init.
    path = tmp_path / "bomb.pt"
    torch.save(_Calls(nn.Linear, 20000, 20000), path)
    assert path.stat().st_size < 4096
    scan = scan_pickle_of(path)
    assert "torch.nn.modules.linear.Linear" in scan
    before = _maxrss_mib()
    with pytest.raises(ModelLoadError, match="calls torch.nn.modules.linear.Linear with arguments"):
        load_model(path)
    with pytest.raises(DataError, match="with arguments"):
        read_torch_file(path, error=DataError)
    assert _maxrss_mib() - before < 200  # nothing near 1.6 GB was allocated
    # A legacy tensor constructor with sizes is refused the same way.
    torch.save({"x": _Calls(torch.FloatTensor, 20000, 20000)}, tmp_path / "t.pt")
    with pytest.raises(DataError, match="torch.FloatTensor"):
        load_data_file(tmp_path / "t.pt")


def scan_pickle_of(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        return scan_pickle(io.BytesIO(z.read(name))).unexpected_calls()


def test_real_models_scan_clean(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    torch.save(net, tmp_path / "m.pt")
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    torch.save(net, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    for name in ("m.pt", "sd.pt"):
        assert scan_pickle_of(tmp_path / name) == []
    loaded = load_model(tmp_path / "m.pt").model
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values())
    )
    # the scanner agrees with pickletools on what a plain pickle calls
    data = pickle.dumps({"a": [1, 2, {3}], "b": (4.0, "s")}, protocol=2)
    assert {c for c in scan_pickle(io.BytesIO(data)).calls} <= {"__builtin__.set"}


def test_declared_size_cap(tmp_path: Path) -> None:
    # 4 MB of zeros compress to a few KB; the header declares the shape.
    x = np.zeros((1000, 500), dtype=np.float64)
    np.savez_compressed(tmp_path / "z.npz", x=x)
    assert (tmp_path / "z.npz").stat().st_size < 100_000
    with pytest.raises(DataError, match="declares 3.81 MiB of arrays, over the 1 MiB"):
        load_data_file(tmp_path / "z.npz", max_input_bytes=2**20)
    got, _ = load_data_file(tmp_path / "z.npz", max_input_bytes=8 * 2**20)
    assert torch.equal(got, torch.from_numpy(x))
    torch.save(nn.Linear(300, 300), tmp_path / "m.pt")
    with pytest.raises(ModelLoadError, match="over the 0.1 MiB input limit; raise max_input_bytes"):
        load_model(tmp_path / "m.pt", max_input_bytes=2**20 // 10)
    assert load_model(tmp_path / "m.pt").source == "torch.nn"


def test_huge_npy_header_is_refused_without_reading(tmp_path: Path) -> None:
    # a valid .npy header declaring 10^12 float64 (8 TB), followed by 16 bytes of data
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(tmp_path / "h.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue() + b"\0" * 16)
    with pytest.raises(DataError, match="declares 7.45e\\+03 GiB of arrays"):
        load_data_file(tmp_path / "h.npz")


@pytest.mark.parametrize(
    ("dtype", "why"),
    [
        (np.longdouble, "long double"),
        (np.dtype([("a", "f8"), ("b", "i4")]), "structured"),
        (np.dtype("U3"), "strings"),
        (np.complex128, "complex"),
    ],
)
def test_npz_dtypes_torch_lacks_are_named(tmp_path: Path, dtype: object, why: str) -> None:
    if dtype is np.longdouble and np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is double on this platform")
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2), dtype=dtype))
    with pytest.raises(DataError, match=why):
        load_data_file(tmp_path / "d.npz")


def test_big_endian_npz_is_converted(tmp_path: Path) -> None:
    x = np.arange(12, dtype=">f8").reshape(4, 3) / 7
    y = np.arange(4, dtype=">i8")
    np.savez(tmp_path / "be.npz", x=x, y=y)
    gx, gy = load_data_file(tmp_path / "be.npz")
    assert gx.dtype == torch.float64 and gy is not None and gy.dtype == torch.int64
    assert np.array_equal(gx.numpy(), x.astype("<f8")) and np.array_equal(gy.numpy(), y)


def test_meta_and_sparse_tensors_are_named_tied_ones_load(tmp_path: Path) -> None:
    torch.save({"x": torch.empty(4, 2, device="meta")}, tmp_path / "meta.pt")
    torch.save({"x": torch.randn(4, 2).to_sparse()}, tmp_path / "sparse.pt")
    with pytest.raises(DataError, match="meta device"):
        load_data_file(tmp_path / "meta.pt")
    with pytest.raises(DataError, match="sparse"):
        load_data_file(tmp_path / "sparse.pt")
    with torch.device("meta"):
        meta_model = nn.Sequential(nn.Linear(2, 3))
    torch.save(meta_model, tmp_path / "meta_model.pt")
    with pytest.raises(ModelLoadError, match="'0.weight' is on the meta device"):
        load_model(tmp_path / "meta_model.pt")
    # tied weights are supported (tests/blocks/test_tied.py): the safe loader keeps the tie
    tied = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    tied[2].weight = tied[0].weight
    torch.save(tied, tmp_path / "tied.pt")
    loaded = load_model(tmp_path / "tied.pt").model
    assert loaded[2].weight is loaded[0].weight
    assert torch.equal(loaded[0].weight, tied[0].weight)


def test_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save(nn.Linear(2, 2), tmp_path / "m.pt")
    torch.save({"x": torch.zeros(2, 2)}, tmp_path / "d.pt")
    for name in ("m.pt", "d.pt"):
        (tmp_path / name).chmod(0)
    if os.geteuid() == 0:  # root reads any file: deny the reads as the kernel would
        import builtins

        real_open = builtins.open

        def denying_open(file: object, *args: object, **kwargs: object) -> object:
            if Path(str(file)).parent == tmp_path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(builtins, "open", denying_open)
    with pytest.raises(ModelLoadError, match="cannot read model file m.pt .*permissions"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(DataError, match="cannot read data file d.pt .*permissions"):
        load_data_file(tmp_path / "d.pt")
    monkeypatch.undo()
    with pytest.raises(ModelLoadError, match="is not a regular file"):
        load_model(tmp_path)


def test_junk_is_sniffed_from_its_first_bytes(tmp_path: Path) -> None:
    # A sparse 1 GiB file: refusing it must not read it (the read would take seconds and RAM).
    junk = tmp_path / "junk.pt"
    with open(junk, "wb") as f:
        f.write(b"JUNK")
        f.truncate(2**30)
    before = _maxrss_mib()
    with pytest.raises(ModelLoadError, match="not a PyTorch file"):
        load_model(junk, max_input_bytes=2**31)
    assert _maxrss_mib() - before < 100


@pytest.mark.parametrize(
    "name",
    [
        "timeit.timeit",
        "cProfile.run",
        "torch.hub.load",
        "torch.jit.load",
        "numpy.load",
        "torch.utils.cpp_extension.load_inline",
        "os.system",
        "builtins.eval",
    ],
)
def test_callables_are_code_not_classes(name: str) -> None:
    assert is_payload(name)


def test_classes_and_rebuild_helpers_are_not_code() -> None:
    for name in (
        "mymodels.Net",
        "torch.nn.modules.linear.Linear",
        "torch._utils._rebuild_tensor_v2",
        "collections.OrderedDict",
    ):
        assert not is_payload(name)


@pytest.mark.parametrize(
    "func",
    [
        pytest.param(("timeit", "timeit"), id="timeit.timeit"),
        pytest.param(("cProfile", "run"), id="cProfile.run"),
        pytest.param(("torch.hub", "load"), id="torch.hub.load"),
        pytest.param(("numpy", "load"), id="numpy.load"),
    ],
)
def test_payload_callables_are_named_as_code(tmp_path: Path, func: tuple[str, str]) -> None:
    import importlib

    marker = tmp_path / "MARKER"
    target = getattr(importlib.import_module(func[0]), func[1])
    torch.save({"x": _Calls(target, str(marker))}, tmp_path / "p.pt")
    with pytest.raises(DataError) as info:
        load_data_file(tmp_path / "p.pt")
    message = str(info.value)
    assert f"calls {func[0]}.{func[1]}" in message or f"calls {target.__module__}." in message
    assert "code" in message and "trust" not in message
    assert not marker.exists()


class MainLike(nn.Module):
    """Stands in for a class defined in a training script's ``__main__``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_class_from_main_says_how_to_proceed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MainLike, "__module__", "__main__")
    import __main__

    monkeypatch.setattr(__main__, "MainLike", MainLike, raising=False)
    torch.save(MainLike(), tmp_path / "m.pt")
    monkeypatch.delattr(__main__, "MainLike")
    for trust in (False, True):
        with pytest.raises(ModelLoadError) as info:
            load_model(tmp_path / "m.pt", trust_pickle=trust)
        message = str(info.value)
        assert "__main__.MainLike" in message and "script that saved it" in message
        assert "arch=" in message and "state_dict" in message
