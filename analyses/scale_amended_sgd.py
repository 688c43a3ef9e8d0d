"""SGD versus scale-amended SGD on VGG13 with batch norm, tuned fairly, several seeds (claim 17).

The paper (digest section 6) reports that scale-amended SGD beat SGD on VGG13-BN (CIFAR-10/100)
from single runs, with hyper-parameters not said to be tuned for both. Here:

* every arm gets **its own learning-rate sweep over the same grid** (same budget: ``sweep_seeds``
  seeds per rate, 3 on the CPU and GPU configurations), the best rate of each is chosen on a
  **validation split** held out of the training data (final validation accuracy, mean over the
  sweep seeds), never on the test set; when the best rate sits at an end of the grid, the grid
  grows by the next rate of :data:`LADDER` until the optimum is bracketed;
* at each one's best rate, **several seeds** (seed = initialisation and data order; seed s of
  SGD and of scale-amended SGD share both, a paired design; the sweep's seeds at that rate are
  among them);
* curves of training loss and test accuracy per epoch with mean +- 95% Student-t bands, a final
  table with the paired difference and its 95% CI, and the training wall time per epoch (the
  amendment's overhead).

Everything else is shared: momentum 0.9, weight decay 5e-4, batch 128, cosine learning-rate
decay to 0 over the run (per step), no data augmentation, Fashion-MNIST padded to 1x32x32
(CIFAR is not available offline, see DATASETS). Scale-amended SGD: ``ScaleAmendedSGD`` with
closed-form scalars refreshed every 10 steps, geometric normalisation and clipping of the
per-block multipliers to [1/10, 10] (options fixed before any run; see the module docstring of
:mod:`hessiankit.optim.scale_amended`), BN gamma/beta at the plain rate. A third arm, fixed before
its runs, uses scalars measured by Hutchinson traces of each block's local Hessian and no
clipping (``MEASURED``).

Training pace: ``PACES_PER_EPOCH`` times per epoch each block's pace is measured on the step's
own batch (:func:`hessiankit.optim.block_pace`: the share of the block's back-matching loss the
step removed, input held fixed); ``pace.png`` and the table give each arm's per-block paces and
their spread over blocks (the balance scale-amended SGD claims), with CIs over seeds.

Configurations (``--smoke`` for CI, default CPU, ``--full`` for a GPU):

========  =====  ==============  =====  ======  ======================  ======  ============
config    width  train/val/test  epoch  batch   lr grid (grows)         seeds   sweep seeds
========  =====  ==============  =====  ======  ======================  ======  ============
smoke     1/16   256/128/128     2      64      0.03 0.1 (fixed)        2       1
cpu       1/8    8000/1000/2000  6      128     0.01 0.03 0.1 0.3       3       3
full      1      55000/5000/10k  30     128     0.01 0.03 0.1 0.3       3       3
========  =====  ==============  =====  ======  ======================  ======  ============

Usage::

    python analyses/scale_amended_sgd.py --overhead --seeds 14 --jobs 2   # committed CPU run
    python analyses/scale_amended_sgd.py --full --seeds 14 --jobs 4       # GPU, figures/optimizer/full/
    python analyses/scale_amended_sgd.py --smoke --out /tmp/x

``--jobs N`` starts N worker processes (one torch thread each) that share the runs through lock
files next to the checkpoints (:class:`Runner`); on a GPU several workers share the device.
``--ablation`` adds the unclipped, mean-normalised arm (chosen after the first runs, never part
of the verdict).

Each run keeps a checkpoint after every epoch under ``checkpoints/scale_amended_sgd/<config>/``
(model, optimizer, scheduler, history); rerunning resumes unfinished runs and skips finished
ones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hessiankit.data import load_dataset  # noqa: E402
from hessiankit.errors import HessiankitError  # noqa: E402
from hessiankit.models import vgg  # noqa: E402
from hessiankit.blocks import split_blocks  # noqa: E402
from hessiankit.optim import ScaleAmendedSGD, block_pace, pace_capture  # noqa: E402

#: The third arm (fixed before any of its runs): scalars measured by Hutchinson traces of each
#: block's local Hessian (``method="trace"``, 10 products per block and refresh) instead of the
#: closed forms that claim 16 finds 2-4x off after training, geometric normalisation, no clipping.
MEASURED = "scale-amended-measured"
OPTIMIZERS = ("sgd", "scale-amended", MEASURED)
#: Ablation, run only with ``--ablation``: Algorithm 2 without clipping, arithmetic-mean
#: normalisation (the raw per-block rates, spread over about four decades on VGG13-BN).
ABLATION = "scale-amended-unclipped"
LABELS = {
    "sgd": "SGD",
    "scale-amended": "scale-amended SGD",
    ABLATION: "scale-amended SGD, unclipped (ablation)",
    MEASURED: "scale-amended SGD, measured scalars",
}
#: Block paces (:func:`hessiankit.optim.block_pace`) measured this many times per epoch, on the
#: step's own batch: the share of each block's back-matching loss the step removed.
PACES_PER_EPOCH = 4


@dataclass(frozen=True)
class Config:
    name: str
    width: float
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    batch: int
    lrs: tuple[float, ...]
    seeds: int
    sweep_seeds: int = 1
    bracket: bool = True
    momentum: float = 0.9
    weight_decay: float = 5e-4
    refresh_every: int = 10
    normalize: str = "geometric"
    clip: float = 10.0
    arch: str = "vgg13"
    data: str = "fashion-mnist"
    extra: dict = field(default_factory=dict)


CONFIGS = {
    "smoke": Config(
        "smoke", 1 / 16, 256, 128, 128, 2, 64, (0.03, 0.1), 2, refresh_every=2, bracket=False
    ),
    "cpu": Config("cpu", 1 / 8, 8000, 1000, 2000, 6, 128, (0.01, 0.03, 0.1, 0.3), 3, 3),
    "full": Config("full", 1.0, 55000, 5000, 10000, 30, 128, (0.01, 0.03, 0.1, 0.3), 3, 3),
}
#: Rates a sweep may grow into: when the best rate (mean over the sweep seeds) sits at an end of
#: the grid, the next rate of this ladder beyond that end is added, so the chosen optimum is
#: always bracketed by a worse rate on each side (or the ladder's end).
LADDER = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


# ------------------------------------------------------------------------------------ data


def load_data(cfg: Config, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    shape = (1, 32, 32)
    x, y = load_dataset(
        cfg.data, split="train", num_samples=cfg.n_train + cfg.n_val, input_shape=shape, seed=0
    )
    xt, yt = load_dataset(cfg.data, split="test", num_samples=cfg.n_test, input_shape=shape, seed=0)
    return {
        "train": (x[: cfg.n_train].to(device), y[: cfg.n_train].to(device)),
        "val": (x[cfg.n_train :].to(device), y[cfg.n_train :].to(device)),
        "test": (xt.to(device), yt.to(device)),
    }


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    net.eval()
    correct = 0
    for s in range(0, x.shape[0], batch):
        correct += int((net(x[s : s + batch]).argmax(1) == y[s : s + batch]).sum())
    return correct / x.shape[0]


# ------------------------------------------------------------------------------------ runs


def build(cfg: Config, opt_name: str, lr: float, seed: int, steps_total: int, device: torch.device):
    net = vgg(cfg.arch, in_channels=1, num_classes=10, width=cfg.width, seed=seed).to(device)
    common = dict(momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if opt_name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=lr, **common)
    else:
        unclipped = opt_name == ABLATION
        opt = ScaleAmendedSGD.for_model(
            net,
            lr=lr,
            refresh_every=cfg.refresh_every,
            normalize="mean" if unclipped else cfg.normalize,  # type: ignore[arg-type]
            clip=None if opt_name in (ABLATION, MEASURED) else cfg.clip,
            method="trace" if opt_name == MEASURED else "closed-form",
            seed=seed,
            **common,
        )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, steps_total) / steps_total))
    )
    return net, opt, sched


def run_name(opt_name: str, lr: float, seed: int) -> str:
    """A run's checkpoint (and lock) file stem."""
    return f"{opt_name}_lr{lr:g}_seed{seed}"


def run_one(
    cfg: Config,
    opt_name: str,
    lr: float,
    seed: int,
    data,
    ckpt_dir: Path,
    device: torch.device,
    progress: bool,
) -> dict:
    """Train one configuration; resumes from / writes ``ckpt_dir/<run>.pt`` every epoch."""
    from tqdm import tqdm

    name = run_name(opt_name, lr, seed)
    path = ckpt_dir / f"{name}.pt"
    x, y = data["train"]
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch)
    net, opt, sched = build(cfg, opt_name, lr, seed, steps_per_epoch * cfg.epochs, device)
    hist: dict = {
        "optimizer": opt_name,
        "lr": lr,
        "seed": seed,
        "epochs_done": 0,
        "diverged": False,
        "train_loss": [],
        "val_acc": [],
        "test_acc": [],
        "epoch_seconds": [],
        "amendment": [],
        "pace": [],  # per epoch: each block's mean matched fraction over the measured steps
        "relative_change": [],  # per epoch: each block's mean ||dW|| / ||W|| per measured step
    }
    if path.exists():
        ck = torch.load(path, map_location=device, weights_only=True)
        hist = {"pace": [], "relative_change": [], **ck["history"]}
        if hist["epochs_done"] >= cfg.epochs or hist["diverged"]:
            return hist
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
    bar = tqdm(
        total=cfg.epochs,
        initial=hist["epochs_done"],
        desc=name,
        disable=not progress,
        leave=False,
        file=sys.stderr,
    )
    split = split_blocks(net)
    every = max(1, steps_per_epoch // PACES_PER_EPOCH)
    for epoch in range(hist["epochs_done"], cfg.epochs):
        paces: list[list[float]] = []
        changes: list[list[float]] = []
        gen = torch.Generator().manual_seed(1_000_003 * seed + epoch)
        order = torch.randperm(n, generator=gen).to(device)
        net.train()
        total, count = 0.0, 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            for s in range(0, n, cfg.batch):
                idx = order[s : s + cfg.batch]
                measure = (s // cfg.batch) % every == every - 1
                before = pace_capture(split, x[idx], y[idx], bn="train") if measure else None
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(net(x[idx]), y[idx])
                loss.backward()
                opt.step()
                if before is not None:
                    pace = block_pace(before, net, eta=sched.get_last_lr()[0])
                    paces.append([p.matched for p in pace])
                    changes.append([p.relative_change for p in pace])
                sched.step()
                total += float(loss.detach()) * idx.numel()
                count += idx.numel()
                if not math.isfinite(total):
                    raise FloatingPointError
        except (FloatingPointError, HessiankitError):
            hist["diverged"] = True
        if device.type == "cuda":
            torch.cuda.synchronize()
        hist["epoch_seconds"].append(time.perf_counter() - start)
        if hist["diverged"]:
            hist["train_loss"].append(float("nan"))
            hist["val_acc"].append(float("nan"))
            hist["test_acc"].append(float("nan"))
        else:
            hist["train_loss"].append(total / count)  # running mean over the epoch's batches
            hist["val_acc"].append(accuracy(net, *data["val"]))
            hist["test_acc"].append(accuracy(net, *data["test"]))
        hist["pace"].append(np.mean(paces, axis=0).tolist() if paces else [])
        hist["relative_change"].append(np.mean(changes, axis=0).tolist() if changes else [])
        if isinstance(opt, ScaleAmendedSGD):
            hist["amendment"].append(
                [g["amendment"] for g in opt.param_groups if g["role"] == "main"]
            )
        hist["epochs_done"] = epoch + 1
        bar.update(1)
        bar.set_postfix(loss=f"{hist['train_loss'][-1]:.3f}", test=f"{hist['test_acc'][-1]:.3f}")
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "history": hist,
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
            },
            tmp,
        )
        os.replace(tmp, path)
        if hist["diverged"]:
            break
    bar.close()
    if isinstance(opt, ScaleAmendedSGD):
        opt.close()
    return hist


@dataclass(frozen=True)
class Run:
    optimizer: str
    lr: float
    seed: int


class Runner:
    """Trains runs and shares them with other worker processes on this machine.

    A run is claimed by creating ``<checkpoints>/<run>.lock`` (exclusive create, holding the
    process id); a lock whose process has died is taken over. ``get`` trains what nobody has
    claimed, works on ``ahead`` while it waits for runs other workers are training, and returns
    when every run asked for is finished. Several processes started on the same checkpoint
    folder (``--jobs N``) so split the work without a coordinator.
    """

    def __init__(self, cfg: Config, data, ckpt: Path, device: torch.device, progress: bool):
        self.cfg, self.data, self.ckpt, self.device, self.progress = (
            cfg,
            data,
            ckpt,
            device,
            progress,
        )
        self._seen_finished: set[Run] = set()  # finished stays finished: read each file once

    def _path(self, r: Run, suffix: str) -> Path:
        return self.ckpt / f"{run_name(r.optimizer, r.lr, r.seed)}{suffix}"

    def _finished(self, r: Run) -> bool:
        if r in self._seen_finished:
            return True
        path = self._path(r, ".pt")
        if not path.exists():
            return False
        h = torch.load(path, map_location="cpu", weights_only=True)["history"]
        if h["epochs_done"] >= self.cfg.epochs or h["diverged"]:
            self._seen_finished.add(r)
            return True
        return False

    def _claim(self, r: Run) -> bool:
        lock = self._path(r, ".lock")
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(lock.read_text() or "0")
                    os.kill(pid, 0)
                    return False  # a live worker holds it
                except (ProcessLookupError, ValueError, FileNotFoundError):
                    lock.unlink(missing_ok=True)  # its worker died: take it over
                    continue
                except PermissionError:
                    return False
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False

    def _train(self, r: Run) -> dict:
        return run_one(
            self.cfg, r.optimizer, r.lr, r.seed, self.data, self.ckpt, self.device, self.progress
        )

    def _try(self, r: Run) -> dict | None:
        if self._finished(r):
            return self._train(r)  # loads the finished history, trains nothing
        if not self._claim(r):
            return None
        try:
            return self._train(r)
        finally:
            self._path(r, ".lock").unlink(missing_ok=True)

    def get(self, runs: Sequence[Run], ahead: Sequence[Run] = (), poll: float = 5.0) -> list[dict]:
        done: dict[Run, dict] = {}
        while True:
            for r in runs:
                if r not in done and (h := self._try(r)) is not None:
                    done[r] = h
            if len(done) == len(runs):
                return [done[r] for r in runs]
            if any(self._finished(r) for r in runs if r not in done):
                continue  # finished by another worker while this one trained: collect first
            # others are training the rest: start a run of the next stage meanwhile, or wait
            if not any(not self._finished(a) and self._try(a) is not None for a in ahead):
                time.sleep(poll)


def plan(cfg: Config, runner: Runner, opts: Sequence[str]) -> tuple[dict, dict]:
    """Every arm's sweep (grown until its optimum is bracketed, see :func:`bracketed`), then
    its seeds at the best rate; arm by arm, so the first arms finish first."""
    sweeps: dict[str, list[dict]] = {}
    finals: dict[str, list[dict]] = {}
    seeds = range(cfg.sweep_seeds)
    for k, o in enumerate(opts):
        ahead = [Run(n, lr, s) for n in opts[k + 1 : k + 2] for lr in cfg.lrs for s in seeds]
        grid = list(cfg.lrs)
        while True:
            sweeps[o] = runner.get([Run(o, lr, s) for lr in grid for s in seeds], ahead)
            grown = bracketed(grid, best_rate(sweeps[o])) if cfg.bracket else grid
            if grown == grid:
                break
            grid = grown
        lr = best_rate(sweeps[o])
        finals[o] = runner.get([Run(o, lr, s) for s in range(cfg.seeds)], ahead)
    return sweeps, finals


def collect(cfg: Config, runner: Runner, opts: Sequence[str]) -> tuple[dict, dict, dict]:
    """The finished runs only, nothing trained (``--collect``: summarise a run cut short).

    Per arm: the sweep over the rates whose sweep seeds all finished, the best of those, and
    the finished seeds at it from seed 0 up to the first missing one (so that the pairs with
    the other arms stay seed-matched). The third dict says, per arm, how many seeds that is and
    whether the chosen rate is bracketed by finished rates.
    """
    sweeps: dict[str, list[dict]] = {}
    finals: dict[str, list[dict]] = {}
    status: dict[str, dict] = {}
    seeds = range(cfg.sweep_seeds)
    for o in opts:
        rates = [lr for lr in LADDER if all(runner._finished(Run(o, lr, s)) for s in seeds)]
        if not rates:
            continue
        sweeps[o] = [runner._train(Run(o, lr, s)) for lr in rates for s in seeds]
        lr = best_rate(sweeps[o])
        finals[o] = []
        for s in range(cfg.seeds):
            if not runner._finished(Run(o, lr, s)):
                break
            finals[o].append(runner._train(Run(o, lr, s)))
        i = LADDER.index(lr)
        below = i == 0 or LADDER[i - 1] in rates
        above = i + 1 == len(LADDER) or LADDER[i + 1] in rates
        status[o] = {
            "seeds": len(finals[o]),
            "of": cfg.seeds,
            "bracketed": (below and above) if cfg.bracket else True,  # else the grid is fixed
        }
    return sweeps, finals, status


# ------------------------------------------------------------------------------ statistics


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t interval (NaN half-width with < 2 values)."""
    v = np.asarray([a for a in values if math.isfinite(a)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), float("nan")
    t = stats.t.ppf(0.5 + confidence / 2, v.size - 1)
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(v.size))


def padded(curves: list[list[float]], length: int) -> np.ndarray:
    return np.array([c + [float("nan")] * (length - len(c)) for c in curves], dtype=float)


def _final(h: dict, key: str, missing: float) -> float:
    v = h[key][-1] if h[key] else float("nan")
    return v if math.isfinite(v) and not h["diverged"] else missing


def sweep_rows(sweep: list[dict]) -> list[dict]:
    """One row per rate: final validation accuracy and training loss averaged over the sweep
    seeds (a diverged run counts as accuracy 0), with each seed's values."""
    rows = []
    for lr in sorted({h["lr"] for h in sweep}):
        runs = sorted((h for h in sweep if h["lr"] == lr), key=lambda h: h["seed"])
        accs = [_final(h, "val_acc", float("nan")) for h in runs]
        losses = [_final(h, "train_loss", float("nan")) for h in runs]
        rows.append(
            {
                "lr": lr,
                "seeds": [h["seed"] for h in runs],
                "final_val_acc": float(np.mean([a if math.isfinite(a) else 0.0 for a in accs])),
                "final_val_acc_seeds": accs,
                "final_train_loss": float(np.nanmean(losses))
                if any(map(math.isfinite, losses))
                else float("nan"),
                "diverged": sum(bool(h["diverged"]) for h in runs),
            }
        )
    return rows


def best_rate(sweep: list[dict]) -> float:
    """Highest final validation accuracy (mean over the sweep seeds); ties broken by the lower
    mean final training loss."""

    def key(r: dict) -> tuple[float, float]:
        loss = r["final_train_loss"]
        return (r["final_val_acc"], -loss if math.isfinite(loss) else -1e9)

    return max(sweep_rows(sweep), key=key)["lr"]


def bracketed(grid: list[float], best: float) -> list[float]:
    """``grid`` grown by the next :data:`LADDER` rate beyond ``best`` when ``best`` sits at an
    end of it (and the ladder goes on); unchanged when the optimum is bracketed."""
    if best not in LADDER or not all(lr in LADDER for lr in grid):
        return grid
    i = LADDER.index(best)
    if best == min(grid) and i > 0:
        return [LADDER[i - 1], *grid]
    if best == max(grid) and i + 1 < len(LADDER):
        return [*grid, LADDER[i + 1]]
    return grid


def summarise(cfg: Config, sweeps: dict[str, list[dict]], finals: dict[str, list[dict]]) -> dict:
    out: dict = {"config": {k: v for k, v in asdict(cfg).items() if k != "extra"}, "optimizers": {}}
    for o in finals:
        runs = finals[o]
        test = [h["test_acc"][-1] for h in runs]
        loss = [h["train_loss"][-1] for h in runs]
        secs = [s for h in runs for s in h["epoch_seconds"]]
        out["optimizers"][o] = {
            "sweep": sweep_rows(sweeps[o]),
            "best_lr": runs[0]["lr"],
            "seeds": [h["seed"] for h in runs],
            "final_test_acc": test,
            "final_train_loss": loss,
            "test_acc_mean_ci": mean_ci(test),
            "train_loss_mean_ci": mean_ci(loss),
            "epoch_seconds_mean": float(np.mean(secs)),
            **pace_summary(runs),
        }
    a = out["optimizers"]["scale-amended"]
    s = out["optimizers"]["sgd"]
    out["paired_difference"] = paired(a, s)
    if ABLATION in out["optimizers"]:
        out["ablation_paired_difference"] = paired(out["optimizers"][ABLATION], s)
    if MEASURED in out["optimizers"]:
        out["measured_paired_difference"] = paired(out["optimizers"][MEASURED], s)
    return out


def pace_summary(runs: list[dict]) -> dict:
    """Each block's pace over the run (mean over epochs of the measured steps) per seed, and
    the spread of the blocks' paces (standard deviation over blocks) with its 95% CI over seeds:
    scale-amended SGD claims to balance the blocks, i.e. a smaller spread than SGD's."""
    per_seed = [
        np.nanmean(np.asarray([e for e in h.get("pace", []) if e], dtype=float), axis=0)
        for h in runs
        if any(h.get("pace", []))
    ]
    if not per_seed:
        return {}
    spread = [float(np.nanstd(p)) for p in per_seed]
    return {
        "pace_per_block_mean": np.nanmean(per_seed, axis=0).tolist(),
        "pace_spread": spread,
        "pace_spread_mean_ci": mean_ci(spread),
    }


def paired(a: dict, s: dict) -> dict:
    d_acc = [p - q for p, q in zip(a["final_test_acc"], s["final_test_acc"])]
    d_loss = [p - q for p, q in zip(a["final_train_loss"], s["final_train_loss"])]
    return {
        "test_acc": {"values": d_acc, "mean_ci": mean_ci(d_acc)},
        "train_loss": {"values": d_loss, "mean_ci": mean_ci(d_loss)},
        "overhead_ratio": a["epoch_seconds_mean"] / s["epoch_seconds_mean"],
        **(
            {"pace_spread": {"values": d, "mean_ci": mean_ci(d)}}
            if (d := [p - q for p, q in zip(a.get("pace_spread", []), s.get("pace_spread", []))])
            else {}
        ),
    }


def verdict(summary: dict) -> str:
    m, h = summary["paired_difference"]["test_acc"]["mean_ci"]
    n = len(summary["paired_difference"]["test_acc"]["values"])
    if not math.isfinite(h):
        return (
            f"difference in final test accuracy {100 * m:+.2f} points (no CI: fewer than 2 seeds)"
        )
    lo, hi = m - h, m + h
    if lo > 0:
        word = "beat"
    elif hi < 0:
        word = "lost to"
    else:
        word = "did not separate from"
    return (
        f"scale-amended SGD {word} tuned SGD: final test accuracy difference (amended - SGD) "
        f"{100 * m:+.2f} points, 95% CI [{100 * lo:+.2f}, {100 * hi:+.2f}] over {n} paired seeds"
    )


def overhead_benchmark(
    cfg: Config, data, device: torch.device, rounds: int = 5, steps: int = 10
) -> dict:
    """Seconds per training step of SGD and scale-amended SGD, measured interleaved.

    Both optimizers train their own copy of the model on the same batches; rounds of ``steps``
    steps alternate between them so that load from other processes hits both alike. The ratio
    is the median over rounds (refresh period as in ``cfg``; ``steps`` is a multiple of it, so
    every round pays its share of refreshes).
    """
    x, y = data["train"]
    per: dict[str, list[float]] = {o: [] for o in OPTIMIZERS}
    built = {o: build(cfg, o, cfg.lrs[0], 0, 10**6, device) for o in OPTIMIZERS}
    for r in range(rounds + 1):
        for o in OPTIMIZERS:
            net, opt, _ = built[o]
            net.train()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for k in range(steps):
                idx = torch.arange(k * cfg.batch, (k + 1) * cfg.batch, device=device) % x.shape[0]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r > 0:  # round 0 warms up
                per[o].append((time.perf_counter() - start) / steps)
    ratios = [a / b for a, b in zip(per["scale-amended"], per["sgd"])]
    return {
        "seconds_per_step": {o: float(np.median(v)) for o, v in per.items()},
        "ratio_median": float(np.median(ratios)),
        "ratios": ratios,
        "rounds": rounds,
        "steps_per_round": steps,
        "refresh_every": cfg.refresh_every,
    }


# ------------------------------------------------------------------------------------ output


def write_outputs(cfg: Config, summary: dict, finals: dict[str, list[dict]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    # the per-epoch data of the figures, so they can be redrawn (--replot) without rerunning
    curves = {
        o: {
            "lr": finals[o][0]["lr"],
            "seeds": [h["seed"] for h in finals[o]],
            "train_loss": [h["train_loss"] for h in finals[o]],
            "test_acc": [h["test_acc"] for h in finals[o]],
            "amendment_seed0": finals[o][0]["amendment"],
            "pace": [h.get("pace", []) for h in finals[o]],
        }
        for o in finals
    }
    (out / "curves.json").write_text(json.dumps(curves, default=float) + "\n")
    plot_outputs(cfg, summary, curves, out)
    (out / "table.md").write_text(table(cfg, summary))


def plot_outputs(cfg: Config, summary: dict, curves: dict | None, out: Path) -> None:
    """The three figures: curves and amendment need ``curves`` (``curves.json``), the sweep not."""
    plot_sweep(cfg, summary, out)
    if curves is None:
        return
    plot_curves(cfg, curves, out)
    plot_pace(curves, out)
    amendment = curves.get("scale-amended", {}).get("amendment_seed0")
    if amendment:
        plot_amendment(cfg, np.array(amendment, dtype=float), curves["scale-amended"]["lr"], out)


def plot_curves(cfg: Config, curves: dict, out: Path) -> None:
    from matplotlib.figure import Figure

    from hessiankit.plots import plot_training_curves, save_figure, style

    epochs = np.arange(1, cfg.epochs + 1)
    data = {
        key: {
            f"{LABELS[o]} (lr {c['lr']:g})": padded(c[key], cfg.epochs) for o, c in curves.items()
        }
        for key in ("train_loss", "test_acc")
    }
    with style():
        fig = Figure(figsize=(11.0, 3.8), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
    plot_training_curves(
        data["train_loss"],
        steps=epochs,
        xlabel="epoch",
        ylabel="training loss",
        logy=True,
        title="training loss, mean and 95% CI",
        ax=ax1,
    )
    plot_training_curves(
        data["test_acc"],
        steps=epochs,
        xlabel="epoch",
        ylabel="test accuracy",
        title="test accuracy, mean and 95% CI",
        ax=ax2,
    )
    save_figure(fig, out / "curves")


def plot_pace(curves: dict, out: Path) -> None:
    """Each block's pace (mean over the run's measured steps) per optimizer, mean and 95% CI
    over seeds: balanced blocks give a flat line."""
    from hessiankit.plots import new_axes, save_figure, style

    rows = {}
    for o, c in curves.items():
        seeds = [np.nanmean(np.asarray([e for e in p if e], float), 0) for p in c.get("pace", [])]
        seeds = [v for v in seeds if np.ndim(v) == 1 and v.size]
        if seeds:
            rows[o] = np.asarray(seeds)
    if not rows:
        return
    with style():
        fig, ax = new_axes(None, (7.5, 3.8))
        for i, (o, a) in enumerate(rows.items()):
            blocks = np.arange(1, a.shape[1] + 1)
            m = a.mean(0)
            h = [mean_ci(a[:, b])[1] for b in range(a.shape[1])]
            ax.errorbar(blocks, m, yerr=np.nan_to_num(h), fmt="o-", ms=4, capsize=3,
                        color=f"C{i}", label=f"{LABELS[o]} ({a.shape[0]} seeds)")  # fmt: skip
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
        # paces below 0 (a unit step that overshoots) span decades: symmetric log scale
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xticks(range(1, max(a.shape[1] for a in rows.values()) + 1))
        ax.set_xlabel("block")
        ax.set_ylabel("pace: share of l_b removed\nper step (symlog; 1 = target hit)")
        ax.set_title(
            "block pace over training (mean over epochs, 95% CI over seeds)\n"
            "below 0: the step overshoots the block's back-matching target",
            fontsize=9,
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    save_figure(fig, out / "pace")


def plot_sweep(cfg: Config, summary: dict, out: Path) -> None:
    """Final validation accuracy per rate, mean over the sweep seeds.

    With several seeds per rate the bars are the 95% Student-t interval over seeds; with one,
    only the sampling error of ``n_val`` validation images (normal approximation,
    ``1.96 sqrt(p (1 - p) / n_val)``) can be shown, not the seed-to-seed spread.
    """
    from hessiankit.plots import new_axes, save_figure, style

    n_val = summary["config"]["n_val"]
    seeds = max(
        len(r.get("final_val_acc_seeds", [0]))
        for res in summary["optimizers"].values()
        for r in res["sweep"]
    )
    with style():
        fig, ax = new_axes(None, (6.4, 3.9))
        for i, (o, res) in enumerate(summary["optimizers"].items()):
            sw = [r for r in res["sweep"] if r["final_val_acc"] is not None]
            lr = np.array([r["lr"] for r in sw]) * (1.0 + 0.04 * (i - 1))  # dodge the bars
            acc = np.array([r["final_val_acc"] for r in sw], dtype=float)
            if seeds > 1:
                half = np.array([mean_ci(r["final_val_acc_seeds"])[1] for r in sw], dtype=float)
            else:
                half = 1.959964 * np.sqrt(acc * (1.0 - acc) / n_val)
            ax.errorbar(
                lr, acc, yerr=half, fmt="o-", ms=4, capsize=3, color=f"C{i}", label=LABELS[o]
            )
            best = [k for k, r in enumerate(sw) if r["lr"] == res["best_lr"]]
            ax.plot(lr[best], acc[best], "*", ms=13, color=f"C{i}", mec="k", mew=0.6)
        ax.plot([], [], "*", ms=10, color="0.6", mec="k", mew=0.6, label="chosen rate")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (peak of the cosine schedule)")
        ax.set_ylabel("final validation accuracy")
        ax.set_title(
            f"learning-rate sweeps, mean of {seeds} seeds per rate; bars: 95% t-interval over seeds"
            if seeds > 1
            else f"learning-rate sweeps, seed 0; bars: 95% binomial interval of the {n_val} "
            "validation images\n(one seed per rate: seed-to-seed spread not measured)",
            fontsize=9,
        )
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    save_figure(fig, out / "sweep")


def plot_amendment(cfg: Config, r: np.ndarray, lr: float, out: Path, note: str = "") -> None:
    """Per-block multipliers (epochs x blocks) as a heat map: no block hides behind another."""
    import matplotlib

    from hessiankit.plots import new_axes, save_figure, style

    with style():
        fig, ax = new_axes(None, (8.0, 0.8 + 0.34 * r.shape[1]))
        norm = matplotlib.colors.LogNorm(vmin=1.0 / cfg.clip, vmax=cfg.clip)
        im = ax.imshow(r.T, aspect="auto", cmap="RdBu_r", norm=norm, origin="upper")
        for (e, b), v in np.ndenumerate(r):
            pinned = abs(np.log(v * cfg.clip)) < 1e-6 or abs(np.log(v / cfg.clip)) < 1e-6
            dark = abs(np.log(v)) > 0.6 * np.log(cfg.clip)  # white text on the saturated ends
            ax.text(
                e,
                b,
                f"{v:.2g}" + ("*" if pinned else ""),
                ha="center",
                va="center",
                fontsize=7,
                color="w" if dark else "k",
            )
        ax.set_xticks(range(r.shape[0]), [str(e + 1) for e in range(r.shape[0])])
        ax.set_yticks(range(r.shape[1]), [f"block {b + 1}" for b in range(r.shape[1])])
        ax.grid(False)
        ax.set_xlabel("epoch")
        ax.set_title(
            f"scale-amended SGD: per-block multiplier r_b (lr_b = lr r_b), lr {lr:g}, seed 0\n"
            f"* = pinned at the clip bound [1/{cfg.clip:g}, {cfg.clip:g}]"
            + (f"\n{note}" if note else ""),
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, label="r_b (log scale)")
    save_figure(fig, out / "amendment")


def replot(out: Path) -> None:
    """Redraw the figures from ``out/results.json`` (and ``out/curves.json`` where present)."""
    summary = json.loads((out / "results.json").read_text())
    c = dict(summary["config"])
    cfg = Config(**{**c, "lrs": tuple(c["lrs"])})
    curves_path = out / "curves.json"
    curves = json.loads(curves_path.read_text()) if curves_path.exists() else None
    plot_outputs(cfg, summary, curves, out)
    rerun = out / "amendment_rerun.json"
    if curves is None and rerun.exists():  # a run committed before curves.json existed
        d = json.loads(rerun.read_text())
        plot_amendment(cfg, np.array(d["amendment"], dtype=float), d["lr"], out, d["note"])


def table(cfg: Config, summary: dict) -> str:
    lines = [
        f"# SGD vs scale-amended SGD: {cfg.arch}-BN (width x{cfg.width:g}), {cfg.data} 1x32x32",
        "",
        f"Config `{cfg.name}`: train {cfg.n_train} / val {cfg.n_val} / test {cfg.n_test}, "
        f"{cfg.epochs} epochs, batch {cfg.batch}, momentum {cfg.momentum}, weight decay "
        f"{cfg.weight_decay}, cosine decay, lr grid {list(cfg.lrs)}"
        + (" (grown until each arm's optimum is bracketed)" if cfg.bracket else "")
        + f"; best lr by final validation accuracy, mean over seeds 0-{cfg.sweep_seeds - 1} "
        f"of the sweep; {cfg.seeds} seeds at the best lr (the sweep's among them). "
        "Mean +- 95% Student-t CI.",
        "",
        "| optimizer | best lr | final test acc (%) | final train loss | s / epoch (train) |",
        "|---|---|---|---|---|",
    ]
    opts = list(summary["optimizers"])
    for o in opts:
        r = summary["optimizers"][o]
        acc, acc_h = r["test_acc_mean_ci"]
        loss, loss_h = r["train_loss_mean_ci"]
        lines.append(
            f"| {LABELS[o]} | {r['best_lr']:g} | {100 * acc:.2f} +- {100 * acc_h:.2f} | "
            f"{loss:.4f} +- {loss_h:.4f} | {r['epoch_seconds_mean']:.2f} |"
        )
    d = summary["paired_difference"]
    m, h = d["test_acc"]["mean_ci"]
    lm, lh = d["train_loss"]["mean_ci"]
    lines += [
        "",
        f"Paired difference (amended - SGD, same seed = same init and data order): test accuracy "
        f"{100 * m:+.2f} +- {100 * h:.2f} points; training loss {lm:+.4f} +- {lh:.4f}; "
        f"time per epoch ratio {d['overhead_ratio']:.3f} (separate runs on a shared machine)."
        + (
            f" Interleaved step timing: {1e3 * ob['seconds_per_step']['sgd']:.1f} ms (SGD) vs "
            f"{1e3 * ob['seconds_per_step']['scale-amended']:.1f} ms (amended), median ratio "
            f"{ob['ratio_median']:.3f}."
            if (ob := summary.get("overhead_benchmark"))
            else ""
        ),
        "",
        f"Sweeps (mean over {cfg.sweep_seeds} seed(s) per rate; final validation accuracy / "
        "training loss; the chosen rate in bold):",
        "",
        "| lr | " + " | ".join(LABELS[o] for o in opts) + " |",
        "|---|" + "---|" * len(opts),
    ]
    rates = sorted({r["lr"] for o in opts for r in summary["optimizers"][o]["sweep"]})
    for lr in rates:
        cells = []
        for o in opts:
            res = summary["optimizers"][o]
            r = next((r for r in res["sweep"] if r["lr"] == lr), None)
            if r is None:
                cells.append("-")
                continue
            cell = f"{100 * r['final_val_acc']:.2f}% / {r['final_train_loss']:.4f}" + (
                f" ({int(r['diverged'])} diverged)" if r["diverged"] else ""
            )
            cells.append(f"**{cell}**" if lr == res["best_lr"] else cell)
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    if "ablation_paired_difference" in summary:
        ab = summary["ablation_paired_difference"]
        am, ah = ab["test_acc"]["mean_ci"]
        lines += [
            "",
            f"Ablation (chosen after the main runs, not part of the verdict): unclipped, "
            f"mean-normalised amendment minus SGD, test accuracy {100 * am:+.2f} +- "
            f"{100 * ah:.2f} points (paired).",
        ]
    if "measured_paired_difference" in summary:
        md = summary["measured_paired_difference"]
        mm, mh = md["test_acc"]["mean_ci"]
        lines += [
            "",
            f"Third arm (fixed before its runs): measured trace scalars, no clipping, minus SGD, "
            f"test accuracy {100 * mm:+.2f} +- {100 * mh:.2f} points (paired).",
        ]
    paces = {o: r["pace_spread_mean_ci"] for o, r in summary["optimizers"].items()
             if "pace_spread_mean_ci" in r}  # fmt: skip
    if paces:
        lines += [
            "",
            "Block pace spread (standard deviation over blocks of the share of each block's "
            "back-matching loss one step removes; smaller = more balanced): "
            + "; ".join(f"{LABELS[o]} {m:.3f} +- {h:.3f}" for o, (m, h) in paces.items())
            + ".",
        ]
    for o, st in summary.get("incomplete", {}).items():
        lines += [
            "",
            f"Cut short (summarised with `--collect`): {LABELS[o]} has {st['seeds']} of "
            f"{st['of']} seeds at its best rate"
            + ("" if st["bracketed"] else ", and that rate is not bracketed by finished rates")
            + "; its paired differences use those seeds.",
        ]
    lines += ["", f"**Verdict** (a priori configuration): {verdict(summary)}.", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="seconds-long CI configuration")
    mode.add_argument("--full", action="store_true", help="the paper's scale (GPU)")
    p.add_argument("--out", type=Path, default=None, help="output folder for figures and tables")
    p.add_argument("--checkpoints", type=Path, default=None, help="folder of per-run checkpoints")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--data",
        default=None,
        choices=["fashion-mnist", "synthetic", "digits", "mnist"],
        help="data set instead of the configuration's (tests use synthetic)",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds at the best rate (default: config's)"
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help=f"also run {ABLATION} (no clipping, arithmetic-mean normalisation)",
    )
    p.add_argument(
        "--overhead",
        action="store_true",
        help="also time steps of both optimizers interleaved (robust overhead ratio)",
    )
    p.add_argument(
        "--replot",
        action="store_true",
        help="only redraw the figures from the results in --out (no training)",
    )
    p.add_argument(
        "--sweep-seeds",
        type=int,
        default=None,
        help="seeds per rate in the sweeps (default: config's); the best rate is chosen on "
        "their mean validation accuracy, and they count among the seeds at that rate",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes (one torch thread each) sharing the runs through lock files",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: summarise the finished runs (an arm may then have fewer seeds)",
    )
    raw = list(sys.argv[1:] if argv is None else argv)
    raw = [a for i, a in enumerate(raw) if a != "--jobs" and (i == 0 or raw[i - 1] != "--jobs")]
    raw = [a for a in raw if not a.startswith("--jobs=")]
    args = p.parse_args(argv)
    if args.replot:
        replot(args.out or ROOT / "figures" / "optimizer")
        return 0
    cfg = CONFIGS["smoke" if args.smoke else "full" if args.full else "cpu"]
    if args.data is not None:
        cfg = replace(cfg, data=args.data)
    if args.seeds is not None:
        if args.seeds < 1:
            print("error: --seeds must be at least 1", file=sys.stderr)
            return 2
        cfg = replace(cfg, seeds=args.seeds)
    if args.sweep_seeds is not None:
        if not 1 <= args.sweep_seeds <= cfg.seeds:
            print("error: --sweep-seeds must be between 1 and --seeds", file=sys.stderr)
            return 2
        cfg = replace(cfg, sweep_seeds=args.sweep_seeds)
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    if cfg.sweep_seeds > cfg.seeds:
        cfg = replace(cfg, seeds=cfg.sweep_seeds)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    torch.set_num_threads(max(1, args.threads))
    out = args.out or ROOT / "figures" / "optimizer" / ("" if cfg.name == "cpu" else cfg.name)
    ckpt = args.checkpoints or ROOT / "checkpoints" / "scale_amended_sgd" / cfg.name
    ckpt.mkdir(parents=True, exist_ok=True)
    try:
        data = load_data(cfg, device)
    except HessiankitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress = not args.no_progress and not args.worker
    opts = OPTIMIZERS + ((ABLATION,) if args.ablation else ())
    workers = [
        subprocess.Popen([sys.executable, __file__, *raw, "--worker", "--no-progress"])
        for _ in range(0 if args.collect else args.jobs - 1)
    ]
    status: dict[str, dict] = {}
    try:
        runner = Runner(cfg, data, ckpt, device, progress)
        if args.collect:
            sweeps, finals, status = collect(cfg, runner, opts)
        else:
            sweeps, finals = plan(cfg, runner, opts)
    finally:
        for w in workers:
            w.wait()
    if args.worker:
        return 0
    if not {"sgd", "scale-amended"} <= {o for o, f in finals.items() if f}:
        print("error: no finished SGD and scale-amended runs to summarise", file=sys.stderr)
        return 2
    summary = summarise(cfg, sweeps, {o: f for o, f in finals.items() if f})
    summary["incomplete"] = {
        o: st for o, st in status.items() if st["seeds"] < st["of"] or not st["bracketed"]
    }
    if args.overhead:
        rounds, steps = (
            (2, cfg.refresh_every) if cfg.name == "smoke" else (5, 2 * cfg.refresh_every)
        )
        summary["overhead_benchmark"] = overhead_benchmark(cfg, data, device, rounds, steps)
    summary["device"] = str(device) + (
        f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    )
    summary["torch_threads"] = torch.get_num_threads()
    summary["verdict"] = verdict(summary)
    write_outputs(cfg, summary, finals, out)
    print(table(cfg, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
