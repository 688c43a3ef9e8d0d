"""Checks that a written figure file is a valid PNG or SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    img = mpimg.imread(path)  # decodes every chunk
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def assert_valid_svg(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg"), f"{path} root is {root.tag}"
    assert "http" not in "".join(
        v for el in root.iter() for k, v in el.attrib.items() if k.endswith("href")
    ), "SVG references an external resource"


def assert_written(paths: list[Path]) -> None:
    suffixes = sorted(p.suffix for p in paths)
    assert suffixes == [".png", ".svg"]
    for p in paths:
        (assert_valid_png if p.suffix == ".png" else assert_valid_svg)(p)
