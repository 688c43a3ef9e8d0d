"""Progress bars: shown on a terminal after a second, never with --quiet or off a terminal."""

from __future__ import annotations

import argparse
import io
import sys
import time

import pytest

from hessiankit.cli import common


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("quiet", "tty", "shown"), [(False, True, True), (True, True, False), (False, False, False)]
)
def test_progress_bar_visibility(
    quiet: bool, tty: bool, shown: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with common.progress(argparse.Namespace(quiet=quiet), 100, "block 1", unit="product") as bar:
        bar(10, 100)  # before the one-second delay: nothing yet
        assert stream.getvalue() == ""
        time.sleep(1.05)
        bar(60, 100)
    assert ("block 1" in stream.getvalue() and "60/100" in stream.getvalue()) is shown


def test_block_progress_bars_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from hessiankit.cli.progress import LogLines, TerminalBars, block_progress
    from hessiankit.pipeline import Progress

    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    obs = block_progress(argparse.Namespace(quiet=False))
    assert isinstance(obs, TerminalBars)
    obs.begin(2)
    obs.block_started("block 1 (features.0)", 100, 100)
    obs.products(10, 100)
    assert stream.getvalue() == ""  # the one-second delay
    time.sleep(1.05)
    obs.products(60, 100)
    obs.end()
    assert "block 1 (features.0)" in stream.getvalue() and "60/100" in stream.getvalue()
    assert type(block_progress(argparse.Namespace(quiet=True))) is Progress  # silent
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(block_progress(argparse.Namespace(quiet=False)), LogLines)


def test_finished_line_of_a_top_only_run_says_what_converged() -> None:
    """``--bottom 0`` computes no kappa: the line reports the largest eigenvalues' convergence
    (they are converged here, against the diagonal's known values), not kappa's."""
    import numpy as np
    import torch

    import hessiankit as hk
    from hessiankit.cli.progress import LogLines
    from hessiankit.operators import MatrixOperator
    from hessiankit.pipeline.run import BlockResult

    op = MatrixOperator(torch.diag(torch.arange(1.0, 31.0, dtype=torch.float64)))
    lines = []
    for bottom in (0, 1):
        spec = hk.spectrum(op, top=2, bottom=bottom, method="lanczos", tol=1e-10, seed=0)
        np.testing.assert_allclose(spec.top.eigenvalues, [30.0, 29.0], rtol=1e-9)
        stream = io.StringIO()
        obs = LogLines(stream)
        obs.begin(1)
        obs.block_started("block 1", op.dim, None)
        obs.block_finished(BlockResult(1, "0", spec, ()))
        lines.append(stream.getvalue())
    assert "largest eigenvalues converged" in lines[0] and "kappa" not in lines[0], lines[0]
    assert "kappa 3.000e+01 (converged)" in lines[1], lines[1]


@pytest.mark.parametrize("bottom", [0, 1])
def test_block_done_line_says_converged_for_a_top_only_request(bottom: int) -> None:
    # A top-only request has no kappa: the line reports the asked eigenvalues' convergence,
    # checked here against eigh of the same (well-separated, diagonal) matrix.
    import torch

    from hessiankit.cli.progress import LogLines
    from hessiankit.operators import MatrixOperator
    from hessiankit.pipeline import BlockResult
    from hessiankit.solvers import spectrum

    d = torch.cat([torch.tensor([0.1]), torch.linspace(1.0, 2.0, 398), torch.tensor([10.0])])
    A = torch.diag(d.to(torch.float64))
    s = spectrum(MatrixOperator(A, is_psd=True), top=1, bottom=bottom, method="lanczos", tol=1e-8)
    assert float(s.top.eigenvalues[0]) == pytest.approx(float(torch.linalg.eigvalsh(A)[-1]))
    stream = io.StringIO()
    obs = LogLines(stream)
    obs.begin(1)
    obs.block_finished(BlockResult(1, "fc", s))
    line = stream.getvalue()
    assert "converged" in line and "NOT" not in line
