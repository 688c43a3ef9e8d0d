"""``hessiankit density``: the spectral density of a block's local Hessian by stochastic Lanczos
quadrature (SLQ).

``--probes`` Rademacher probes each run ``--steps`` Lanczos steps; the Gauss quadrature nodes
and weights are smoothed with a Gaussian of width sigma (default: the spread of the nodes over
the number of steps) on lambda and on log10|lambda|. Prints the moments (mean eigenvalue =
trace / n, with its standard error over probes), the zero and negative mass and the range of
the nodes; ``--plot PATH`` writes the figure as PATH.png and PATH.svg; ``--json`` every number
(nodes, weights, both curves).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hessiankit.cli import common, torchrun
from hessiankit.errors import OperatorError

NAME = "density"
HELP = "spectral density of a block's local Hessian (stochastic Lanczos quadrature)"
DESCRIPTION = __doc__


def add_density_arguments(p: argparse.ArgumentParser) -> None:
    """``--probes``, ``--steps``."""
    p.add_argument(
        "--probes",
        dest="num_probes",
        type=common.positive,
        default=8,
        metavar="P",
        help="Rademacher probe vectors (default 8; the error falls like 1/sqrt(P))",
    )
    p.add_argument(
        "--steps",
        dest="num_steps",
        type=common.positive,
        default=80,
        metavar="M",
        help="Lanczos steps per probe (default 80; capped at the dimension)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model_arguments(p)
    p.add_argument(
        "--block",
        required=True,
        metavar="B",
        help="block index (from 1, see `hessiankit blocks`), a module path, or 'model'",
    )
    common.add_operator_arguments(p)
    add_density_arguments(p)
    p.add_argument(
        "--sigma",
        type=common.positive_float,
        metavar="S",
        help="kernel width on lambda (default: spread of the nodes / steps)",
    )
    p.add_argument(
        "--log-sigma",
        type=common.positive_float,
        metavar="S",
        help="kernel width on log10|lambda| in decades (default: spread / steps)",
    )
    p.add_argument(
        "--plot", metavar="PATH", help="write the density figure to PATH.png and PATH.svg"
    )
    common.add_data_arguments(p)
    common.add_compute_arguments(p)
    common.add_output_arguments(p)


def check_output(path: str, option: str, args: argparse.Namespace | None = None) -> Path:
    """Fail before any work when ``path`` (written by ``option``) cannot be written or would
    overwrite an input of ``args`` (the model or the data file)."""
    from hessiankit.io import check_output as io_check_output

    inputs = () if args is None else (args.model, args.data)
    return io_check_output(path, inputs=inputs, what=option)


def run(args: argparse.Namespace) -> int:
    from hessiankit.solvers.slq import slq

    common.prepare_json(args)
    if args.plot:
        stem = args.plot[:-4] if args.plot.lower().endswith((".png", ".svg", ".pdf")) else args.plot
        for path in (args.plot, f"{stem}.png", f"{stem}.svg"):  # save_figure writes the last two
            check_output(path, "--plot", args)
    if args.block == "all":
        raise OperatorError(
            "density takes one block; give --block B (use `hessiankit report` for all)"
        )
    prep = common.build_operators(args)
    info, data = prep.info, prep.data
    block = prep.split.whole_model() if args.block == "model" else prep.split.block(args.block)
    op = prep.make(block)
    with common.progress(args, None, f"block {block.index} SLQ", unit="product") as bar:
        d = slq(op, **common.keywords_for(slq, args), progress=bar)
    m1, s1 = d.moment(1)
    m2, s2 = d.moment(2)
    common.out(
        args,
        f"block {block.index} ({block.name}): {args.kind} w.r.t. {args.wrt}, dimension {d.dimension}",
    )
    common.out(args, f"model: {info.label}; bn {args.bn}; {args.dtype}; seed {args.seed}")
    common.out(
        args,
        f"SLQ: {d.num_probes} probes x {d.num_steps} steps, {d.num_products} products, "
        f"{d.seconds:.2f} s, reorthogonalized {'yes' if d.reorthogonalized else 'no'}",
    )
    common.out(args)
    rows = [
        ["mean eigenvalue (trace/n)", f"{m1:.6e}", f"{s1:.1e}"],
        ["trace", f"{d.dimension * m1:.6e}", f"{d.dimension * s1:.1e}"],
        ["mean squared eigenvalue", f"{m2:.6e}", f"{s2:.1e}"],
        ["smallest node", f"{d.lambda_min:.6e}", ""],
        ["largest node", f"{d.lambda_max:.6e}", ""],
        ["zero mass", f"{d.zero_mass:.4f}", f"(|theta| <= {d.zero_threshold:.1e})"],
        ["negative mass", f"{d.negative_mass:.4f}", ""],
        ["kernel width (lambda)", f"{d.linear.sigma:.3e}", ""],
        ["kernel width (log10|lambda|)", f"{d.log.sigma:.3e}", "decades"],
    ]
    common.out(
        args,
        common.format_table(["quantity", "estimate", "std. error"], rows, [False, True, False]),
    )
    if args.plot and torchrun.is_primary():
        from hessiankit.plots import plot_density, save_figure

        paths = save_figure(plot_density(d), args.plot)
        common.out(args, "wrote " + ", ".join(str(p) for p in paths))
    record = {
        **d.to_dict(),
        "block": block.index,
        "name": block.name,
        "wrt": args.wrt,
        "kind": args.kind,
        "eta": args.eta if args.kind == "exact" else None,
        "bn": args.bn,
        "dtype": args.dtype,
        "seed": args.seed,
        "model": info.label,
        "model_source": info.source,
        **data.description,
        **common.versions(),
    }
    common.emit_json(args, record)
    return 0
