"""The HTML report of a small model: every block's row with the right numbers, every figure,
the JSON twin, and no external resource; the Markdown variant with its PNGs."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from plots.files import assert_valid_png
from references import dense_reference

import hessiankit as hk
from hessiankit.report import (
    Report,
    analyse_blocks,
    render_html,
    run_settings,
    to_json,
    write_markdown,
)
from hessiankit.report.tables import fmt

SLICES = {1: (0, 4), 2: (4, 5)}  # conv_bn blocks as slices of the Sequential

pytestmark = pytest.mark.slow  # each test runs a whole analysis (seconds each)


class _Page(HTMLParser):
    """Collects tags with their attributes, table rows by id, and raw text of <script>/<style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: dict[str, list[str]] = {}
        self.raw: dict[str, str] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._raw: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "tr" and a.get("id"):
            self._row = a["id"]
            self.rows[self._row] = []
        elif tag == "td" and self._row:
            self._cell = []
        elif tag in ("script", "style"):
            self._raw = a.get("id") or tag
            self.raw[self._raw] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag in ("script", "style"):
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._raw is not None:
            self.raw[self._raw] += data


@pytest.fixture(scope="module")
def report():
    import torch
    from conftest import randomise_bn
    from torch import nn

    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 3),
    ).double()
    randomise_bn(net, 1)
    x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    cap = hk.capture(net, x, y, bn="train")
    blocks = analyse_blocks(cap, top=4, bottom=1, density_probes=3, density_steps=20, seed=0)
    settings = run_settings(cap, data="random <b>x</b>", seed=0, wrt="weights", kind="gauss-newton")
    rep = Report("conv-bn </script><script>alert(1)</script>", settings, blocks)
    refs = {
        b: np.linalg.eigvalsh(
            dense_reference(
                net, lo, hi, x, y, bn="train", wrt="weights", kind="gauss-newton"
            ).numpy()
        )
        for b, (lo, hi) in SLICES.items()
    }
    return rep, refs, render_html(rep)


def test_every_block_has_a_row_with_the_reference_numbers(report) -> None:
    rep, refs, text = report
    page = _Page()
    page.feed(text)
    assert len(rep.blocks) == 2
    for b in rep.blocks:
        cells = page.rows[f"row-block-{b.index}"]
        ev = refs[b.index]
        c = b.spectrum.condition
        nonzero = ev[np.abs(ev) > c.threshold]
        assert cells[0] == str(b.index) and cells[2] == str(ev.size)
        assert cells[3].split(" ± ")[0] == fmt(ev[-1]) == fmt(c.lambda_max)
        assert cells[4] == fmt(nonzero.min())
        assert cells[5] == f"{nonzero.size} / {ev.size - nonzero.size}"
        assert float(cells[6]) == pytest.approx(ev[-1] / nonzero.min(), rel=1e-3)  # 4 digits shown
        assert cells[7].startswith(f"{fmt(ev.sum())} exact")
        assert cells[8] == "yes, yes, yes"


def test_every_figure_is_embedded_and_valid(report, tmp_path: Path) -> None:
    rep, _, text = report
    page = _Page()
    page.feed(text)
    figures = {a["id"]: a for t, a in page.tags if t == "figure"}
    want = {"fig-overview"} | {
        f"fig-block-{b.index}-{k}" for b in rep.blocks for k in ("eigenvalues", "density")
    }
    assert set(figures) == want
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) == len(want)
    for i, a in enumerate(imgs):
        src = a["src"] or ""
        assert src.startswith("data:image/png;base64,")
        p = tmp_path / f"{i}.png"
        p.write_bytes(base64.b64decode(src.split(",", 1)[1], validate=True))
        assert_valid_png(p)
        assert a["alt"]


def test_the_page_needs_no_external_resource(report) -> None:
    _, _, text = report
    page = _Page()
    page.feed(text)
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base")
        for key in ("src", "href", "action", "data", "poster", "srcset"):
            v = attrs.get(key)
            if v is not None:
                assert v.startswith(("data:", "#")), f"<{tag} {key}={v[:40]}>"
        if tag == "script":
            assert attrs.get("type") == "application/json" and "src" not in attrs
    css = page.raw["style"]
    assert "url(" not in css and "@import" not in css
    csp = [
        a for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")
    # user strings are escaped: the title cannot close the JSON element or open a script
    assert text.count("<script") == 1 and "<b>x</b>" not in text


def test_json_twin_holds_every_number_at_full_precision(report) -> None:
    rep, refs, text = report
    page = _Page()
    page.feed(text)
    data = json.loads(page.raw["hessiankit-data"])
    assert data == json.loads(to_json(rep))
    assert data["settings"]["bn"] == "train" and data["settings"]["seed"] == 0
    assert set(data["settings"]["versions"]) >= {"hessiankit", "torch", "numpy", "python"}
    for b, d in zip(rep.blocks, data["blocks"]):
        assert d["spectrum"]["lambda_max"] == b.spectrum.condition.lambda_max
        assert d["spectrum"]["lambda_max"] == pytest.approx(refs[b.index][-1], rel=1e-10)
        assert d["spectrum"]["eigenvalues"] == b.spectrum.top.eigenvalues.tolist()
        assert (
            d["trace"]["trace"] == b.trace.trace
            and d["trace"]["trace_std_error"] == b.trace.std_error
        )
        assert d["density"]["linear"]["density"] == b.density.linear.density.tolist()
        assert d["density"]["nodes"] == [t.tolist() for t in b.density.nodes]
    link = [a for t, a in page.tags if t == "a" and a.get("download")]
    assert json.loads(base64.b64decode(link[0]["href"].split(",", 1)[1])) == data


def test_markdown_writes_pngs_beside_it(report, tmp_path: Path) -> None:
    rep, _, _ = report
    paths = write_markdown(rep, tmp_path / "out" / "report.md")
    md = (tmp_path / "out" / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 1 + 2 * len(rep.blocks)
    for link in links:
        assert_valid_png(tmp_path / "out" / link)
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == json.loads(to_json(rep))
    for b in rep.blocks:
        assert re.search(rf"^\| {b.index} \| ", md, re.MULTILINE)
    assert paths[-1].name == "report.md"


def test_a_smallest_eigenvalue_near_the_null_threshold_is_flagged() -> None:
    import torch

    from hessiankit.report.analysis import SUSPECT_FACTOR, _warnings

    ev = torch.tensor([0.0, 0.0, 3e-14, 0.5, 1.0], dtype=torch.float64)
    r = hk.spectrum(hk.MatrixOperator(torch.diag(ev), is_psd=True), top=1, bottom=1)
    assert r.condition.lambda_min_nonzero == pytest.approx(3e-14)
    assert r.condition.threshold < 3e-14 < SUSPECT_FACTOR * r.condition.threshold
    (w,) = _warnings(r)
    assert "rounding-level zero" in w
    clean = hk.spectrum(
        hk.MatrixOperator(torch.diag(ev + torch.tensor([0, 0, 1e-3, 0, 0])), is_psd=True),
        top=1,
        bottom=1,
    )
    assert _warnings(clean) == ()
