"""The central thesis: do better-conditioned local Hessians make back-propagation train faster?

The paper argues that orthogonal init, skip connections and batch norm speed up training *because*
they improve the conditioning of the blocks' local Hessians. Here that is tested directly, across
configurations, with depth partialled out (deeper networks are both worse conditioned and slower,
which alone would give a correlation).

**Networks** (``analyses/depth.py``'s builder): MLPs of width 64 on Fashion-MNIST at 14x14 (196
inputs): an input block, ``depth`` hidden blocks, a linear classifier; activation {tanh, relu} x
init {gaussian, orthogonal} x {plain, residual} x {no BN, BN} x depth {2, 4, 8, 16}: 64
configurations, 3 seeds each.

**Conditioning at initialisation** (the predictors, measured before any training): every block's
exact weight local Hessian ``H_W`` (Gauss-Newton, all the block's parameters) on 512 training
images, 8x the width (BN in train mode), by :func:`hessiankit.spectrum` (the separable route:
per-unit Gram matrices in float64, exact, converged):

* ``log kappa``: mean over the hidden blocks of ``log10 kappa(H_W)`` on its range (the input
  block's is the input images' covariance's, the same in every configuration);
* ``scale spread``: standard deviation over the hidden blocks of ``log10 lambda_max(H_W)``: how
  unequal the blocks' curvature scales are, which one global learning rate cannot serve (the
  imbalance scale-amended SGD targets).

**Training speed** (the outcome): plain SGD (no momentum: back-propagation as one gradient step on
the back-matching losses), batch 128, constant rate, 10,000 training images; the number of steps
until the mean minibatch loss over the last 50 steps is below the target (0.45), at most 3,000
steps (a run that does not get there, or diverges, is censored at 3,000). Each configuration's
rate is tuned on seed 0 over {0.01, 0.03, 0.1, 0.3, 1} (fewest steps; ties: lower final loss);
seeds 1 and 2 train at that rate.

**Statistics.** The unit is the configuration (its seeds averaged): y = log10 steps. The partial
Spearman correlation of y with each predictor given depth (ranks centred within each depth,
then Pearson), with a 95% bootstrap interval over configurations (4,000 resamples, stratified by
depth). The thesis predicts a positive correlation (worse conditioning, more steps); it holds when
the interval lies above zero, fails when it lies below, and is inconclusive otherwise. A
robustness check holds the activation fixed as well (ReLU and tanh nets differ in both kappa and
speed for other reasons).

**Per block.** Each block's pace (:func:`hessiankit.optim.block_pace`: the share of its
back-matching loss one step removes) over the first 20 steps at the tuned rate, correlated
within each network with the block's ``log10 lambda_max`` and ``log10 kappa`` (Spearman over
blocks), averaged over networks with a t-interval: does a block learn at the pace its own local
Hessian predicts? (For a linear block the pace is ``1 - ||(I - K) g||^2 / ||g||^2`` with ``K``
the output-side local Hessian, whatever the rate: positive when ``K``'s eigenvalues in ``g``'s
directions lie in (0, 2), negative when the unit step overshoots.)

Run: ``python analyses/thesis.py [--seeds 3] [--smoke]`` -> ``figures/thesis/`` (resumable: each
measurement and run is cached under ``checkpoints/thesis/``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import ROOT, load_images, mean_ci, parser, plt, setup, write_json
from depth import build

import hessiankit as hk
from hessiankit.io.atomic import write_atomic
from hessiankit.optim import block_pace, pace_capture

ACTS = ("tanh", "relu")
INITS = ("gaussian", "orthogonal")
VARIANTS = ((False, False), (False, True), (True, False), (True, True))  # (residual, bn)


def conditioning(net: nn.Module, x: torch.Tensor, bn: bool) -> dict[str, list]:
    """Every block's weight local Hessian at ``x``: kappa on the range, lambda_max, rank."""
    cap = hk.capture(net, x, bn="train" if bn else "eval", dtype=torch.float64)
    out: dict[str, list] = {
        "kappa": [],
        "lambda_max": [],
        "rank": [],
        "dim": [],
        "method": [],
        "converged": [],
        "threshold": [],
    }
    for b in range(1, len(cap.split) + 1):
        r = hk.spectrum(hk.LocalHessian(cap, b, wrt="weights"), top=1, bottom=1)
        c = r.condition
        out["kappa"].append(float(c.kappa) if c.kappa is not None else math.nan)
        out["lambda_max"].append(float(r.top.eigenvalues[0]))
        out["rank"].append(int(c.rank or 0))
        out["dim"].append(int(r.dimension))
        out["method"].append(r.method)
        out["converged"].append(bool(c.converged))
        out["threshold"].append(float(c.threshold))
    return out


def train(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    seed: int,
    target: float,
    max_steps: int,
    window: int,
    pace_steps: int,
    bn: bool,
) -> dict:
    """Plain SGD until the windowed minibatch loss reaches ``target`` (or ``max_steps``)."""
    gen = torch.Generator().manual_seed(10_007 * seed + 1)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    split = hk.split_blocks(net) if pace_steps else None
    losses: list[float] = []
    paces: list[list[float]] = []
    net.train()

    def end(steps: int, reached: bool, diverged: bool) -> dict:
        final = float(np.mean(losses[-window:])) if losses else math.nan
        return {
            "steps": steps,
            "reached": reached,
            "diverged": diverged,
            "final": final,
            "pace": paces,
        }

    for step in range(max_steps):
        idx = torch.randint(0, x.shape[0], (128,), generator=gen)
        before = None
        if split is not None and step < pace_steps:
            with contextlib.suppress(hk.HessiankitError):  # NaN activations: the loss says so
                before = pace_capture(split, x[idx], y[idx], bn="train" if bn else "eval")
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        if not torch.isfinite(loss):
            losses.clear()  # a non-finite loss has no final value
            return end(max_steps, False, True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if before is not None:
            with contextlib.suppress(hk.HessiankitError):  # e.g. a zero gradient
                paces.append([p.matched for p in block_pace(before, net, eta=lr)])
        losses.append(loss.item())
        if len(losses) >= window:
            mean = float(np.mean(losses[-window:]))
            if mean > 5 * math.log(10):  # far above chance level: diverging
                return end(max_steps, False, True)
            if mean < target:
                return end(step + 1, True, False)
    return end(max_steps, False, False)


class Cache:
    """One JSON file per measurement or run, so that an interrupted analysis resumes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, compute):  # type: ignore[no-untyped-def]
        path = self.folder / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        write_atomic(path, json.dumps(value, allow_nan=True))
        return value


def partial_spearman(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Spearman correlation of x and y given a categorical covariate: ranks centred within
    each group, then Pearson of the residuals."""
    from scipy import stats

    rx, ry = stats.rankdata(x), stats.rankdata(y)
    for g in np.unique(groups):
        sel = groups == g
        rx[sel] -= rx[sel].mean()
        ry[sel] -= ry[sel].mean()
    den = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / den) if den > 0 else math.nan


def bootstrap_ci(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, reps: int, seed: int
) -> dict[str, float]:
    """Partial Spearman with a 95% percentile interval, resampling units within each group."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    draws = []
    for _ in range(reps):
        idx = np.concatenate([rng.choice(m, size=m.size, replace=True) for m in members])
        r = partial_spearman(x[idx], y[idx], groups[idx])
        if math.isfinite(r):
            draws.append(r)
    lo, hi = np.quantile(draws, [0.025, 0.975]) if draws else (math.nan, math.nan)
    return {"r": partial_spearman(x, y, groups), "lo": float(lo), "hi": float(hi), "n": int(x.size)}


def verdict(ci: dict[str, float]) -> str:
    if ci["lo"] > 0:
        return "holds"
    if ci["hi"] < 0:
        return "fails"
    return "inconclusive"


def measure_config(cfg: tuple, args, cache: Cache, data: tuple, started: float) -> list[dict]:  # type: ignore[no-untyped-def]
    """One configuration: the rate sweep on seed 0, then every seed's conditioning at init and
    its run at the chosen rate. The Hessian images (``data[2]``) are not training images."""
    act, init, residual, bn, depth = cfg
    x_tr, y_tr, x_h = data
    name = f"{act}-{init}-{'res' if residual else 'plain'}-{'bn' if bn else 'nobn'}-d{depth}"
    tag = f"w{args.width}-s{args.side}-m{args.hessian_batch}-t{args.target:g}-n{args.max_steps}"
    rates = [float(r) for r in args.rates.split(",")]

    def net(seed: int) -> nn.Module:
        side = args.side
        return build(act, depth, args.width, init, residual, bn, side * side, side, seed)

    def run(lr: float, seed: int) -> dict:
        return train(
            net(seed),
            x_tr,
            y_tr,
            lr=lr,
            seed=seed,
            target=args.target,
            max_steps=args.max_steps,
            window=5 if args.smoke else 50,
            pace_steps=args.pace_steps,
            bn=bn,
        )

    sweep = {
        lr: cache.get(f"run-{name}-{tag}-lr{lr:g}-s0", lambda lr=lr: run(lr, 0)) for lr in rates
    }
    best = min(rates, key=lambda lr: (sweep[lr]["steps"], _finite(sweep[lr]["final"])))
    rows = []
    for seed in range(args.seeds):
        cond = cache.get(f"cond-{name}-{tag}-s{seed}", lambda s=seed: conditioning(net(s), x_h, bn))
        tr = (
            sweep[best]
            if seed == 0
            else cache.get(f"run-{name}-{tag}-lr{best:g}-s{seed}", lambda s=seed: run(best, s))
        )
        rows.append(
            dict(
                act=act,
                init=init,
                residual=residual,
                bn=bn,
                depth=depth,
                seed=seed,
                lr=best,
                sweep={f"{k:g}": v["steps"] for k, v in sweep.items()},
                **cond,
                train={k: v for k, v in tr.items() if k != "pace"},
                pace=_mean_pace(tr["pace"]),  # per block, over the measured steps
            )
        )
    print(
        f"[thesis] {name}: lr {best:g}, steps {sweep[best]['steps']} "
        f"({time.time() - started:.0f}s)",
        flush=True,
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = parser("thesis", __doc__)
    p.set_defaults(seeds=3)
    p.add_argument("--depths", default="2,4,8,16")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--side", type=int, default=14, help="images resized to side x side")
    p.add_argument("--hessian-batch", type=int, default=512)
    p.add_argument("--train-size", type=int, default=10_000)
    p.add_argument("--rates", default="0.01,0.03,0.1,0.3,1")
    p.add_argument("--target", type=float, default=0.45, help="training loss to reach")
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--pace-steps", type=int, default=20)
    p.add_argument("--cache", type=Path, default=None, help="default checkpoints/thesis")
    p.add_argument("--bootstrap", type=int, default=4000)
    args = p.parse_args(argv)
    out = setup(args, "thesis")
    if args.smoke:
        args.depths, args.width, args.side, args.hessian_batch = "2,3", 8, 7, 32
        args.train_size, args.rates, args.target, args.max_steps = 256, "0.1,0.3", 2.0, 40
        args.pace_steps, args.bootstrap = 3, 200
        args.seeds = 2
    cache = Cache(args.cache or (out / "cache" if args.smoke else ROOT / "checkpoints" / "thesis"))
    started = time.time()
    depths = [int(d) for d in args.depths.split(",")]
    n_hess = args.hessian_batch
    x_all, y_all = load_images(args.data, args.train_size + n_hess, args.side, 0, flat=True)
    data = (x_all[: args.train_size], y_all[: args.train_size], x_all[args.train_size :])

    rows = []
    for act, init, (residual, bn), depth in itertools.product(ACTS, INITS, VARIANTS, depths):
        rows += measure_config((act, init, residual, bn, depth), args, cache, data, started)
    summary = summarise(rows, args.bootstrap)
    write_json(
        out, {"analysis": "thesis", "args": vars(args), "rows": rows, "summary": summary}, started
    )
    figures(rows, summary, out, args)
    write_atomic(out / "table.md", table(summary, args))
    print(table(summary, args))


def _mean_pace(paces: list[list[float]]) -> list[float]:
    rows = [p for p in paces if p]
    return np.nanmean(np.asarray(rows, dtype=float), axis=0).tolist() if rows else []


def _finite(v: float) -> float:
    return v if v is not None and math.isfinite(v) else math.inf


def _network_stats(r: dict) -> tuple[float, float]:
    """Mean log10 kappa and std of log10 lambda_max over the hidden blocks (the input block's
    kappa is the input images' covariance's, the same in every configuration)."""
    hidden = slice(1, r["depth"] + 1)
    k = [
        math.log10(v)
        for v, ok in zip(r["kappa"][hidden], r["converged"][hidden])
        if ok and v is not None and math.isfinite(v) and v > 0
    ]
    lam = [math.log10(v) for v in r["lambda_max"][hidden] if v is not None and v > 0]
    return (float(np.mean(k)) if k else math.nan, float(np.std(lam)) if len(lam) > 1 else math.nan)


def summarise(rows: list[dict], reps: int) -> dict:
    configs: dict[tuple, list[dict]] = {}
    for r in rows:
        configs.setdefault((r["act"], r["init"], r["residual"], r["bn"], r["depth"]), []).append(r)
    units = []
    for key, rs in sorted(configs.items()):
        stats_ = [_network_stats(r) for r in rs]
        steps = [r["train"]["steps"] for r in rs]
        units.append(
            dict(
                zip(("act", "init", "residual", "bn", "depth"), key),
                log_kappa=float(np.nanmean([s[0] for s in stats_])),
                scale_spread=float(np.nanmean([s[1] for s in stats_])),
                log_steps=float(np.mean(np.log10(steps))),
                censored=sum(not r["train"]["reached"] for r in rs),
                seeds=len(rs),
                lr=rs[0]["lr"],
            )
        )
    y = np.array([u["log_steps"] for u in units])
    depth = np.array([u["depth"] for u in units])
    out: dict = {"units": units, "correlations": {}}
    # robustness: the activation held fixed too (ReLU and tanh nets differ in both kappa and
    # speed for reasons other than the thesis)
    depth_act = depth * 2 + np.array([u["act"] == "relu" for u in units])
    from scipy import stats

    for j, pred in enumerate(("log_kappa", "scale_spread")):
        x = np.array([u[pred] for u in units])
        ok = np.isfinite(x) & np.isfinite(y)
        ci = bootstrap_ci(x[ok], y[ok], depth[ok], reps, seed=j)
        robust = bootstrap_ci(x[ok], y[ok], depth_act[ok], reps, seed=j)
        raw = stats.spearmanr(x[ok], y[ok]).statistic
        out["correlations"][pred] = {
            **ci,
            "raw_spearman": float(raw),
            "verdict": verdict(ci),
            "given_depth_and_activation": {**robust, "verdict": verdict(robust)},
        }
    out["per_block"] = per_block(rows)
    out["censored_runs"] = int(sum(u["censored"] for u in units))
    out["runs"] = int(sum(u["seeds"] for u in units))
    return out


def per_block(rows: list[dict]) -> dict:
    """Within each network: Spearman over blocks of the early pace with log lambda_max and with
    log kappa; mean and t-interval over networks."""
    from scipy import stats

    res: dict[str, list[float]] = {"lambda_max": [], "kappa": []}
    for r in rows:
        if not r["pace"]:
            continue
        pace = np.asarray(r["pace"], dtype=float)
        for key in res:
            v = np.array([math.log10(a) if a and a > 0 else math.nan for a in r[key]])
            ok = np.isfinite(v) & np.isfinite(pace)
            if ok.sum() >= 3 and np.ptp(pace[ok]) > 0 and np.ptp(v[ok]) > 0:
                res[key].append(float(stats.spearmanr(v[ok], pace[ok]).statistic))
    return {k: mean_ci(v) for k, v in res.items()}


def figures(rows: list[dict], summary: dict, out: Path, args) -> None:  # type: ignore[no-untyped-def]
    max_steps = args.max_steps
    sizes = (
        f"MLP width {args.width}, {args.data} {args.side}x{args.side}, Hessian batch "
        f"{args.hessian_batch}"
    )
    pyplot = plt()
    units = summary["units"]
    depths = sorted({u["depth"] for u in units})
    colors = {d: f"C{i}" for i, d in enumerate(depths)}
    markers = {(False, False): "o", (False, True): "s", (True, False): "^", (True, True): "D"}
    fig, axes = pyplot.subplots(1, 2, figsize=(11.0, 4.3), sharey=True)
    for ax, (pred, label) in zip(
        axes,
        (
            ("log_kappa", "mean over the hidden blocks of log10 kappa(H_W) at init"),
            ("scale_spread", "std over the hidden blocks of log10 lambda_max(H_W) at init"),
        ),
    ):
        for u in units:
            ax.scatter(
                u[pred],
                u["log_steps"],
                color=colors[u["depth"]],
                marker=markers[(u["residual"], u["bn"])],
                s=28,
                facecolors="none" if u["init"] == "gaussian" else colors[u["depth"]],
                alpha=0.85,
            )
        c = summary["correlations"][pred]
        ax.set_title(
            f"partial Spearman given depth {c['r']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}]"
            f": {c['verdict']}",
            fontsize=9,
        )
        ax.set_xlabel(label)
        ax.axhline(math.log10(max_steps), color="0.5", ls=":", lw=0.8)
    axes[0].set_ylabel("log10 steps to the target loss\n(tuned rate, mean over seeds)")
    handles = [
        pyplot.Line2D([], [], color=colors[d], marker="o", ls="", label=f"depth {d}")
        for d in depths
    ]
    names = {
        (False, False): "plain",
        (False, True): "plain + BN",
        (True, False): "residual",
        (True, True): "residual + BN",
    }
    handles += [
        pyplot.Line2D([], [], color="0.3", marker=m, ls="", label=names[k])
        for k, m in markers.items()
    ]
    handles += [
        pyplot.Line2D(
            [], [], color="0.3", marker="o", ls="", mfc="none", label="gaussian init (open)"
        ),
        pyplot.Line2D([], [], color="0.5", ls=":", label="censored (never reached)"),
    ]
    fig.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8
    )
    _save(
        fig,
        out / "thesis.png",
        "Training speed vs local-Hessian conditioning at init (one "
        f"point per configuration: {sizes})",
    )
    kappa_vs_depth(rows, out, sizes)


def kappa_vs_depth(rows: list[dict], out: Path, sizes: str) -> None:
    """The depth grid (width 64, Hessian batch 512 by default): mean over the hidden blocks of
    log10 kappa(H_W) at init."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 4, figsize=(12.5, 3.2), sharey=True)
    styles = {
        (False, False): ("C0", "plain, no BN"),
        (False, True): ("C1", "plain, BN"),
        (True, False): ("C2", "residual, no BN"),
        (True, True): ("C3", "residual, BN"),
    }
    for ax, (act, init) in zip(axes, itertools.product(ACTS, INITS)):
        for (residual, bn), (color, label) in styles.items():
            sel = [
                r
                for r in rows
                if (r["act"], r["init"], r["residual"], r["bn"]) == (act, init, residual, bn)
            ]
            ds = sorted({r["depth"] for r in sel})
            stats_ = [mean_ci([_network_stats(r)[0] for r in sel if r["depth"] == d]) for d in ds]
            m = [s["mean"] for s in stats_]
            ax.plot(ds, m, "-o", ms=3.5, color=color, label=label)
            ax.fill_between(
                ds,
                [max(s["lo"], 0.0) for s in stats_],
                [s["hi"] for s in stats_],
                color=color,
                alpha=0.15,
                lw=0,
            )
        ax.set_xscale("log", base=2)
        depths = sorted({r["depth"] for r in rows})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_title(f"{act}, {init} init", fontsize=9)
        ax.set_xlabel("hidden blocks (depth)")
    axes[0].set_ylabel("mean over the hidden blocks\nof log10 kappa(H_W)")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=8)
    _save(
        fig,
        out / "kappa_vs_depth_w64.png",
        f"Weight local Hessians at init, {sizes} (mean and 95% t-band over seeds)",
    )


def _save(fig, path: Path, title: str) -> None:  # type: ignore[no-untyped-def]
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt().close(fig)


def table(summary: dict, args) -> str:  # type: ignore[no-untyped-def]
    c = summary["correlations"]
    pb = summary["per_block"]
    lines = [
        "# The central thesis: conditioning at init vs training speed",
        "",
        f"MLPs of width {args.width} on {args.data} at {args.side}x{args.side}; depths "
        f"{args.depths}; {args.seeds} seeds; Hessians on {args.hessian_batch} images; plain SGD, "
        f"batch 128, target loss {args.target:g} (window mean), at most {args.max_steps} steps, "
        f"rate tuned per configuration over {args.rates}. {summary['runs']} networks, "
        f"{summary['censored_runs']} censored.",
        "",
        "| predictor | raw Spearman | partial Spearman given depth | 95% bootstrap CI | verdict | "
        "given depth and activation (robustness) |",
        "|---|---|---|---|---|---|",
    ]
    for pred, label in (
        ("log_kappa", "mean log10 kappa(H_W)"),
        ("scale_spread", "std of log10 lambda_max(H_W)"),
    ):
        r = c[pred]
        b = r["given_depth_and_activation"]
        lines.append(
            f"| {label} | {r['raw_spearman']:+.3f} | {r['r']:+.3f} | "
            f"[{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['verdict']} | {b['r']:+.3f} "
            f"[{b['lo']:+.3f}, {b['hi']:+.3f}], {b['verdict']} |"
        )
    lines += [
        "",
        "Per block (Spearman over a network's blocks of the early pace with the block's "
        f"curvature, mean and 95% t-CI over networks): log10 lambda_max "
        f"{pb['lambda_max']['mean']:+.3f} [{pb['lambda_max']['lo']:+.3f}, "
        f"{pb['lambda_max']['hi']:+.3f}] (n={pb['lambda_max']['n']}); log10 kappa "
        f"{pb['kappa']['mean']:+.3f} [{pb['kappa']['lo']:+.3f}, {pb['kappa']['hi']:+.3f}] "
        f"(n={pb['kappa']['n']}).",
        "",
        "| act | init | residual | BN | depth | mean log10 kappa | scale spread | tuned lr | "
        "log10 steps | censored |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for u in summary["units"]:
        lines.append(
            f"| {u['act']} | {u['init']} | {u['residual']} | {u['bn']} | {u['depth']} | "
            f"{u['log_kappa']:.2f} | {u['scale_spread']:.2f} | {u['lr']:g} | "
            f"{u['log_steps']:.2f} | {u['censored']}/{u['seeds']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
