"""``hessiankit report``: one self-contained HTML page (or Markdown with PNGs) on every block.

For each block of ``--blocks`` (``all`` by default, or a comma list of indices / module paths)
it computes the ``--top`` largest and ``--bottom`` smallest eigenvalues with residuals and the
condition number on the range (:func:`hessiankit.spectrum`), the trace by Hutch++ or
Hutchinson with its standard error, and the SLQ spectral density, and writes:

* ``--format html`` (default): ``--out`` (default ``report.html``), one file with a per-block
  table (lambda_max, smallest nonzero eigenvalue, rank, kappa, trace, converged flags), the
  plots embedded as data URIs, the run's settings and an inline JSON twin of every number; it
  loads nothing from the network;
* ``--format md``: ``--out`` (default ``report.md``), its PNGs in ``<stem>_files/`` and
  ``<stem>.json`` beside it.

``--json PATH`` also writes the JSON twin to PATH. Progress is shown per block and stage.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hessiankit.cli import common, torchrun
from hessiankit.cli.progress import log_line, plain_lines
from hessiankit.cli.density import (
    add_density_arguments,
    check_output,
)
from hessiankit.errors import OperatorError

NAME = "report"
HELP = "HTML or Markdown report: per-block spectra, traces, densities and plots"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model_arguments(p)
    p.add_argument(
        "--blocks",
        default="all",
        metavar="LIST",
        help="'all' (default) or a comma list of block indices / module paths, e.g. 1,3",
    )
    common.add_operator_arguments(p)
    common.add_solver_arguments(p, per_block=True)
    p.add_argument(
        "--rank-rtol",
        type=common.positive_float,
        metavar="R",
        help="eigenvalues below R * max|lambda| count as zero (default 10 sqrt(n) eps)",
    )
    p.add_argument(
        "--trace-method",
        choices=("hutch++", "hutchinson"),
        default="hutch++",
        help="trace estimator (default hutch++)",
    )
    p.add_argument(
        "--trace-products",
        type=int,
        default=60,
        metavar="N",
        help="operator products for the trace (default 60)",
    )
    add_density_arguments(p)
    p.add_argument("--no-density", action="store_true", help="skip the SLQ spectral density")
    p.add_argument("--format", choices=("html", "md"), default="html", help="html (default) or md")
    p.add_argument("--out", metavar="PATH", help="output file (default report.html / report.md)")
    p.add_argument("--title", help="page title (default: the model's name)")
    common.add_data_arguments(p)
    common.add_compute_arguments(p)
    common.add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    # imported here: matplotlib and seaborn would slow every other command's start
    from hessiankit.report import (
        Report,
        analyse_blocks,
        run_settings,
        to_json,
        write_html,
        write_markdown,
    )
    from hessiankit.report.tables import COLUMNS, summary_rows

    out = args.out or f"report.{args.format}"
    check_output(out, "--out", args)
    if args.format == "md":  # the JSON twin beside it
        check_output(str(Path(out).with_suffix(".json")), "--out", args)
    common.prepare_json(args)
    if args.top + args.bottom < 1:
        raise OperatorError("ask for at least one eigenvalue: --top 1 or --bottom 1")
    if args.trace_products < 6:
        raise OperatorError(f"--trace-products must be at least 6, got {args.trace_products}")
    blocks: str | list[str] = (
        "all" if args.blocks == "all" else [b.strip() for b in args.blocks.split(",") if b.strip()]
    )
    if not blocks:
        raise OperatorError("--blocks is empty; give 'all' or block indices like 1,3")
    start = time.perf_counter()
    prep = common.build_operators(args)
    chosen = list(prep.split) if blocks == "all" else [prep.split.block(b) for b in blocks]
    stages = 2 + (0 if args.no_density else 1)
    with (
        common.progress(args, stages * len(chosen), "report", unit="stage") as outer,
        common.progress(args, None, "products", unit="product") as inner,
    ):
        done = [0]

        log = plain_lines(args)  # off a terminal: a line per stage, so a log shows progress

        def stage(message: str) -> None:
            outer(done[0], stages * len(chosen))
            outer.set_description(message)
            done[0] += 1
            if log:
                log_line(f"[{done[0]}/{stages * len(chosen)}] {message}")
            if inner.bar is not None:  # each stage counts its own products from zero
                inner.bar.reset(total=None)

        analyses = analyse_blocks(
            prep.captures[0],
            [b.index for b in chosen],
            wrt=args.wrt,
            kind=args.kind,
            eta=args.eta,
            top=args.top,
            bottom=args.bottom,
            method=args.method,
            tol=args.tol,
            trace_method=args.trace_method,
            trace_products=args.trace_products,
            density=not args.no_density,
            density_probes=args.num_probes,
            density_steps=args.num_steps,
            seed=args.seed,
            progress=stage,
            product_progress=inner,
            make_operator=prep.make,
            options={
                k: v
                for k, v in (("rank_rtol", args.rank_rtol), ("max_products", args.max_products))
                if v is not None
            },
        )
    settings = run_settings(
        prep.captures[0],
        model=prep.info.label,
        model_source=prep.info.source,
        **prep.data.description,
        wrt=args.wrt,
        kind=args.kind,
        eta=args.eta if args.kind == "exact" else None,
        method=args.method,
        tol=args.tol,
        rank_rtol=args.rank_rtol,
        seed=args.seed,
        loss=prep.mean_loss,
        device=str(prep.captures[0].activations[0].device),
        seconds=round(time.perf_counter() - start, 2),
    )
    report = Report(args.title or f"hessiankit report: {prep.info.label}", settings, analyses)
    if not torchrun.is_primary():
        return 0  # every rank computed the same report; rank 0 writes it
    if args.format == "html":
        written = [write_html(report, out)]
    else:
        written = write_markdown(report, out)
    if getattr(args, "json", None):
        import json

        common.emit_json(args, json.loads(to_json(report)))
    rows = summary_rows(report)
    keys = [k for k, _ in COLUMNS if k != "module"]
    common.out(args, common.format_table(keys, [[r[k] for k in keys] for r in rows]))
    for b in report.blocks:
        for w in b.warnings:
            common.note(args, f"block {b.index}: {w}")
    common.out(
        args,
        f"wrote {written[-1]}" + (f" (+ {len(written) - 1} files)" if len(written) > 1 else ""),
    )
    return 0
