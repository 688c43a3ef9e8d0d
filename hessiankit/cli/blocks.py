"""``hessiankit blocks``: the table of a model's blocks ``z_b = F_b(W_b, z_{b-1})``.

One row per block: index (from 1, as ``--block`` takes it), the module paths it runs, its
number of weights, the shapes of ``z_{b-1}`` and ``z_b`` for the chosen data (without the batch
dimension), and whether it holds batch norm or a skip connection. A tensor tied between modules
counts once in each block that uses it and once in the model's total.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from hessiankit.cli import common

if TYPE_CHECKING:
    from hessiankit.blocks import BlockSplit

NAME = "blocks"
HELP = "list a model's blocks: modules, parameters, input/output shapes, BN, skip"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model_arguments(p)
    common.add_data_arguments(p)
    common.add_compute_arguments(p)
    common.add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hessiankit.blocks import capture, split_blocks

    common.prepare_json(args)
    device = common.resolve_device(args.device)
    info = common.open_model(args, device)
    common.check_torchscript_bn(info, args.bn)
    split = split_blocks(info.model)
    data = common.load_batches(args, info, device)
    for n in data.notes:
        common.note(args, n)
    x, _ = data.batches[0]
    cap = capture(split, x, None, bn=args.bn, dtype=common.resolve_dtype(args.dtype))
    rows: list[dict[str, Any]] = []
    for b in split:
        rows.append(
            {
                "block": b.index,
                "name": b.name,
                "modules": list(b.module_names),
                "num_params": b.num_params,
                "input_shape": list(cap.block_input(b).shape[1:]),
                "output_shape": list(cap.block_output(b).shape[1:]),
                "has_bn": b.has_bn,
                "has_skip": b.has_skip,
            }
        )
    total, shared = _weights(split)
    tied = f", {shared} of them in more than one block (tied)" if shared else ""
    common.out(args, f"model: {info.label} ({len(split)} blocks, {total} weights{tied})")
    common.out(args, f"data: {_describe_data(data.description)}")
    common.out(args)
    table = [
        [
            r["block"],
            r["name"],
            _modules(r["modules"]),
            r["num_params"],
            _shape(r["input_shape"]),
            _shape(r["output_shape"]),
            "yes" if r["has_bn"] else "no",
            "yes" if r["has_skip"] else "no",
        ]
        for r in rows
    ]
    headers = ["block", "name", "modules", "params", "input", "output", "bn", "skip"]
    common.out(
        args,
        common.format_table(headers, table, [True, False, False, True, False, False, False, False]),
    )
    common.emit_json(
        args,
        {
            "model": info.label,
            "source": info.source,
            "num_params": total,
            **data.description,
            **common.versions(),
            "blocks": rows,
        },
    )
    return 0


def _weights(split: BlockSplit) -> tuple[int, int]:
    """Scalar weights of the model's blocks, a tied tensor once; and how many of them are in
    more than one block (each block counts a tied tensor it uses)."""
    sizes = {n: p.numel() for n, p in split.model.named_parameters()}
    uses: dict[str, int] = {}
    for b in split:
        for n in b.param_names:
            uses[n] = uses.get(n, 0) + 1
    return sum(sizes[n] for n in uses), sum(sizes[n] for n, k in uses.items() if k > 1)


def _modules(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 2 else f"{names[0]} .. {names[-1]} ({len(names)})"


def _shape(shape: list[int]) -> str:
    return "x".join(str(s) for s in shape) if shape else "scalar"


def _describe_data(d: dict[str, Any]) -> str:
    src = f"--data {d['data']}" if "data" in d else f"{d['dataset']} ({d['split']})"
    counts = (
        f"{d['samples']} samples in {d['num_batches']} batches of up to {d['batch_size']}"
        if "batch_sizes" in d
        else f"{d['num_batches']} x {d['batch_size']} samples"
    )
    return f"{src}, {counts} of shape {_shape(list(d['input_shape']))}"
