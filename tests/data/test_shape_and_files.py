"""Fitting images to input shapes, and safe reading of data files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hessiankit.data import fit_to_shape, load_data_file, save_data_file
from hessiankit.errors import DataError


def test_fit_to_shape_rules() -> None:
    x = torch.rand(2, 1, 6, 6)
    assert fit_to_shape(x, (1, 6, 6)) is x
    rgb = fit_to_shape(x, (3, 6, 6))
    assert all(torch.equal(rgb[:, c], x[:, 0]) for c in range(3))
    torch.testing.assert_close(fit_to_shape(rgb, (1, 6, 6)), x)  # channel mean of equal channels
    const = torch.full((1, 1, 5, 7), 0.25)
    torch.testing.assert_close(fit_to_shape(const, (1, 11, 3)), torch.full((1, 1, 11, 3), 0.25))
    with pytest.raises(DataError, match="channels"):
        fit_to_shape(torch.rand(1, 2, 4, 4), (3, 4, 4))
    with pytest.raises(DataError, match="input shape"):
        fit_to_shape(x, (6, 6))


def test_pt_and_npz_round_trip(tmp_path: Path) -> None:
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    for name in ("d.pt", "d.npz"):
        save_data_file(tmp_path / name, x, y)
        x2, y2 = load_data_file(tmp_path / name)
        assert torch.equal(x2, x) and y2 is not None and torch.equal(y2, y)
        save_data_file(tmp_path / ("n" + name), x)
        assert load_data_file(tmp_path / ("n" + name))[1] is None


def test_bad_data_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data_file(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a PyTorch file"):
        load_data_file(tmp_path / "junk.pt")
    np.savez(tmp_path / "int.npz", x=np.zeros((3, 2), np.uint8))
    with pytest.raises(DataError, match="float"):
        load_data_file(tmp_path / "int.npz")
    np.savez(tmp_path / "nox.npz", inputs=np.zeros((3, 2)))
    with pytest.raises(DataError, match="no 'x'"):
        load_data_file(tmp_path / "nox.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 2))
    with pytest.raises(DataError, match="object"):
        load_data_file(tmp_path / "obj.npz")
    torch.save({"x": torch.zeros(3, 2), "y": torch.zeros(4)}, tmp_path / "len.pt")
    with pytest.raises(DataError, match="one label per sample"):
        load_data_file(tmp_path / "len.pt")
    torch.save({"x": torch.full((2, 2), float("nan"))}, tmp_path / "nan.pt")
    with pytest.raises(DataError, match="NaN"):
        load_data_file(tmp_path / "nan.pt")
    (tmp_path / "d.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="neither"):
        load_data_file(tmp_path / "d.csv")


class _Payload:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.target),))


def test_payload_in_a_data_file_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"x": torch.zeros(2, 2), "y": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="refusing to load evil.pt: its pickle calls"):
        load_data_file(tmp_path / "evil.pt")
    assert not marker.exists()
    # The payload is real: plain unpickling creates the file.
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()
