"""``hessiankit spectrum``: extreme eigenvalues and condition number of a block's local Hessian.

For block b (``--block``: an index from ``hessiankit blocks``, a module path, ``all`` for every
block, or ``model`` for the whole network as one block) it builds the operator of ``--kind``

* ``gauss-newton`` - the local Hessian of the back-matching loss, ``(1/m) J_W^T J_W`` (weights)
  or ``J_z^T J_z`` per sample (input): the paper's quantity, needs no labels;
* ``exact`` - the full Hessian of the back-matching loss with target ``z_b - eta g_b`` (labels);
* ``loss`` - the ordinary Hessian of the batch-mean training loss (labels); with
  ``--block model`` it is the Hessian of all parameters that PyHessian, curvlinops and
  hessian-eigenthings compute,

and reports the ``--top`` largest and ``--bottom`` smallest eigenvalues (for PSD operators: the
smallest on the range), each with its residual ``||A y - theta y||`` and a converged flag, the
rank when the whole spectrum is known, and the condition number on the range.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Literal

from hessiankit.cli import common
from hessiankit.cli.progress import block_progress
from hessiankit import pipeline
from hessiankit.errors import OperatorError

if TYPE_CHECKING:
    from hessiankit.pipeline import BlockResult

NAME = "spectrum"
HELP = "eigenvalues, residuals and condition number of a block's local Hessian"
DESCRIPTION = __doc__

_KIND_WORDS = {
    "gauss-newton": "Gauss-Newton local Hessian",
    "exact": "exact local Hessian",
    "loss": "loss Hessian",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model_arguments(p)
    p.add_argument(
        "--block",
        default="all",
        metavar="B",
        help="block index (from 1, see `hessiankit blocks`), a module path, 'all' (every block, one "
        "row each; default) or 'model' (the whole network as one block)",
    )
    common.add_operator_arguments(p)
    common.add_solver_arguments(p)
    common.add_data_arguments(p)
    common.add_compute_arguments(p)
    common.add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    common.prepare_json(args)
    if args.top + args.bottom < 1:
        raise OperatorError("ask for at least one eigenvalue: --top 1 or --bottom 1")
    prep = common.build_operators(args)
    info, data, loss = prep.info, prep.data, prep.loss
    blocks: Literal["all"] | list[str] = "all" if args.block == "all" else [args.block]
    results = pipeline.run_blocks(
        prep, blocks, common.solver_options(args), progress=block_progress(args)
    )
    records = [_record(args, info, data, r, loss) for r in results]
    if len(records) == 1 and args.block != "all":
        _print_one(args, info, data, records[0])
    else:
        _print_all(args, info, data, records)
    for r in results:
        for n in r.notes:
            common.note(args, f"block {r.index}: {n}" if len(results) > 1 else n)
    where = f" on rank 0 of {prep.world.size}" if prep.world.size > 1 else ""
    common.out(
        args,
        f"(capture {prep.capture_seconds:.2f} s; {len(prep.captures)} batch(es) of at most "
        f"{data.description['batch_size']}{where})",
    )
    common.emit_json(args, records[0] if args.block != "all" else records)
    return 0


def _record(
    args: argparse.Namespace,
    info: common.ModelInfo,
    data: common.Batches,
    result: BlockResult,
    loss: str,
) -> dict[str, Any]:
    d = result.spectrum.to_dict()
    d.update(
        block=result.index,
        name=result.name,
        wrt=args.wrt,
        kind=args.kind,
        eta=args.eta if args.kind == "exact" else None,
        bn=args.bn,
        dtype=args.dtype,
        seed=args.seed,
        loss=loss if args.kind != "gauss-newton" else None,
        model=info.label,
        model_source=info.source,
        **{k: v for k, v in data.description.items()},
        **common.versions(),
        notes=list(result.notes),
    )
    return d


def _flag(ok: object) -> str:
    return "yes" if ok else "NO"


def _print_one(
    args: argparse.Namespace, info: common.ModelInfo, data: common.Batches, r: dict[str, Any]
) -> None:
    what = _KIND_WORDS[str(r["kind"])] + (f" (eta={r['eta']})" if r["kind"] == "exact" else "")
    common.out(args, f"block {r['block']} ({r['name']}): {what} w.r.t. {r['wrt']}")
    common.out(args, f"model: {info.label}; data: {_data_words(data)}; bn {r['bn']}; {r['dtype']}")
    common.out(
        args,
        f"dimension {r['dimension']}, method {r['method']}, {r['num_products']} products, {r['seconds']:.2f} s",
    )
    common.out(args)
    rows = [
        [i + 1, common.fmt(v, ".10e"), common.fmt(res, ".1e"), _flag(c)]
        for i, (v, res, c) in enumerate(zip(r["eigenvalues"], r["residuals"], r["converged"]))
    ]
    if rows:
        common.out(args, "largest eigenvalues")
        common.out(
            args,
            common.format_table(
                ["#", "eigenvalue", "residual", "converged"], rows, [True, True, True, False]
            ),
        )
        common.out(args)
    rows = [
        [i + 1, common.fmt(v, ".10e"), common.fmt(res, ".1e"), _flag(c)]
        for i, (v, res, c) in enumerate(
            zip(r["smallest"], r["smallest_residuals"], r["smallest_converged"])
        )
    ]
    if rows:
        where = (
            f" (on the range: above {r['rank_threshold']:.1e})" if r["smallest_on_range"] else ""
        )
        common.out(args, "smallest eigenvalues" + where)
        common.out(
            args,
            common.format_table(
                ["#", "eigenvalue", "residual", "converged"], rows, [True, True, True, False]
            ),
        )
        common.out(args)
    rank = "-" if r["rank"] is None else f"{r['rank']} of {r['dimension']}"
    common.out(args, f"lambda_max          {common.fmt(r['lambda_max'])}")
    common.out(args, f"lambda_min_nonzero  {common.fmt(r['lambda_min_nonzero'])}")
    settled = "" if r["condition_converged"] or r["condition_number"] is None else ", NOT converged"
    common.out(
        args, f"condition number    {common.fmt(r['condition_number'])} (on the range{settled})"
    )
    common.out(args, f"rank                {rank}")
    if r["condition_note"]:
        common.out(args, f"note: {r['condition_note']}")


def _print_all(
    args: argparse.Namespace,
    info: common.ModelInfo,
    data: common.Batches,
    records: list[dict[str, Any]],
) -> None:
    r0 = records[0]
    what = _KIND_WORDS[str(r0["kind"])] + (f" (eta={r0['eta']})" if r0["kind"] == "exact" else "")
    common.out(
        args, f"{what} w.r.t. {r0['wrt']}, every block; top {args.top}, bottom {args.bottom}"
    )
    common.out(
        args, f"model: {info.label}; data: {_data_words(data)}; bn {r0['bn']}; {r0['dtype']}"
    )
    common.out(args)
    rows = []
    for r in records:
        conv = bool(all(r["converged"]) and all(r["smallest_converged"]))
        rows.append(
            [
                r["block"],
                r["name"],
                r["dimension"],
                r["method"],
                common.fmt(r["lambda_max"]),
                common.fmt(r["lambda_min_nonzero"]),
                common.fmt(r["condition_number"], ".3e"),
                "-" if r["rank"] is None else r["rank"],
                common.fmt(
                    max(list(r["residuals"]) + list(r["smallest_residuals"]) or [0.0]), ".1e"
                ),
                _flag(conv),
                r["num_products"],
                f"{r['seconds']:.2f}",
            ]
        )
    headers = [
        "block",
        "name",
        "dim",
        "method",
        "lambda_max",
        "lambda_min>0",
        "kappa",
        "rank",
        "max resid",
        "conv",
        "products",
        "seconds",
    ]
    common.out(
        args,
        common.format_table(
            headers,
            rows,
            [True, False, True, False, True, True, True, True, True, False, True, True],
        ),
    )


def _data_words(data: common.Batches) -> str:
    d = data.description
    src = f"--data {d['data']}" if "data" in d else f"{d['dataset']} ({d['split']})"
    shape = "x".join(str(s) for s in d["input_shape"])
    if "batch_sizes" in d:
        counts = f"{d['samples']} samples in {d['num_batches']} batches of up to {d['batch_size']}"
    else:
        counts = f"{d['num_batches']} x {d['batch_size']} samples"
    ranks = f", {d['world_size']} processes" if "world_size" in d else ""
    return f"{src}, {counts} of {shape}{ranks}"
