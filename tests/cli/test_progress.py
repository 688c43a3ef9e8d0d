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
