"""Condition number of the weight and input local Hessians against depth (claims 5, 6, 8, 13).

Grid: architecture {linear, tanh, relu MLP, small CNN} x init {gaussian, orthogonal} x
{plain, residual} x {no BN, BN} x depth, at initialisation and after some training on
Fashion-MNIST (a few hundred SGD steps on a subset, images resized to 7x7 for the MLPs and 6x6 for
the CNN). For each network the Gauss-Newton local Hessians of up to four evenly spaced hidden
(square) blocks are materialised (dense float64) and their condition numbers on the range taken;
a network's number is the median over those blocks of log10 kappa. Mean and 95% CI over seeds.

Model: an input block (to width n), ``depth`` hidden blocks, a linear classifier. Plain hidden
block: ``act(BN(W z))``; residual: ``z + act(BN(W z))`` (BN omitted in the no-BN variants, a bias
instead). Gaussian init: ``N(0, gain^2 / fan_in)``; orthogonal: ``orthogonal_(gain)``; gain 1
(linear), 5/3 (tanh), sqrt 2 (ReLU). BN blocks are measured in train mode (batch statistics).

Run: ``python analyses/depth.py [--seeds 5] [--smoke]`` -> ``figures/depth/``.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import torch
from torch import nn

from _common import RANK_RTOL, kappa_of, load_images, mean_ci, parser, plt, setup, write_json

import hessiankit as hk
from hessiankit.models import Residual

ARCHS = ("linear", "tanh", "relu", "cnn")
INITS = ("gaussian", "orthogonal")


def _act(arch: str) -> nn.Module:
    return {"linear": nn.Identity(), "tanh": nn.Tanh(), "relu": nn.ReLU(), "cnn": nn.ReLU()}[arch]


def _gain(arch: str) -> float:
    return {"linear": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "cnn": math.sqrt(2.0)}[arch]


def build(
    arch: str,
    depth: int,
    width: int,
    init: str,
    residual: bool,
    bn: bool,
    in_dim: int,
    side: int,
    seed: int,
) -> nn.Sequential:
    torch.manual_seed(seed)
    conv = arch == "cnn"

    def unit(n_in: int, n_out: int) -> nn.Sequential:
        lay = (
            nn.Conv2d(n_in, n_out, 3, padding=1, bias=not bn)
            if conv
            else nn.Linear(n_in, n_out, bias=not bn)
        )
        norm = (nn.BatchNorm2d(n_out) if conv else nn.BatchNorm1d(n_out)) if bn else nn.Identity()
        return nn.Sequential(lay, norm, _act(arch))

    layers: list[nn.Module] = [unit(1 if conv else in_dim, width)]
    for _ in range(depth):
        u = unit(width, width)
        layers.append(Residual(u) if residual else u)
    layers += [nn.Flatten(), nn.Linear(width * side * side if conv else width, 10)]
    net = nn.Sequential(*layers)
    g = _gain(arch)
    for mod in net.modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            if init == "orthogonal":
                nn.init.orthogonal_(mod.weight, gain=g)
            else:
                nn.init.normal_(mod.weight, 0.0, g / math.sqrt(mod.weight[0].numel()))
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
    return net


def train(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, batch: int, seed: int
) -> dict[str, float]:
    """Plain SGD (momentum 0.9, grad-norm clip 5) on the subset; returns first/last loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        if not torch.isfinite(loss):
            return {"first": losses[0] if losses else math.nan, "last": math.nan, "diverged": True}
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
    k = max(1, len(losses) // 10)
    return {
        "first": float(np.mean(losses[:k])),
        "last": float(np.mean(losses[-k:])),
        "diverged": False,
    }


def measure(
    net: nn.Module, x: torch.Tensor, bn: bool, depth: int, n_blocks: int
) -> dict[str, list[float]]:
    """kappa of the weight and input local Hessians of evenly spaced hidden blocks."""
    cap = hk.capture(net, x, bn="train" if bn else "eval", dtype=torch.float64)
    hidden = list(range(2, depth + 2))  # block 1 is the input block, depth+2 the classifier
    pick = sorted(
        {hidden[int(round(i))] for i in np.linspace(0, len(hidden) - 1, min(n_blocks, len(hidden)))}
    )
    out: dict[str, list[float]] = {
        "blocks": pick,
        "kappa_w": [],
        "kappa_z": [],
        "rank_z": [],
        "dim_z": [],
    }
    for b in pick:
        kw, _, _ = kappa_of(hk.LocalHessian(cap, b, wrt="weights"))
        kz, rz, dz = kappa_of(hk.LocalHessian(cap, b, wrt="input"))
        out["kappa_w"].append(kw)
        out["kappa_z"].append(kz)
        out["rank_z"].append(rz)
        out["dim_z"].append(dz)
    return out


def main() -> None:
    p = parser("depth", __doc__)
    p.add_argument("--depths", default="2,4,8,16,32")
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument(
        "--batch", type=int, default=16, help="batch the local Hessians are measured on (MLPs)"
    )
    p.add_argument(
        "--cnn-batch",
        type=int,
        default=8,
        help="the same for the CNN (its input Hessian is m c h w square)",
    )
    p.add_argument("--cnn-depths", default="2,4,8,16", help="depths of the CNN (dearer per block)")
    p.add_argument("--steps", type=int, default=100, help="SGD steps of 'some training'")
    p.add_argument("--train-depths", default="2,8,32", help="depths also measured after training")
    p.add_argument("--blocks", type=int, default=3, help="hidden blocks measured per network")
    p.add_argument(
        "--replot", action="store_true", help="re-summarise and re-plot results.json only"
    )
    args = p.parse_args()
    out = setup(args, "depth")
    started = time.time()
    if args.replot:
        import json

        old = json.loads((out / "results.json").read_text())
        summary = summarise(old["rows"])
        old["summary"] = summary
        write_json(out, old, started - old.get("seconds", 0))
        figure(
            summary,
            old["args"]["archs"].split(","),
            [int(d) for d in old["args"]["depths"].split(",")],
            out,
        )
        return
    if args.smoke:
        args.depths, args.train_depths, args.width, args.channels = "2,4", "2", 6, 2
        args.batch, args.steps, args.blocks = 6, 5, 2
        args.cnn_batch, args.cnn_depths = 4, "2,4"
    depths = [int(d) for d in args.depths.split(",")]
    train_depths = {int(d) for d in args.train_depths.split(",")}
    archs = args.archs.split(",")
    side_mlp, side_cnn = 7, 6
    n_train = 256 if args.smoke else 2048
    data = {
        "mlp": load_images(args.data, n_train, side_mlp, 0, flat=True),
        "cnn": load_images(args.data, n_train, side_cnn, 0, flat=False),
    }
    rows = []
    for arch, init, residual, bn in itertools.product(archs, INITS, (False, True), (False, True)):
        key = "cnn" if arch == "cnn" else "mlp"
        x_all, y_all = data[key]
        side = side_cnn if arch == "cnn" else side_mlp
        width = args.channels if arch == "cnn" else args.width
        arch_depths = [int(d) for d in args.cnn_depths.split(",")] if arch == "cnn" else depths
        batch = args.cnn_batch if arch == "cnn" else args.batch
        for depth in arch_depths:
            for seed in range(args.seeds):
                states = ["init", "trained"] if depth in train_depths else ["init"]
                for state in states:
                    net = build(arch, depth, width, init, residual, bn, side * side, side, seed)
                    tr = None
                    if state == "trained":
                        tr = train(net, x_all, y_all, args.steps, 0.02, 64, seed)
                        if tr["diverged"]:
                            rows.append(
                                dict(
                                    arch=arch,
                                    init=init,
                                    residual=residual,
                                    bn=bn,
                                    depth=depth,
                                    seed=seed,
                                    state=state,
                                    train=tr,
                                    diverged=True,
                                )
                            )
                            continue
                    gen = torch.Generator().manual_seed(1000 + seed)
                    idx = torch.randperm(x_all.shape[0], generator=gen)[:batch]
                    try:
                        res = measure(net, x_all[idx], bn, depth, args.blocks)
                    except hk.HessiankitError as exc:  # NaN activations after training, etc.
                        rows.append(
                            dict(
                                arch=arch,
                                init=init,
                                residual=residual,
                                bn=bn,
                                depth=depth,
                                seed=seed,
                                state=state,
                                train=tr,
                                error=str(exc),
                            )
                        )
                        continue
                    rows.append(
                        dict(
                            arch=arch,
                            init=init,
                            residual=residual,
                            bn=bn,
                            depth=depth,
                            seed=seed,
                            state=state,
                            train=tr,
                            **res,
                        )
                    )
            print(
                f"[depth] {arch} {init} res={residual} bn={bn} depth={depth} "
                f"({time.time() - started:.0f}s)",
                flush=True,
            )
    summary = summarise(rows)
    write_json(
        out,
        {
            "analysis": "depth",
            "args": vars(args),
            "rank_rtol": RANK_RTOL,
            "rows": rows,
            "summary": summary,
        },
        started,
    )
    figure(summary, archs, depths, out)


def _log_median(vals: list[float]) -> float:
    v = [math.log10(k) for k in vals if k is not None and np.isfinite(k) and k > 0]
    return float(np.median(v)) if v else math.nan


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(
            (r["arch"], r["init"], r["residual"], r["bn"], r["depth"], r["state"]), []
        ).append(r)
    out = []
    for (arch, init, residual, bn, depth, state), rs in sorted(groups.items()):
        ok = [r for r in rs if "kappa_w" in r]
        out.append(
            dict(
                arch=arch,
                init=init,
                residual=residual,
                bn=bn,
                depth=depth,
                state=state,
                log10_kappa_w=mean_ci([_log_median(r["kappa_w"]) for r in ok]),
                log10_kappa_z=mean_ci([_log_median(r["kappa_z"]) for r in ok]),
                rank_fraction_z=mean_ci(
                    [float(np.mean(np.array(r["rank_z"]) / np.array(r["dim_z"]))) for r in ok]
                ),
                n_failed=len(rs) - len(ok),
            )
        )
    return out


def figure(summary: list[dict], archs: list[str], depths: list[int], out) -> None:
    """One small-multiples grid per state: a row per architecture, a column per (Hessian, init).

    Each panel carries the four {plain, residual} x {no BN, BN} variants, mean and 95% t-band over
    seeds; one legend above the grid. log10 kappa >= 0 by definition and the dense solver resolves
    kappa up to about 1/RANK_RTOL, so bands are clipped to that range (dotted lines).
    """
    pyplot = plt()
    floor, cap = 0.0, -math.log10(RANK_RTOL)
    variants = {
        (False, False): ("C0", "o", "plain, no BN"),
        (False, True): ("C1", "s", "plain, BN"),
        (True, False): ("C2", "^", "residual, no BN"),
        (True, True): ("C3", "D", "residual, BN"),
    }
    cols = [(which, init) for which in ("log10_kappa_w", "log10_kappa_z") for init in INITS]
    for state in ("init", "trained"):
        fig, axes = pyplot.subplots(
            len(archs),
            len(cols),
            figsize=(3.0 * len(cols), 2.3 * len(archs) + 0.8),
            squeeze=False,
            sharey=True,
        )
        for i, arch in enumerate(archs):
            arch_depths = sorted(
                {s["depth"] for s in summary if s["arch"] == arch and s["state"] == state}
            )
            for j, (which, init) in enumerate(cols):
                ax = axes[i][j]
                for (residual, bn), (color, marker, _) in variants.items():
                    pts = sorted(
                        (
                            s
                            for s in summary
                            if (s["arch"], s["init"], s["residual"], s["bn"], s["state"])
                            == (arch, init, residual, bn, state)
                            and np.isfinite(s[which]["mean"])
                        ),
                        key=lambda s: s["depth"],
                    )
                    if not pts:
                        continue
                    d = [s["depth"] for s in pts]
                    m = np.array([s[which]["mean"] for s in pts])
                    lo = np.clip([s[which]["lo"] for s in pts], floor, cap)
                    hi = np.clip([s[which]["hi"] for s in pts], floor, cap)
                    ax.plot(d, m, "-", color=color, marker=marker, ms=3.5, lw=1.3)
                    ax.fill_between(d, lo, hi, color=color, alpha=0.15, lw=0)
                for level in (floor, cap):
                    ax.axhline(level, color="0.5", ls=":", lw=0.8)
                ax.set_xscale("log", base=2)
                shown = arch_depths or depths
                ax.set_xticks(shown, [str(x) for x in shown])
                ax.minorticks_off()
                ax.set_xlim(min(shown) / 1.25, max(shown) * 1.25)
                ax.set_ylim(floor - 0.4, cap + 0.4)
                hess = "weights H_W" if which == "log10_kappa_w" else "input H_z"
                ax.set_title(f"{arch}: {hess}, {init} init", fontsize=9)
                if i == len(archs) - 1 or arch == "cnn":
                    ax.set_xlabel("hidden blocks (depth)")
                if j == 0:
                    ax.set_ylabel("log10 kappa\n(median over blocks)")
        handles = [
            pyplot.Line2D([], [], color=c, marker=mk, ms=4, label=lab)
            for c, mk, lab in variants.values()
        ]
        handles.append(
            pyplot.Line2D([], [], color="0.5", ls=":", label="kappa = 1 and resolution limit")
        )
        top = 1.0 - 0.6 / fig.get_figheight()  # room for the title and the legend row
        fig.suptitle(
            f"kappa of the local Hessians vs depth ({state}); mean and 95% t-band over seeds, "
            "bands clipped to the measurable range",
            fontsize=10,
            y=0.995,
        )
        fig.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 1.0 - 0.3 / fig.get_figheight()),
            ncol=len(handles),
            fontsize=9,
            frameon=False,
        )
        fig.tight_layout(rect=(0, 0, 1, top))
        fig.savefig(out / f"kappa_vs_depth_{state}.png", dpi=110)
        pyplot.close(fig)


if __name__ == "__main__":
    main()
