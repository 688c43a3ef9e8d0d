"""Batch norm and the scale of the local Hessian (claims 10, 11, 12, 14).

* claim 10: the weight local Hessian of a Linear-BN block (train mode) against the closed form
  (:func:`hessiankit.analytic.bn_block_weight_hessian`); the weight direction as a null
  direction (``||H w|| / (||H|| ||w||)``); ``a^2 H(a W)`` against ``H(W)``.
* claim 11: the BN weight local Hessian after rescaling and shifting the input, against the
  plain linear block's, which scales with the input second moment.
* claim 12: the input local Hessian against ``I kron W^T diag(gamma^2/sigma^2) W``: relative
  error against ``sqrt(2/m)`` over batch sizes; invariance to the row norms of W; the
  ``1/s^2`` law in the input scale s.
* claim 14: training an MLP with BN on Fashion-MNIST (SGD, momentum 0.9), with and without weight
  decay: per hidden block the weight norm and ``m_W`` (the mean eigenvalue ``tr(H_W)/dim`` of the
  main weight's local Hessian, :func:`hessiankit.optim.scales.block_scales`, Hutch++), and the
  log-log slope of ``m_W`` against ``||W||`` over training (prediction: -2).

Every Hessian is the core's operator (``LocalHessian``, dense float64 or Hutch++).

Run: ``python analyses/bn_scale.py [--seeds 5] [--smoke]`` -> ``figures/bn_scale/``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from _common import load_images, mean_ci, parser, plt, setup, write_json

import hessiankit as hk
from hessiankit.analytic import batchnorm as bnf
from hessiankit.optim.scales import block_scales


def bn_block(n_in: int, n_out: int, seed: int, eps: float = 1e-12) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out, eps=eps)).double()
    with torch.no_grad():
        net[1].weight.copy_(1 + 0.5 * torch.randn(n_out))
        net[1].bias.copy_(0.3 * torch.randn(n_out))
    return net


def H(net: nn.Module, x: torch.Tensor, wrt: str, bn: str = "train") -> torch.Tensor:
    cap = hk.capture(net, x, bn=bn, dtype=torch.float64)
    return hk.LocalHessian(cap, 1, wrt=wrt).to_dense()  # type: ignore[arg-type]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b))


def static_checks(x: torch.Tensor, seeds: int, n_out: int) -> dict[str, list]:
    n_in = x.shape[1]
    nw = n_in * n_out
    c10, c11, c12 = [], [], []
    for seed in range(seeds):
        net = bn_block(n_in, n_out, seed)
        W, g = net[0].weight, net[1].weight
        Hw = H(net, x, "weights")
        pred = bnf.bn_block_weight_hessian(W, g, x)
        Hww = Hw[:nw, :nw]
        nulls = []
        for i in range(n_out):
            blk = Hww[i * n_in : (i + 1) * n_in, i * n_in : (i + 1) * n_in]
            w = W[i].detach()
            nulls.append(float((blk @ w).norm() / (torch.linalg.matrix_norm(blk, 2) * w.norm())))
        scale_err = []
        for a in (0.5, 2.0, 10.0):
            with torch.no_grad():
                net[0].weight.mul_(a)
            scale_err.append(rel(a * a * H(net, x, "weights")[:nw, :nw], Hww))
            with torch.no_grad():
                net[0].weight.div_(a)
        c10.append(
            {
                "seed": seed,
                "rel_error_closed_form": rel(pred, Hw),
                "max_null_ratio": max(nulls),
                "max_rel_error_scale_law": max(scale_err),
            }
        )
        plain = nn.Sequential(nn.Linear(n_in, n_out, bias=False)).double()
        P1 = H(plain, x, "weights", "eval")
        for c, shift in ((0.1, 0.0), (10.0, 0.0), (1.0, 3.0)):
            xs = c * x + shift
            c11.append(
                {
                    "seed": seed,
                    "scale": c,
                    "shift": shift,
                    "bn_rel_change": rel(H(net, xs, "weights")[:nw, :nw], Hww),
                    "plain_trace_ratio": float(
                        torch.trace(H(plain, xs, "weights", "eval")) / torch.trace(P1)
                    ),
                }
            )
        # input Hessian: approximation error vs m, invariance to the row norms of W, 1/s^2 law
        for m in (8, 16, 32, 64)[: 2 if x.shape[0] < 64 else 4]:
            if m > x.shape[0]:
                continue
            xm = x[:m]
            Hz = H(net, xm, "input")
            c12.append(
                {
                    "seed": seed,
                    "m": m,
                    "approx_rel_error": rel(bnf.bn_input_hessian_approx(W, g, xm), Hz),
                    "sqrt_2_over_m": math.sqrt(2 / m),
                    "exact_rel_error": rel(bnf.bn_input_hessian(W, g, xm), Hz),
                }
            )
        xm = x[:16]
        Hz = H(net, xm, "input")
        gen = torch.Generator().manual_seed(seed)
        rows = torch.exp(torch.randn(n_out, 1, generator=gen, dtype=torch.float64))
        with torch.no_grad():
            net[0].weight.mul_(rows)
        c12.append(
            {
                "seed": seed,
                "row_norm_rel_change": rel(H(net, xm, "input"), Hz),
                "input_scale_10_rel_error_of_1_over_s2": rel(
                    100.0 * H(net, 10.0 * xm, "input"), H(net, xm, "input")
                ),
            }
        )
    return {"claim10": c10, "claim11": c11, "claim12": c12}


def train_run(
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    wd: float,
    steps: int,
    every: int,
    width: int,
    depth: int,
) -> list[dict]:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    dims = [x.shape[1]] + [width] * depth
    for a, b in zip(dims, dims[1:]):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=wd)
    gen = torch.Generator().manual_seed(seed)
    xm, ym = x[:64], y[:64]
    hist = []
    split = hk.split_blocks(net)
    for step in range(steps + 1):
        if step % every == 0:
            cap = hk.capture(split, xm, ym, bn="train", dtype=torch.float64)
            scales = block_scales(
                cap, method="trace", num_products=30, seed=seed, blocks=list(range(2, depth + 1))
            )
            for sc in scales:
                lin_w = net[3 * (sc.index - 1)].weight.detach()
                hist.append(
                    {
                        "step": step,
                        "block": sc.index,
                        "m_w": sc.m_w,
                        "m_w_se": sc.m_w_std_error,
                        "weight_norm": float(lin_w.norm()),
                        "loss": cap.loss,
                    }
                )
        if step == steps:
            break
        net.train()
        idx = torch.randint(0, x.shape[0], (64,), generator=gen)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return hist


def main() -> None:
    p = parser("bn_scale", __doc__)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    out = setup(args, "bn_scale")
    started = time.time()
    steps, every, width, depth, n = (
        (6, 3, 8, 2, 64) if args.smoke else (args.steps, 25, 32, 4, 2048)
    )
    x, y = load_images(args.data, n, 7, 0, flat=True)
    res: dict[str, object] = {"analysis": "bn_scale", "args": vars(args)}
    xs = x[: 32 if args.smoke else 64, ::4].double()  # 13 pixels: input Hessians stay m*13 square
    res.update(static_checks(xs, args.seeds, 6))
    print(f"[bn_scale] static checks ({time.time() - started:.0f}s)", flush=True)
    runs = []
    for wd in (0.0, 5e-4):
        for seed in range(args.seeds):
            runs.append(
                {
                    "wd": wd,
                    "seed": seed,
                    "history": train_run(x, y, seed, wd, steps, every, width, depth),
                }
            )
        print(f"[bn_scale] training wd={wd} ({time.time() - started:.0f}s)", flush=True)
    res["claim14"] = runs
    res["summary"] = summarise(res)
    write_json(out, res, started)
    figure(runs, out)


def summarise(res: dict) -> dict:
    c10, c11, c12 = res["claim10"], res["claim11"], res["claim12"]
    s: dict[str, object] = {
        "claim10": {
            "max_rel_error_closed_form": max(r["rel_error_closed_form"] for r in c10),
            "max_null_ratio": max(r["max_null_ratio"] for r in c10),
            "max_rel_error_scale_law": max(r["max_rel_error_scale_law"] for r in c10),
        },
        "claim11": {
            "bn_max_rel_change": max(r["bn_rel_change"] for r in c11),
            "plain_trace_ratio_scale_10": mean_ci(
                [r["plain_trace_ratio"] for r in c11 if r["scale"] == 10.0]
            ),
            "plain_trace_ratio_scale_0.1": mean_ci(
                [r["plain_trace_ratio"] for r in c11 if r["scale"] == 0.1]
            ),
            "plain_trace_ratio_shift_3": mean_ci(
                [r["plain_trace_ratio"] for r in c11 if r["shift"] == 3.0]
            ),
        },
        "claim12": {
            "approx_error_by_m": {
                str(m): {
                    "rel_error": mean_ci([r["approx_rel_error"] for r in c12 if r.get("m") == m]),
                    "sqrt_2_over_m": math.sqrt(2 / m),
                }
                for m in sorted({r["m"] for r in c12 if "m" in r})
            },
            "max_exact_rel_error": max(r["exact_rel_error"] for r in c12 if "m" in r),
            "max_row_norm_rel_change": max(
                r["row_norm_rel_change"] for r in c12 if "row_norm_rel_change" in r
            ),
            "max_rel_error_1_over_s2": max(
                r["input_scale_10_rel_error_of_1_over_s2"]
                for r in c12
                if "row_norm_rel_change" in r
            ),
        },
    }
    c14 = {}
    for wd in (0.0, 5e-4):
        slopes, norm_ratio, mw_ratio = [], [], []
        for run in (r for r in res["claim14"] if r["wd"] == wd):
            h = run["history"]
            for b in sorted({e["block"] for e in h}):
                e = [r for r in h if r["block"] == b and r["m_w"] and r["m_w"] > 0]
                if len(e) < 2:
                    continue
                lw = np.log([r["weight_norm"] for r in e])
                lm = np.log([r["m_w"] for r in e])
                if np.ptp(lw) > 1e-3:
                    slopes.append(float(np.polyfit(lw, lm, 1)[0]))
                norm_ratio.append(e[-1]["weight_norm"] / e[0]["weight_norm"])
                mw_ratio.append(e[-1]["m_w"] / e[0]["m_w"])
        c14[str(wd)] = {
            "slope_log_mw_vs_log_norm": mean_ci(slopes),
            "final_over_initial_norm": mean_ci(norm_ratio),
            "final_over_initial_m_w": mean_ci(mw_ratio),
        }
    s["claim14"] = c14
    return s


def figure(runs: list[dict], out) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(12, 3.4))
    for i, wd in enumerate((0.0, 5e-4)):
        for run in (r for r in runs if r["wd"] == wd):
            h = run["history"]
            for b in sorted({e["block"] for e in h}):
                e = [r for r in h if r["block"] == b]
                steps = [r["step"] for r in e]
                axes[0].plot(steps, [r["weight_norm"] for r in e], color=f"C{i}", alpha=0.4, lw=1)
                axes[1].plot(steps, [r["m_w"] for r in e], color=f"C{i}", alpha=0.4, lw=1)
                axes[2].loglog(
                    [r["weight_norm"] for r in e],
                    [r["m_w"] for r in e],
                    ".-",
                    color=f"C{i}",
                    alpha=0.4,
                    lw=1,
                    ms=3,
                )
        axes[0].plot([], [], color=f"C{i}", label=f"weight decay {wd:g}")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("||W_b||_F")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("m_W = tr(H_W)/dim (Hutch++)")
    axes[1].set_yscale("log")
    ws = np.array([r["weight_norm"] for run in runs for r in run["history"]])
    ms = np.array([r["m_w"] for run in runs for r in run["history"] if r["m_w"]])
    if ws.size and ms.size:
        # the predicted -2 against the fitted slopes (mean over (run, block) fits, as in claim 14)
        xs = np.array([ws.min(), ws.max()])
        axes[2].loglog(xs, ms.max() * (xs / xs[0]) ** -2, "k--", lw=1, label="predicted slope -2")
        for i, wd in enumerate((0.0, 5e-4)):
            slopes = []
            for run in (r for r in runs if r["wd"] == wd):
                for b in sorted({e["block"] for e in run["history"]}):
                    e = [r for r in run["history"] if r["block"] == b and r["m_w"]]
                    lw = np.log([r["weight_norm"] for r in e])
                    if len(e) > 1 and np.ptp(lw) > 1e-3:
                        slopes.append(np.polyfit(lw, np.log([r["m_w"] for r in e]), 1)[0])
            if slopes:
                k = float(np.mean(slopes))
                axes[2].loglog(
                    xs,
                    ms.max() * (xs / xs[0]) ** k,
                    ":",
                    color=f"C{i}",
                    lw=1.5,
                    label=f"mean fitted slope {k:.2f} (wd {wd:g})",
                )
        axes[2].legend(fontsize=7)
        axes[2].set_ylim(ms.min() / 1.5, ms.max() * 1.5)
    axes[2].set_xlabel("||W_b||_F (log)")
    axes[2].set_ylabel("m_W (log)")
    fig.suptitle(
        "claim 14: BN weight local Hessian against weight norm during training", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out / "bn_scale.png", dpi=110)
    pyplot.close(fig)


if __name__ == "__main__":
    main()
