"""What a run tells an observer while it works (the pipeline itself prints nothing).

:class:`Progress` has a no-op method per event; the CLI subclasses it with a tqdm bar on a
terminal and one plain line per finished block (and per minute of a long one) in a log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hessiankit.pipeline.run import BlockResult

__all__ = ["Progress"]


class Progress:
    """Observer of :func:`hessiankit.pipeline.run_blocks`; override what you need."""

    def begin(self, num_blocks: int) -> None:
        """The run will solve ``num_blocks`` blocks."""

    def block_started(self, label: str, dim: int, total: int | None) -> None:
        """Work on ``label`` (``"block 3 (features.6)"``, or several blocks solved together)
        begins: an operator of dimension ``dim``, ``total`` products expected when known."""

    def products(self, done: int, total: int | None) -> None:
        """``done`` products of the current work so far (``total`` when known)."""

    def block_finished(self, result: BlockResult) -> None:
        """A block's result is ready."""

    def end(self) -> None:
        """The run is over (also after an error)."""
