"""run_diagnostics against dense references, and its section in the HTML/Markdown report."""

from __future__ import annotations

import pytest

import json
from pathlib import Path

import torch

import hessiankit as hk
from diagnostics.dense import gradient, loss_hessian, mlp, top_eigh
from hessiankit.diagnostics import Diagnostics, run_diagnostics
from hessiankit.report import (
    Report,
    analyse_blocks,
    render_html,
    run_settings,
    to_json,
    write_markdown,
)


def _run() -> tuple[Diagnostics, torch.nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(12)
    net = mlp(3, seed=12)
    x, y = torch.randn(18, 5, dtype=torch.float64), torch.arange(18) % 3
    d = run_diagnostics(hk.capture(net, x, y), top=3, lr=0.5, num_steps=40, tol=1e-10, seed=0)
    return d, net, x, y


@pytest.mark.slow
def test_run_diagnostics_matches_dense_and_renders(tmp_path: Path) -> None:
    d, net, x, y = _run()
    # the gradient's share, from the loss Hessian's eigenvectors computed once (no second solve)
    H, g = loss_hessian(net, x, y, "cross-entropy"), gradient(net, x, y, "cross-entropy")
    w, V, gap = top_eigh(H, 3)
    assert gap > 1e-3
    ref = float(((V.T @ g) ** 2).sum() / g.dot(g))
    assert abs(d.gradient.fraction - ref) < 1e-6
    assert abs(d.gradient.top.eigenvalues - w.numpy()).max() < 1e-8 * float(w[0])
    assert [b.index for b in d.blocks] == [1, 2, 3]
    assert [s.index for s in d.stability] == [1, 2, 3]
    assert d.outliers is not None and d.outliers.num_classes == 3

    cap = hk.capture(net, x, y)
    analysed = analyse_blocks(cap, top=2, density=False, trace_products=6, seed=0)
    report = Report("diag", run_settings(cap, seed=0), analysed, diagnostics=d)
    page = render_html(report, figures=[])
    assert '<h2 id="diagnostics">Diagnostics beyond the paper</h2>' in page
    for title, header, rows in d.tables():
        assert all(h in page for h in header)
        assert title in page
        for cell in rows[0]:
            assert cell.replace("<", "&lt;").replace(">", "&gt;") in page
    data = json.loads(to_json(report))
    assert abs(data["diagnostics"]["gradient_overlap"]["fraction"] - ref) < 1e-6
    written = write_markdown(report, tmp_path / "r.md")
    text = written[-1].read_text()
    assert "## Diagnostics beyond the paper" in text
    assert "### Edge of stability: rate x lambda_max against 2" in text
    # a report without diagnostics has no such section
    plain = render_html(Report("plain", run_settings(cap, seed=0), analysed), figures=[])
    assert "Diagnostics beyond the paper" not in plain
