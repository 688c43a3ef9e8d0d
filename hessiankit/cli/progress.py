"""The commands' progress: a tqdm bar on a terminal, plain lines in a log, nothing with --quiet.

:func:`block_progress` gives the :class:`~hessiankit.pipeline.Progress` observer a command
passes to :func:`hessiankit.pipeline.run_blocks`:

* stderr is a terminal: a bar over the blocks and one over the current block's products
  (shown after a second, cleared when done);
* stderr is not a terminal (a log file, a pipe): one line per finished block, and one per
  minute of a long block, so a log shows that work goes on;
* ``--quiet``, or a rank other than 0 under ``torchrun``: nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from hessiankit.cli import torchrun
from hessiankit.pipeline.progress import Progress

if TYPE_CHECKING:
    from hessiankit.pipeline import BlockResult

__all__ = ["LogLines", "TerminalBars", "block_progress", "log_line", "plain_lines"]


def plain_lines(args: argparse.Namespace) -> bool:
    """Whether progress goes to stderr as plain lines: not quiet, rank 0, not a terminal."""
    return not getattr(args, "quiet", False) and torchrun.is_primary() and not sys.stderr.isatty()


def log_line(text: str) -> None:
    """One progress line on stderr, as :class:`LogLines` writes them."""
    print(f"hessiankit: {text}", file=sys.stderr, flush=True)


def block_progress(args: argparse.Namespace) -> Progress:
    """The observer for this command's run (see the module docstring)."""
    if getattr(args, "quiet", False) or not torchrun.is_primary():
        return Progress()
    if sys.stderr.isatty():
        return TerminalBars()
    return LogLines(sys.stderr)


class TerminalBars(Progress):
    """tqdm bars on stderr: the blocks, and the current block's products."""

    def __init__(self) -> None:
        self.outer: Any = None
        self.inner: Any = None

    def begin(self, num_blocks: int) -> None:
        from tqdm import tqdm

        if num_blocks > 1:
            self.outer = tqdm(
                total=num_blocks,
                desc="blocks",
                unit="block",
                delay=1.0,
                leave=False,
                file=sys.stderr,
            )

    def block_started(self, label: str, dim: int, total: int | None) -> None:
        from tqdm import tqdm

        if self.inner is not None:
            self.inner.close()
        self.inner = tqdm(
            total=total, desc=label, unit="product", delay=1.0, leave=False, file=sys.stderr
        )

    def products(self, done: int, total: int | None) -> None:
        bar = self.inner
        if bar is None:
            return
        if total and bar.total != total:
            bar.total = total
        if done > bar.n:
            bar.update(done - bar.n)  # update() honours the one-second delay

    def block_finished(self, result: BlockResult) -> None:
        if self.outer is not None:
            self.outer.update()

    def end(self) -> None:
        for bar in (self.inner, self.outer):
            if bar is not None:
                bar.close()
        self.inner = self.outer = None


class LogLines(Progress):
    """Plain lines: one per finished block, one per ``interval`` seconds of a long block."""

    def __init__(self, stream: TextIO, interval: float = 60.0) -> None:
        self.stream = stream
        self.interval = interval
        self.total_blocks = 0
        self.finished = 0
        self.label = ""
        self.started = self.last = time.monotonic()

    def _line(self, text: str) -> None:
        print(f"hessiankit: {text}", file=self.stream, flush=True)

    def begin(self, num_blocks: int) -> None:
        self.total_blocks = num_blocks

    def block_started(self, label: str, dim: int, total: int | None) -> None:
        self.label = label
        self.started = self.last = time.monotonic()

    def products(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            of = f" of {total}" if total else ""
            self._line(
                f"{self.label}: {done}{of} products so far, {_clock(now - self.started)} elapsed"
            )

    def block_finished(self, result: BlockResult) -> None:
        self.finished += 1
        r = result.spectrum
        kappa = r.condition.kappa
        if len(r.bottom) == 0:  # top only: no kappa to converge, say what was asked for
            what = "largest eigenvalues " + ("converged" if r.converged else "NOT converged")
        else:
            conv = "converged" if r.converged and r.condition.converged else "NOT converged"
            what = f"kappa {'-' if kappa is None else f'{kappa:.3e}'} ({conv})"
        self._line(
            f"[{self.finished}/{self.total_blocks}] block {result.index} ({result.name}) done: "
            f"dimension {r.dimension}, {r.method}, {r.num_products} products, "
            f"{r.seconds:.1f} s, {what}"
        )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"
