"""Exact spectra of every block of VGG13-BN through the separable solver (issue 12, part 1).

Builds ``hessiankit.vgg("vgg13", in_channels=3, num_classes=10, seed=0)``, captures one batch of
random 3x32x32 inputs in float64 with batch norm in train mode, and runs
:func:`hessiankit.solvers.separable.separable_spectrum` on each block's Gauss-Newton weight local
Hessian: the whole spectrum, rank, nullity and an exact condition number per block, with no
Krylov iteration. Prints per block: dimension, route, products, rank, nullity, kappa, seconds and
the peak resident memory during the block; ``--json`` writes the same rows.

Run: ``python analyses/separable_vgg13.py [--batch-size 32] [--blocks 1-11] [--route auto]
[--max-gib 2] [--width 1.0] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import hessiankit as hk  # noqa: E402
from hessiankit.solvers.separable import estimate_cost, separable_spectrum  # noqa: E402
from hessiankit.solvers.separable_structure import separability  # noqa: E402


class PeakRSS:
    """Peak resident memory of this process between start() and stop(), sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def start(self) -> None:
        self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self.peak, self.rss())


def block_list(spec: str, n: int) -> list[int]:
    out: list[int] = []
    for piece in spec.split(","):
        if "-" in piece:
            a, b = piece.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(piece))
    return [b for b in out if 1 <= b <= n]


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--blocks", default="1-11")
    p.add_argument("--route", default="auto", choices=["auto", "primal", "dual", "jacobian"])
    p.add_argument("--max-gib", type=float, default=2.0, help="working memory per block (GiB)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (smoke runs)")
    p.add_argument("--bn", default="train", choices=["train", "eval"])
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    net = hk.vgg("vgg13", in_channels=3, num_classes=10, width=args.width, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    t0 = time.perf_counter()
    cap = hk.capture(net, x, y, bn=args.bn, dtype=torch.float64, gradients=False)
    print(
        f"VGG13-BN width {args.width}: {len(cap.split)} blocks, batch {args.batch_size}, "
        f"float64, bn={args.bn}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; "
        f"capture {time.perf_counter() - t0:.1f} s"
    )
    head = (
        f"{'blk':>3} {'dim':>9} {'route':>8} {'P x d':>11} {'r':>6} {'prod':>6} {'rank':>9} "
        f"{'nullity':>8} {'kappa':>10} {'conv':>5} {'sec':>7} {'cpu_s':>7} {'peakGiB':>7}"
    )
    print(head)
    rows = []
    max_bytes = int(args.max_gib * 2**30)
    total = time.perf_counter()
    mem = PeakRSS()
    for b in block_list(args.blocks, len(cap.split)):
        mem.start()
        start, cpu0 = time.perf_counter(), time.process_time()
        op = hk.LocalHessian(cap, b)
        s, why = separability(op)
        if s is None:
            print(f"{b:>3} not separable: {why}")
            mem.stop()
            continue
        costs = estimate_cost(op, s, max_bytes=max_bytes)
        r = separable_spectrum(op, top=args.top, structure=s, max_bytes=max_bytes, route=args.route)
        products = op.num_products  # the probe's few products included
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        peak = mem.stop() / 2**30
        c = r.condition
        route = r.method.replace("separable-", "")
        kappa = f"{c.kappa:.4e}" if c.kappa is not None else "-"
        print(
            f"{b:>3} {r.dimension:>9} {route:>8} {f'{s.num_parts}x{s.part_size}':>11} "
            f"{s.out_part_size or 0:>6} {products:>6} {c.rank:>9} {c.nullity:>8} "
            f"{kappa:>10} {str(c.converged):>5} {seconds:>7.1f} {cpu:>7.1f} {peak:>7.2f}",
            flush=True,
        )
        rows.append(
            {
                "block": b,
                "name": op.block.name,
                "dimension": r.dimension,
                "route": route,
                "parts": s.num_parts,
                "part_size": s.part_size,
                "out_part_size": s.out_part_size,
                "num_products": products,
                "rank": c.rank,
                "nullity": c.nullity,
                "kappa": c.kappa,
                "kappa_error": c.kappa_error,
                "converged": c.converged,
                "lambda_max": c.lambda_max,
                "lambda_min_nonzero": c.lambda_min_nonzero,
                "precision": r.precision,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "seconds_structure_and_solve": r.seconds,
                "peak_rss_gib": peak,
                "costs": {k: v.__dict__ for k, v in costs.items()},
            }
        )
        del op, r
    elapsed = time.perf_counter() - total
    print(
        f"total {elapsed:.1f} s wall, {time.process_time():.1f} s CPU; load average {os.getloadavg()}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"blocks": rows, "seconds": elapsed}, indent=1))


if __name__ == "__main__":
    main()
