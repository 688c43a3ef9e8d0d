"""Scalar approximations of the local Hessians across blocks (claims 15, 16).

``m_{b,W}`` and ``m_{b,z}`` (mean eigenvalues of the Gauss-Newton weight and per-sample input
local Hessians) from :func:`hessiankit.optim.scales.block_scales`, for

* a plain MLP (linear and ReLU blocks), a BN MLP (Linear-BN-ReLU blocks) on Fashion-MNIST 7x7,
* a narrow VGG13-BN (``hessiankit.models.vgg``, width 1/16) on Fashion-MNIST 32x32,

at initialisation and after a short SGD run. Claim 15: the spread across blocks of ``m_{b,W}``,
``m_{b,z}`` and of the cumulative amendment ``prod_{c>b} m_{c,z}`` that scale-amended SGD
applies (orders of magnitude, max/min). Claim 16: the closed-form scalars against the Hutch++
mean eigenvalues of the measured operators (ratio closed/trace per block).

Run: ``python analyses/scales.py [--seeds 5] [--smoke]`` -> ``figures/scales/``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from _common import load_images, mean_ci, parser, plt, setup, write_json

import hessiankit as hk
from hessiankit.optim.scales import block_scales
from hessiankit.models import vgg


def mlp(bn: bool, width: int, depth: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    dims = [49] + [width] * depth
    for a, b in zip(dims, dims[1:]):
        layers += [nn.Linear(a, b, bias=not bn)] + ([nn.BatchNorm1d(b)] if bn else []) + [nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def train(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (32,), generator=gen)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()


def measure(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, bn: bool, seed: int, products: int
) -> list[dict]:
    cap = hk.capture(net, x, y, bn="train" if bn else "eval", dtype=torch.float64)
    tr = block_scales(cap, method="trace", num_products=products, seed=seed)
    rows = []
    for t in tr:
        try:  # blocks without a closed form (pooling + classifier, ...) are skipped for claim 16
            c = block_scales(cap, method="closed-form", blocks=[t.index])[0]
        except hk.HessiankitError:
            c = None
        rows.append(
            {
                "block": t.index,
                "name": t.name,
                "m_w": t.m_w,
                "m_w_se": t.m_w_std_error,
                "m_z": t.m_z,
                "m_z_se": t.m_z_std_error,
                "m_w_closed": c.m_w if c else None,
                "m_z_closed": c.m_z if c else None,
            }
        )
    # cumulative amendment of the backward signal: s_B = 1, s_{b-1} = s_b / m_{b,z}
    s = 1.0
    for r in reversed(rows):
        r["amendment"] = s / r["m_w"] if r["m_w"] else None  # eta_b / eta
        s = s / r["m_z"] if r["m_z"] else s
    return rows


def main() -> None:
    p = parser("scales", __doc__)
    args = p.parse_args()
    out = setup(args, "scales")
    started = time.time()
    smoke = args.smoke
    products = 10 if smoke else 30
    steps = 5 if smoke else 200
    xm, ym = load_images(args.data, 256 if smoke else 2048, 7, 0, flat=True)
    xv, yv = load_images(args.data, 64 if smoke else 1024, 32 if not smoke else 16, 1, flat=False)
    nets = {
        "mlp-relu": lambda s: mlp(False, 8 if smoke else 32, 2 if smoke else 5, s),
        "mlp-bn-relu": lambda s: mlp(True, 8 if smoke else 32, 2 if smoke else 5, s),
        "vgg13-bn/16": lambda s: vgg(
            "vgg13" if not smoke else "small",
            in_channels=1,
            width=1 / 16 if not smoke else 0.125,
            seed=s,
        ),
    }
    rows = []
    for name, make in nets.items():
        x, y = (xv, yv) if name.startswith("vgg") else (xm, ym)
        bn = "bn" in name
        m = 8 if smoke else (16 if name.startswith("vgg") else 64)
        for seed in range(args.seeds):
            net = make(seed)
            for state in ("init", "trained"):
                if state == "trained":
                    train(net, x, y, steps, 0.05 if bn else 0.02, seed)
                gen = torch.Generator().manual_seed(100 + seed)
                idx = torch.randperm(x.shape[0], generator=gen)[:m]
                for r in measure(net, x[idx], y[idx], bn, seed, products):
                    rows.append({"net": name, "seed": seed, "state": state, **r})
            print(f"[scales] {name} seed {seed} ({time.time() - started:.0f}s)", flush=True)
    summary = summarise(rows)
    write_json(
        out, {"analysis": "scales", "args": vars(args), "rows": rows, "summary": summary}, started
    )
    figure(rows, out)


def _spread(vals: list[float]) -> float:
    v = [abs(x) for x in vals if x]
    return math.log10(max(v) / min(v)) if len(v) > 1 else math.nan


def summarise(rows: list[dict]) -> dict:
    out = {}
    for net in sorted({r["net"] for r in rows}):
        for state in ("init", "trained"):
            sel = [r for r in rows if r["net"] == net and r["state"] == state]
            seeds = sorted({r["seed"] for r in sel})
            per = [[r for r in sel if r["seed"] == s] for s in seeds]
            ratio_w = [r["m_w_closed"] / r["m_w"] for r in sel if r["m_w_closed"] and r["m_w"]]
            ratio_z = [r["m_z_closed"] / r["m_z"] for r in sel if r["m_z_closed"] and r["m_z"]]
            out[f"{net}/{state}"] = {
                "blocks": len(per[0]) if per else 0,
                "log10_spread_m_w": mean_ci([_spread([r["m_w"] for r in rs]) for rs in per]),
                "log10_spread_m_z": mean_ci([_spread([r["m_z"] for r in rs]) for rs in per]),
                "log10_spread_amendment": mean_ci(
                    [_spread([r["amendment"] for r in rs]) for rs in per]
                ),
                "closed_over_trace_m_w": {
                    "median": float(np.median(ratio_w)) if ratio_w else None,
                    "min": float(min(ratio_w)) if ratio_w else None,
                    "max": float(max(ratio_w)) if ratio_w else None,
                    "n": len(ratio_w),
                },
                "closed_over_trace_m_z": {
                    "median": float(np.median(ratio_z)) if ratio_z else None,
                    "min": float(min(ratio_z)) if ratio_z else None,
                    "max": float(max(ratio_z)) if ratio_z else None,
                    "n": len(ratio_z),
                },
            }
    return out


def figure(rows: list[dict], out) -> None:
    pyplot = plt()
    nets = sorted({r["net"] for r in rows})
    fig, axes = pyplot.subplots(2, len(nets), figsize=(4 * len(nets), 6.8), squeeze=False)
    for j, net in enumerate(nets):
        for state, ls in (("init", "-"), ("trained", "--")):
            sel = [r for r in rows if r["net"] == net and r["state"] == state]
            blocks = sorted({r["block"] for r in sel})
            for key, color in (("m_w", "C0"), ("m_z", "C1"), ("amendment", "C2")):
                med = [
                    np.median([abs(r[key]) for r in sel if r["block"] == b and r[key]] or [np.nan])
                    for b in blocks
                ]
                axes[0][j].plot(blocks, med, ls, color=color, marker="o", ms=3)
            for key, color in (("m_w", "C0"), ("m_z", "C1")):
                rat = [
                    np.median(
                        [
                            r[f"{key}_closed"] / r[key]
                            for r in sel
                            if r["block"] == b and r[f"{key}_closed"] and r[key]
                        ]
                        or [np.nan]
                    )
                    for b in blocks
                ]
                axes[1][j].plot(blocks, rat, ls, color=color, marker="o", ms=3)
        axes[0][j].set_yscale("log")
        axes[0][j].set_title(f"{net}: scalars per block", fontsize=9)
        axes[0][j].set_xlabel("block")
        axes[1][j].axhline(1, color="k", lw=0.8)
        axes[1][j].set_xlabel("block")
        axes[1][j].set_title(f"{net}: closed form / trace (claim 16)", fontsize=9)
    axes[0][0].set_ylabel("m_W, m_z, multiplier\n(median over seeds)")
    axes[1][0].set_ylabel("closed form / Hutch++ trace\n(median over seeds; 1 = exact)")
    handles = [
        pyplot.Line2D([], [], color="C0", marker="o", ms=3, label="m_W (weight local Hessian)"),
        pyplot.Line2D([], [], color="C1", marker="o", ms=3, label="m_z (input local Hessian)"),
        pyplot.Line2D([], [], color="C2", marker="o", ms=3, label="amended rate multiplier"),
        pyplot.Line2D([], [], color="0.3", ls="-", label="at init"),
        pyplot.Line2D([], [], color="0.3", ls="--", label="trained"),
    ]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    fig.savefig(out / "scales.png", dpi=110)
    pyplot.close(fig)


if __name__ == "__main__":
    main()
