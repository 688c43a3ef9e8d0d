"""Exact per-block conditioning of real architectures over training (issue 15, item 1).

Configurations (``--configs``, default all eight): VGG13 with vs without batch norm, and the
ResNet-20-style network (:func:`hessiankit.models.resnet.resnet20`, batch norm on) with vs
without its skip connections, each with He (Kaiming-normal) or orthogonal initialisation
(:mod:`hessiankit.models.init`)::

    vgg13-bn-{he,orth}       vgg13-nobn-{he,orth}
    resnet20-skip-{he,orth}  resnet20-noskip-{he,orth}

Training: plain SGD (momentum 0.9, weight decay 5e-4, learning rate 0.02 for every
configuration, batch 128, no augmentation) on the Fashion-MNIST train split padded to 1x32x32
(all 60,000 images unless ``--train-subset``), data order seeded by the run's seed.

Measurement at each checkpoint (``--epochs``, default 0, 1, 5, 20 epochs): on a fixed Hessian
batch of training images (default 8x the widest layer of the network, so at least 8x every
block's widest layer; ``--hessian-batch-cap`` bounds it for a CPU budget; the same images, the
first m of one fixed draw, for every configuration, seed and checkpoint), captured in float64
with batch norm in train mode, every block's Gauss-Newton **weight** local Hessian is solved
exactly through the pipeline's per-block solve (:func:`hessiankit.pipeline.run_blocks`):
conv/linear blocks by the per-channel route (``method="separable"``, the
``separable-jacobian`` solver of :mod:`hessiankit.solvers.separable`, as ``hessiankit spectrum
--method separable``), residual units (two convs, not separable) by dense ``eigh`` up to
``DENSE_WEIGHTS_MAX`` weights (``method="auto"`` with that ``dense_threshold``; block Lanczos
above it, flags kept): the whole spectrum, rank, nullity and kappa on the range (the
library's default null threshold). The **input** local Hessian (``--input-batch`` images,
default 4, with their own batch statistics; 0 skips it) goes through ``method="auto"``: exact
per sample where the block does not couple samples (no batch norm), dense where that is
cheaper, otherwise block Lanczos under ``--input-products``; its ``converged`` flags are kept
and an unconverged kappa is never counted (the summaries count converged seeds, the figures
draw only converged values). With batch norm the input Hessian couples the batch, so a small
input batch measures a different (small-batch) operator: use 16 or more on a GPU.

Every (configuration, seed, checkpoint) writes one JSON under ``<out>/runs/<config>/``;
training keeps a checkpoint per epoch under ``--checkpoints`` (default
``checkpoints/real_architectures/``), so a killed run continues where it stopped and a finished
measurement is never redone. Selections (``--configs``, ``--seed-list``, ``--epochs``) split a
run into commands of any size; ``--aggregate`` rebuilds ``results.json`` and the figures from
whatever JSON is there.

Outputs (``figures/real_architectures/``): ``results.json`` (per configuration, checkpoint and
block: kappa per seed, median, min, max; rank, nullity; routes; timings),
``kappa_vgg13.png`` and ``kappa_resnet20.png`` (weight kappa vs block index, BN vs no BN or
skip vs no skip, one panel per init and checkpoint, median and min-max band over seeds,
clipped at kappa = 1), ``input_kappa_*.png`` (the converged input kappas) and
``spectra_<config>.png`` (exact weight spectra per block over the checkpoints, seed 0).

Run here (2 CPU cores shared with other jobs, one thread, ``nice``; sizes and times in the
README's analyses table): width 1/8, 10,000 training images, Hessian batch 8x the widest
layer capped at 128 (VGG13: 128 = 2x its widest layer of 64, 16x that of blocks 1-2, 8x that of
blocks 3-4; ResNet: 80), no input Hessians; all 3 seeds finished in 53 min of wall time::

    OMP_NUM_THREADS=1 nice -n 10 python analyses/real_architectures.py --width 0.125 \
        --seeds 3 --epochs 0,1 --train-subset 10000 --hessian-batch-cap 128 --input-batch 0

Full run for a GPU (issue 15's sizes: all 60,000 images, Hessian batch 8x the widest layer,
i.e. 1,024 at width 1/4 and 4,096 at width 1 for VGG13; split by ``--configs`` /
``--seed-list`` / ``--epochs`` into commands of about 90 minutes if needed)::

    python analyses/real_architectures.py --device cuda --width 0.25 --seeds 3 \
        --epochs 0,1,5,20 --input-batch 16 --out figures/real_architectures/width-0.25
    python analyses/real_architectures.py --device cuda --width 1 --seeds 3 \
        --epochs 0,1,5,20 --input-batch 16 --out figures/real_architectures/width-1

(At width 1 the ResNet units have 73,984 weights, over ``DENSE_WEIGHTS_MAX``: their weight
kappas come from block Lanczos and carry its converged flags.)

``--smoke``: digits instead of Fashion-MNIST, width 1/32, 256 training images, batch 32,
epochs 0 and 1, one seed (seconds; ``tests/analyses/test_real_architectures_smoke.py``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, parser, plt, setup, write_json  # noqa: E402

import hessiankit as hk  # noqa: E402
from hessiankit.data import load_dataset  # noqa: E402
from hessiankit.errors import OperatorError  # noqa: E402
from hessiankit.io.atomic import write_atomic  # noqa: E402
from hessiankit.models.resnet import resnet20  # noqa: E402
from hessiankit.pipeline import SolverOptions, block_operators, run_blocks  # noqa: E402

NAME = "real_architectures"


@dataclass(frozen=True)
class ArchConfig:
    """One network of the grid."""

    name: str
    arch: str  # "vgg13" or "resnet20"
    batch_norm: bool
    skip: bool
    init: str  # "he" or "orthogonal"

    @property
    def pair(self) -> str:
        """The comparison this configuration belongs to, and its side in it."""
        if self.arch == "vgg13":
            return "BN" if self.batch_norm else "no BN"
        return "skip" if self.skip else "no skip"


CONFIGS: dict[str, ArchConfig] = {
    c.name: c
    for c in [
        ArchConfig(f"vgg13-{b}-{i[:4]}", "vgg13", b == "bn", False, i)
        for b in ("bn", "nobn")
        for i in ("he", "orthogonal")
    ]
    + [
        ArchConfig(f"resnet20-{s}-{i[:4]}", "resnet20", True, s == "skip", i)
        for s in ("skip", "noskip")
        for i in ("he", "orthogonal")
    ]
}

#: Training recipe, the same for every configuration (no per-configuration tuning: the
#: measurement is the local Hessian along a common SGD trajectory, not the best accuracy).
LR, MOMENTUM, WEIGHT_DECAY, TRAIN_BATCH = 0.02, 0.9, 5e-4, 128
#: Seed of the Hessian batch's images (shared by every configuration, seed and checkpoint).
HESSIAN_DATA_SEED = 12345
#: Bins of log10(lambda / lambda_max) of the stored exact spectra (eigenvalues on the range).
HIST_EDGES = np.linspace(-14.0, 0.0, 57)


def build(cfg: ArchConfig, width: float, seed: int, in_channels: int = 1) -> nn.Sequential:
    if cfg.arch == "vgg13":
        return hk.vgg(
            "vgg13",
            in_channels=in_channels,
            num_classes=10,
            width=width,
            batch_norm=cfg.batch_norm,
            init=cfg.init,
            seed=seed,
        )
    return resnet20(
        in_channels=in_channels,
        num_classes=10,
        width=width,
        skip=cfg.skip,
        batch_norm=cfg.batch_norm,
        init=cfg.init,
        seed=seed,
    )


def widest(net: nn.Module) -> int:
    """The largest number of output channels / units of any weighted layer."""
    return max(
        (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    )


# ------------------------------------------------------------------------------------ data


def load_train(
    name: str, subset: int | None, hessian_batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training images (padded to 32x32) and the fixed Hessian batch drawn from them."""
    x, y = load_dataset(name, split="train", num_samples=subset, input_shape=(1, 32, 32), seed=0)
    gen = torch.Generator().manual_seed(HESSIAN_DATA_SEED)
    idx = torch.randperm(x.shape[0], generator=gen)[:hessian_batch]
    return x, y, x[idx].clone(), y[idx].clone()


# ------------------------------------------------------------------------------------ training


def trained(
    cfg: ArchConfig,
    seed: int,
    epoch: int,
    args,
    data: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
) -> tuple[nn.Sequential, dict]:
    """The network of ``cfg`` and ``seed`` after ``epoch`` epochs of SGD, resuming from the
    latest checkpoint at or before it; a checkpoint is written after every epoch."""
    ck = args.checkpoints / f"w{args.width:g}" / cfg.name
    ck.mkdir(parents=True, exist_ok=True)
    net = build(cfg, args.width, seed).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    hist: dict = {"epoch_loss": [], "epoch_seconds": [], "diverged": False}
    start = 0
    for e in range(epoch, 0, -1):
        path = ck / f"seed{seed}_epoch{e}.pt"
        if path.exists():
            state = torch.load(path, map_location=device, weights_only=True)
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            hist = json.loads(state["history"])
            start = e
            break
    x, y = data
    n = x.shape[0]
    for e in range(start, epoch):
        if hist["diverged"]:
            break
        gen = torch.Generator().manual_seed(1_000_003 * seed + e)
        order = torch.randperm(n, generator=gen)
        net.train()
        total, t0 = 0.0, time.perf_counter()
        for s in range(0, n, args.train_batch):
            idx = order[s : s + args.train_batch]
            xb, yb = x[idx].to(device), y[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        mean = total / n
        hist["epoch_loss"].append(mean)
        hist["epoch_seconds"].append(time.perf_counter() - t0)
        hist["diverged"] = not math.isfinite(mean)
        path = ck / f"seed{seed}_epoch{e + 1}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(
            {"model": net.state_dict(), "optimizer": opt.state_dict(), "history": json.dumps(hist)},
            tmp,
        )
        os.replace(tmp, path)
    return net, hist


# ------------------------------------------------------------------------------------ measurement


def _summary(r, with_hist: bool) -> dict:
    s = r.spectrum
    c = s.condition
    row = {
        "block": r.index,
        "name": r.name,
        "dimension": s.dimension,
        "method": s.method,
        "method_reason": s.method_reason,
        "lambda_max": c.lambda_max,
        "lambda_min_nonzero": c.lambda_min_nonzero,
        "kappa": c.kappa,
        "kappa_error": c.kappa_error,
        "converged": bool(c.converged and s.converged),
        "rank": c.rank,
        "nullity": c.nullity,
        "rank_threshold": c.threshold,
        "precision": s.precision,
        "num_products": s.num_products,
        "seconds": s.seconds,
        "note": c.note,
        "notes": list(r.notes),
    }
    if with_hist and s.eigenvalues is not None and c.lambda_max > 0:
        ev = np.asarray(s.eigenvalues, dtype=np.float64)
        on = ev[ev > c.threshold]
        counts, _ = np.histogram(np.log10(on / c.lambda_max), bins=HIST_EDGES)
        row["spectrum_hist"] = counts.tolist()
        row["spectrum_zeros"] = int(ev.size - on.size)
    return row


#: Weight blocks that are not separable (residual units: two convs) go dense up to this
#: dimension (every ResNet unit at width <= 1/4), block Lanczos above (flags kept).
DENSE_WEIGHTS_MAX = 8192


def exact_weights(ops, block):
    """The block's weight local Hessian by the exact per-channel route where it applies
    (``method="separable"``, as ``hessiankit spectrum --method separable``), else dense
    ``eigh`` up to :data:`DENSE_WEIGHTS_MAX`, else ``method="auto"`` (block Lanczos)."""
    try:
        return run_blocks(ops, [block], SolverOptions(top=1, bottom=1, method="separable"))[0]
    except OperatorError:
        opts = SolverOptions(top=1, bottom=1, method="auto", dense_threshold=DENSE_WEIGHTS_MAX)
        return run_blocks(ops, [block], opts)[0]


def measure(net: nn.Sequential, xh: torch.Tensor, yh: torch.Tensor, args) -> dict:
    """Every block's weight local Hessian (exact) and input local Hessian (flags kept)."""
    net64 = net.double()
    t0 = time.perf_counter()
    dev = next(net64.parameters()).device
    x64 = xh.to(device=dev, dtype=torch.float64)
    cap = hk.capture(net64, x64, yh.to(dev), bn="train", dtype=torch.float64, gradients=False)
    with torch.no_grad():
        loss = float(F.cross_entropy(cap.activations[-1], yh.to(dev)))
    capture_s = time.perf_counter() - t0
    ops = block_operators(cap, wrt="weights")
    weights = [exact_weights(ops, b) for b in cap.split]
    out: dict = {
        "hessian_batch": int(xh.shape[0]),
        "hessian_batch_loss": loss,
        "capture_seconds": capture_s,
        "weights": [_summary(r, True) for r in weights],
    }
    del cap
    if args.input_batch > 0:
        t1 = time.perf_counter()
        m = min(args.input_batch, int(xh.shape[0]))
        capi = hk.capture(net64, x64[:m], None, bn="train", dtype=torch.float64, gradients=False)
        inputs = run_blocks(
            block_operators(capi, wrt="input"),
            "all",
            SolverOptions(
                top=1,
                bottom=1,
                method="auto",
                seed=0,
                clip=True,
                max_products=args.input_products,
            ),
        )
        out["input_batch"] = m
        out["input"] = [_summary(r, False) for r in inputs]
        out["input_seconds"] = time.perf_counter() - t1
    return out


def run_path(out: Path, cfg: str, seed: int, epoch: int) -> Path:
    return out / "runs" / cfg / f"seed{seed}_epoch{epoch}.json"


def one(cfg: ArchConfig, seed: int, epoch: int, args, data, hess, device) -> dict:
    path = run_path(args.out_dir, cfg.name, seed, epoch)
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    net, hist = trained(cfg, seed, epoch, args, data, device)
    train_s = time.perf_counter() - t0
    row: dict = {
        "config": cfg.name,
        "arch": cfg.arch,
        "batch_norm": cfg.batch_norm,
        "skip": cfg.skip,
        "init": cfg.init,
        "width": args.width,
        "seed": seed,
        "epoch": epoch,
        "train_samples": int(data[0].shape[0]),
        "train_batch": args.train_batch,
        "lr": LR,
        "momentum": MOMENTUM,
        "weight_decay": WEIGHT_DECAY,
        "epoch_loss": hist["epoch_loss"][:epoch],
        "epoch_seconds": hist["epoch_seconds"][:epoch],
        "diverged": bool(hist["diverged"]),
        "train_seconds_this_call": train_s,
        "widest_layer": widest(net),
        "device": str(device),
        "torch": torch.__version__,
    }
    if hist["diverged"]:
        row["weights"] = []
    else:
        t1 = time.perf_counter()
        row.update(measure(net, *hess, args))
        row["measure_seconds"] = time.perf_counter() - t1
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(_finite(row), indent=1))
    return row


def _finite(x: object) -> object:
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ------------------------------------------------------------------------------------ summary


def _stats(values: list[float]) -> dict:
    v = np.asarray([a for a in values if a is not None and math.isfinite(a)], dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": int(v.size),
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def aggregate(out: Path) -> dict:
    """Per configuration, checkpoint and block: kappa over seeds (weights exact; input: the
    converged ones only, with their count)."""
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/*.json"))]
    summary: dict = {}
    for r in runs:
        c = summary.setdefault(r["config"], {"arch": r["arch"], "init": r["init"], "epochs": {}})
        e = c["epochs"].setdefault(str(r["epoch"]), {"seeds": [], "weights": {}, "input": {}})
        e["seeds"].append(r["seed"])
        for side in ("weights", "input"):
            for b in r.get(side, []):
                d = e[side].setdefault(
                    str(b["block"]),
                    {
                        "name": b["name"],
                        "dimension": b["dimension"],
                        "kappa": [],
                        "rank": [],
                        "nullity": [],
                        "methods": [],
                        "converged": [],
                    },
                )
                ok = bool(b["converged"])
                d["kappa"].append(b["kappa"] if ok else None)
                # not converged: the smallest nonzero eigenvalue sits at the precision floor
                # (weights: within a few times float64's floor, so kappa is unresolved, of the
                # order of 1e11 or more); kept apart, drawn as crosses, never in the stats
                d.setdefault("unresolved_kappa", []).append(None if ok else b["kappa"])
                d["rank"].append(b["rank"])
                d["nullity"].append(b["nullity"])
                d["methods"].append(b["method"])
                d["converged"].append(ok)
    for c in summary.values():
        for e in c["epochs"].values():
            for side in ("weights", "input"):
                for d in e[side].values():
                    d["stats"] = _stats(d["kappa"])
                    d["unresolved"] = sum(k is not None for k in d.get("unresolved_kappa", []))
            for side in ("weights", "input"):
                meds = [d["stats"]["median"] for d in e[side].values() if d["stats"]["n"]]
                e[f"{side}_median_kappa_over_blocks"] = float(np.median(meds)) if meds else None
    return {"configs": summary, "runs": len(runs), "comparisons": compare(summary)}


def _block_medians(summary: dict, name: str, epoch: str) -> dict[str, float] | None:
    """Median weight kappa over seeds per block, an unresolved value counting as +inf."""
    e = summary.get(name, {}).get("epochs", {}).get(epoch)
    if not e or not e["weights"]:
        return None
    out = {}
    for b, d in e["weights"].items():
        vals = [k if k is not None else math.inf for k in d["kappa"]]
        vals = [v for v, u in zip(vals, d["unresolved_kappa"]) if v != math.inf or u is not None]
        out[b] = float(np.median(vals)) if vals else math.nan
    return out


def compare(summary: dict) -> dict:
    """Per init and checkpoint: in how many blocks BN (skip) has the smaller median kappa than
    no BN (no skip), and orthogonal than He; median over blocks of log10 of the ratio."""
    pairs = [
        (f"{a}-{i}", f"{b}-{i}", f"{a} vs {b}, {i}")
        for a, b in (("vgg13-bn", "vgg13-nobn"), ("resnet20-skip", "resnet20-noskip"))
        for i in ("he", "orth")
    ] + [
        (f"{v}-orth", f"{v}-he", f"{v}: orth vs he")
        for v in ("vgg13-bn", "vgg13-nobn", "resnet20-skip", "resnet20-noskip")
    ]
    out: dict = {}
    epochs = sorted({e for c in summary.values() for e in c["epochs"]}, key=int)
    for a, b, label in pairs:
        for ep in epochs:
            ma, mb = _block_medians(summary, a, ep), _block_medians(summary, b, ep)
            if ma is None or mb is None:
                continue
            common = [k for k in ma if k in mb and not (math.isnan(ma[k]) or math.isnan(mb[k]))]
            finite = [k for k in common if math.isfinite(ma[k]) and math.isfinite(mb[k])]
            ratios = [math.log10(ma[k] / mb[k]) for k in finite]
            out[f"{label}, epoch {ep}"] = {
                "blocks": len(common),
                "first_smaller": sum(ma[k] < mb[k] for k in common),
                "median_log10_ratio": float(np.median(ratios)) if ratios else None,
                "seeds": [
                    len(summary[a]["epochs"][ep]["seeds"]),
                    len(summary[b]["epochs"][ep]["seeds"]),
                ],
            }
    return out


def _pairs() -> dict[str, list[str]]:
    return {
        "vgg13": ["vgg13-bn-{i}", "vgg13-nobn-{i}"],
        "resnet20": ["resnet20-skip-{i}", "resnet20-noskip-{i}"],
    }


def plot_kappa(summary: dict, out: Path, side: str = "weights") -> list[str]:
    """Weight (or converged input) kappa vs block index, one panel per init and checkpoint."""
    pyplot = plt()
    written = []
    cfgs = summary["configs"]
    for arch, pattern in _pairs().items():
        epochs = sorted(
            {
                int(e)
                for p in pattern
                for i in ("he", "orth")
                for e in cfgs.get(p.format(i=i), {}).get("epochs", {})
            }
        )
        if not epochs:
            continue
        fig, axes = pyplot.subplots(
            len(epochs), 2, figsize=(10, 2.9 * len(epochs) + 0.8), squeeze=False, sharey=True
        )
        handles = {}
        for row, ep in enumerate(epochs):
            for col, init in enumerate(("he", "orth")):
                ax = axes[row][col]
                for k, p in enumerate(pattern):
                    name = p.format(i=init)
                    e = cfgs.get(name, {}).get("epochs", {}).get(str(ep))
                    if not e or not e[side]:
                        continue
                    blocks = sorted(e[side], key=int)
                    idx = np.array([int(b) for b in blocks])
                    st = [e[side][b]["stats"] for b in blocks]
                    med = np.array([s["median"] if s["n"] else np.nan for s in st], dtype=float)
                    lo = np.array([s["min"] if s["n"] else np.nan for s in st], dtype=float)
                    hi = np.array([s["max"] if s["n"] else np.nan for s in st], dtype=float)
                    n = max((s["n"] for s in st), default=0)
                    color = f"C{k}"
                    label = CONFIGS[name].pair
                    (h,) = ax.plot(
                        idx, np.maximum(med, 1.0), "o-", color=color, ms=3.5, label=label
                    )
                    ax.fill_between(
                        idx, np.maximum(lo, 1.0), np.maximum(hi, 1.0), color=color, alpha=0.2, lw=0
                    )
                    handles[label] = (h, max(n, handles.get(label, (None, 0))[1]))
                    bad = [
                        (i, k)
                        for i, b in zip(idx, blocks)
                        for k in e[side][b].get("unresolved_kappa", [])
                        if k is not None
                    ]
                    if bad:
                        hx = ax.scatter(
                            [i for i, _ in bad], [k for _, k in bad], marker="x", color=color, s=22
                        )
                        handles[f"{label}: not resolved"] = (hx, 0)
                ax.set_yscale("log")
                ax.set_ylim(bottom=1.0)
                ax.set_title(
                    f"{'He' if init == 'he' else 'orthogonal'} init, epoch {ep}", fontsize=10
                )
                ax.set_xlabel("block index")
                if col == 0:
                    ax.set_ylabel(
                        "kappa of weight local Hessian"
                        if side == "weights"
                        else "kappa of input local Hessian"
                    )
                ax.grid(True, which="major", alpha=0.3)
        labels = [
            f"{k[: -len(': not resolved')]}: kappa not resolved (smallest nonzero eigenvalue at "
            "the float64 floor; one cross per seed)"
            if k.endswith("not resolved")
            else f"{k}: median, band min-max over {n} seeds"
            for k, (_, n) in handles.items()
        ]
        fig.legend(
            [h for h, _ in handles.values()],
            labels,
            loc="lower center",
            ncol=1,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )
        what = "exact" if side == "weights" else "converged values only"
        fig.suptitle(
            f"{'VGG13' if arch == 'vgg13' else 'ResNet-20-style'}: per-block kappa on "
            f"the range ({what}), clipped at 1",
            fontsize=11,
        )
        fig.tight_layout(rect=(0, 0.04 + 0.025 * len(handles), 1, 0.97))
        name = f"{'' if side == 'weights' else 'input_'}kappa_{arch}.png"
        fig.savefig(out / name, dpi=120)
        pyplot.close(fig)
        written.append(name)
    return written


def plot_spectra(out: Path, config: str, seed: int = 0) -> str | None:
    """Exact weight spectra per block (histograms of log10 lambda/lambda_max) over checkpoints."""
    files = sorted(
        (out / "runs" / config).glob(f"seed{seed}_epoch*.json"),
        key=lambda p: int(p.stem.split("epoch")[1]),
    )
    runs = [json.loads(p.read_text()) for p in files]
    runs = [r for r in runs if r.get("weights")]
    if not runs:
        return None
    pyplot = plt()
    nb = len(runs[0]["weights"])
    cols = 4
    rows = math.ceil(nb / cols)
    fig, axes = pyplot.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows + 0.8), squeeze=False)
    centres = 0.5 * (HIST_EDGES[1:] + HIST_EDGES[:-1])
    handles = []
    for k, r in enumerate(runs):
        for b, w in enumerate(r["weights"]):
            ax = axes[b // cols][b % cols]
            if "spectrum_hist" not in w:
                continue
            h = np.asarray(w["spectrum_hist"], dtype=float)
            dens = h / max(h.sum(), 1.0)
            (line,) = ax.step(centres, dens, where="mid", color=f"C{k}", lw=1.2)
            if b == 0:
                handles.append((line, f"epoch {r['epoch']}"))
            ax.set_title(f"block {w['block']} ({w['name']}), dim {w['dimension']}", fontsize=8)
            ax.set_xlabel("log10(lambda / lambda_max)", fontsize=8)
            ax.set_ylabel("fraction of nonzero eigenvalues", fontsize=7)
            ax.tick_params(labelsize=7)
    lo = min(
        (
            int(np.flatnonzero(w["spectrum_hist"])[0])
            for r in runs
            for w in r["weights"]
            if any(w.get("spectrum_hist", []))
        ),
        default=0,
    )
    for b in range(nb):
        axes[b // cols][b % cols].set_xlim(HIST_EDGES[lo] - 0.5, 0.25)
    for b in range(nb, rows * cols):
        axes[b // cols][b % cols].axis("off")
    fig.legend(
        [h for h, _ in handles],
        [t for _, t in handles],
        loc="lower center",
        ncol=len(handles),
        frameon=False,
    )
    fig.suptitle(
        f"{config}, seed {seed}: exact spectra of the weight local Hessians (zeros left out)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    name = f"spectra_{config}.png"
    fig.savefig(out / name, dpi=110)
    pyplot.close(fig)
    return name


def table(summary: dict, side: str = "weights") -> str:
    """Markdown: median kappa per block per configuration and checkpoint."""
    lines = []
    for name, c in summary["configs"].items():
        for ep in sorted(c["epochs"], key=int):
            e = c["epochs"][ep]
            blocks = sorted(e[side], key=int)
            if not blocks:
                continue
            meds = []
            for b in blocks:
                s = e[side][b]["stats"]
                u = e[side][b].get("unresolved", 0)
                meds.append((f"{s['median']:.3g}" if s["n"] else "-") + (f" ({u}u)" if u else ""))
            lines.append(f"| {name} | {ep} | {len(e['seeds'])} | " + " | ".join(meds) + " |")
    if not lines:
        return "(none measured: the run had --input-batch 0)" if side == "input" else "(none)"
    width = max((len(line.split("|")) - 5 for line in lines), default=0)
    head = "| config | epoch | seeds | " + " | ".join(f"b{i + 1}" for i in range(width)) + " |"
    sep = "|" + "---|" * (3 + width)
    return "\n".join([head, sep, *lines])


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    p = parser(NAME, __doc__)
    p.add_argument("--configs", default="all", help="comma list of " + ", ".join(CONFIGS))
    p.add_argument("--seed-list", default=None, help="seeds to run, e.g. 1,2 (default 0..seeds-1)")
    p.add_argument("--epochs", default=None, help="checkpoints in epochs (default 0,1,5,20)")
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default 1/8)")
    p.add_argument("--train-subset", type=int, default=None, help="training images (default all)")
    p.add_argument("--train-batch", type=int, default=TRAIN_BATCH)
    p.add_argument(
        "--hessian-batch",
        type=int,
        default=None,
        help="Hessian batch (default 8x the widest layer of the grid's networks)",
    )
    p.add_argument(
        "--hessian-batch-cap",
        type=int,
        default=1 << 30,
        help="at most this many images in the default Hessian batch (a CPU budget)",
    )
    p.add_argument(
        "--input-batch",
        type=int,
        default=None,
        help="images for the input local Hessians (default 8; 0: none)",
    )
    p.add_argument(
        "--input-products",
        type=int,
        default=400,
        help="Lanczos product budget of an input local Hessian (default 400)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="training checkpoints (default checkpoints/real_architectures)",
    )
    p.add_argument(
        "--aggregate",
        action="store_true",
        help="only rebuild results.json and the figures from the run JSON",
    )
    args = p.parse_args(argv)
    out = setup(args, NAME)
    args.out_dir = out
    started = time.time()
    smoke = args.smoke
    args.width = args.width if args.width is not None else (1 / 32 if smoke else 0.125)
    epochs = [int(e) for e in (args.epochs or ("0,1" if smoke else "0,1,5,20")).split(",")]
    if args.train_subset is None and smoke:
        args.train_subset = 256
    if args.input_batch is None:
        args.input_batch = 4
    if args.checkpoints is None:
        args.checkpoints = ROOT / "checkpoints" / NAME
    names = list(CONFIGS) if args.configs == "all" else args.configs.split(",")
    for n in names:
        if n not in CONFIGS:
            raise SystemExit(f"error: unknown configuration {n!r}; use {', '.join(CONFIGS)}")
    seeds = (
        [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    )
    if not args.aggregate:
        device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu")
            if args.device == "auto"
            else args.device
        )
        hbatch = {
            n: args.hessian_batch
            or min(
                args.hessian_batch_cap,
                32 if smoke else 8 * widest(build(CONFIGS[n], args.width, 0)),
            )
            for n in names
        }
        x, y, xh, yh = load_train(args.data, args.train_subset, max(hbatch.values()))
        x, y = x.to(device), y.to(device)
        print(
            f"{NAME}: {len(names)} configs x {len(seeds)} seeds x epochs {epochs}; width "
            f"{args.width:g}; {x.shape[0]} training images; Hessian batches {hbatch} "
            f"(8x the widest layer, at most --hessian-batch-cap); input batch {args.input_batch}; {device}",
            flush=True,
        )
        for s in seeds:  # seed-major: a cut-short run has every configuration for its seeds
            for n in names:
                hess = (xh[: hbatch[n]], yh[: hbatch[n]])
                for ep in sorted(epochs):
                    t0 = time.perf_counter()
                    done = run_path(out, n, s, ep).exists()
                    r = one(CONFIGS[n], s, ep, args, (x, y), hess, device)
                    ks = [w["kappa"] for w in r.get("weights", [])]
                    med = np.median([k for k in ks if k]) if any(ks) else float("nan")
                    loss = f"{r['epoch_loss'][-1]:.4f}" if r["epoch_loss"] else "-"
                    print(
                        f"{n} seed {s} epoch {ep}: {'cached' if done else 'done'} in "
                        f"{time.perf_counter() - t0:.1f} s; median weight kappa {med:.3g}; "
                        f"last epoch's training loss {loss}",
                        flush=True,
                    )
    summary = aggregate(out)
    figs = plot_kappa(summary, out, "weights") + plot_kappa(summary, out, "input")
    for config in ("vgg13-bn-he", "vgg13-nobn-he"):
        spec = plot_spectra(out, config)
        if spec:
            figs.append(spec)
    comp = "\n".join(
        f"| {k} | {v['first_smaller']} of {v['blocks']} | "
        + (f"{v['median_log10_ratio']:+.2f}" if v["median_log10_ratio"] is not None else "-")
        + f" | {v['seeds'][0]}, {v['seeds'][1]} |"
        for k, v in summary["comparisons"].items()
    )
    (out / "table.md").write_text(
        "## Weight local Hessians: median kappa over seeds (exact; (ku): k seeds unresolved, "
        "smallest eigenvalue at the float64 floor, left out of the median)\n\n"
        + table(summary)
        + "\n\n## Comparisons (weight kappa, per block: median over seeds; unresolved = worst)\n\n"
        + "| comparison | blocks where the first is smaller | median log10 ratio | seeds |\n"
        + "|---|---|---|---|\n"
        + comp
        + "\n\n## Input local Hessians: median over converged seeds\n\n"
        + table(summary, "input")
        + "\n"
    )
    summary["figures"] = figs
    summary["command"] = " ".join(sys.argv)
    write_json(out, summary, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
