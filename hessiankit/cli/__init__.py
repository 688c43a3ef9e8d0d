"""The ``hessiankit`` command line.

Commands (one module each in this package):

``hessiankit blocks [MODEL]``
    the block table: index, module paths, parameters, input/output shapes, BN, skip.
``hessiankit spectrum [MODEL] --block B``
    extreme eigenvalues, residuals and condition number of a block's local Hessian.
``hessiankit density [MODEL] --block B``
    the spectral density of a block's local Hessian by stochastic Lanczos quadrature.
``hessiankit report [MODEL] [--blocks all] [--out report.html]``
    a self-contained HTML (or Markdown) report: per-block table, plots, settings, JSON.

Without ``MODEL`` both run on the built-in small VGG with BN and Fashion-MNIST.

Under ``torchrun --nproc_per_node R -m hessiankit ...`` the ranks share the samples and
all-reduce every product; rank 0 prints and writes (:mod:`hessiankit.cli.torchrun`).

Adding a command
----------------
Write ``hessiankit/cli/<name>.py`` with four names::

    NAME = "density"                       # the sub-command
    HELP = "one line for `hessiankit -h`"
    def add_arguments(p: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # 0 on success

reuse the shared options and helpers of :mod:`hessiankit.cli.common` (``add_model_arguments``,
``add_data_arguments``, ``add_compute_arguments``, ``add_output_arguments``, ``build_operators``
and the ``*_options`` mappers onto :mod:`hessiankit.pipeline`, ``prepare_json``/``emit_json``,
``progress``, ``format_table``) and :func:`hessiankit.cli.progress.block_progress`, and add the
module name to :data:`COMMANDS` below. Raise :class:`~hessiankit.errors.HessiankitError` (or a
subclass) for anything the user can fix: :func:`main` prints its one-line message and exits
with status 2; other exceptions keep their traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType

from hessiankit._version import __version__
from hessiankit.errors import HessiankitError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Modules of this package that define a command, in the order ``hessiankit -h`` lists them.
COMMANDS: tuple[str, ...] = ("blocks", "spectrum", "density", "report")


def _commands() -> list[ModuleType]:
    return [importlib.import_module(f"hessiankit.cli.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered command."""
    parser = argparse.ArgumentParser(
        prog="hessiankit",
        description="The local Hessian of back-propagation: per-block spectra and condition numbers.",
    )
    parser.add_argument("--version", action="version", version=f"hessiankit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _commands():
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error).

    Under ``torchrun`` (:mod:`hessiankit.cli.torchrun`) every rank runs the command in one
    process group; only rank 0 prints (usage errors and user errors included).
    """
    from hessiankit.cli import torchrun

    parser = build_parser()
    try:
        world = torchrun.detect()
    except HessiankitError as exc:
        return _fail("hessiankit", exc, primary=True)
    primary = world is None or world.primary
    with _silenced(not primary):
        args = parser.parse_args(argv)
    try:
        with torchrun.session(args):
            status = int(args._run(args))
            sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
            return status
    except HessiankitError as exc:
        return _fail(f"hessiankit {args.command}", exc, primary=primary)
    except KeyboardInterrupt:
        print("hessiankit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """``hessiankit blocks | head``: the reader closed the pipe. Stop quietly with SIGPIPE's
    status, and point stdout at /dev/null so the exit-time flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file descriptor (captured in-process): nothing to flush later
    return 141


def _fail(prefix: str, exc: HessiankitError, *, primary: bool) -> int:
    if primary:
        from hessiankit.cli.wording import to_flags

        message = to_flags(" ".join(str(exc).split()))
        print(f"{prefix}: error: {message}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def _silenced(quiet: bool) -> Iterator[None]:
    """Swallow stdout and stderr (``--help``, usage errors) on ranks but 0."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
