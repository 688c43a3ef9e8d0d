"""Peak memory of hessiankit's top-10 Lanczos run with a float64 and with a float32 Krylov basis.

The run is the benchmark's top-10 task (``analyses/benchmark.py``: loss Hessian of the
CIFAR-shaped CNN or small ResNet with BN, float32, batch-mean cross-entropy, ``top=10``,
``block_size=1``, ``tol=--rtol``), measured as its ``memory_child`` measures every tool: each
configuration in a fresh subprocess, peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) above the resident set before the capture. Linux only.

It prints, per model and basis dtype, the peak RSS, the basis' own peak bytes, the products
used, and the largest relative difference of the float32-basis eigenvalues from the
float64-basis ones (both at the same tolerance).

Usage::

    OMP_NUM_THREADS=1 python analyses/basis_memory.py --models cnn,resnet --batch 32
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "analyses"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import hessiankit as hk  # noqa: E402
from hessiankit.solvers import lanczos  # noqa: E402

DTYPES = ("float64", "float32")


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def child(model: str, size: str, batch: int, rtol: float, seed: int, basis: str) -> dict[str, Any]:
    """One top-10 run in this (fresh) process."""
    from benchmark import build  # the benchmark's models and batch, unchanged

    net, x, y = build(model, size, batch, seed, "cpu")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    base = _status_kib("VmRSS")
    start = time.perf_counter()
    op = hk.LossHessian(hk.capture(net, x, y), "model")
    r = lanczos(op, top=10, block_size=1, tol=rtol, seed=seed, basis_dtype=basis)  # type: ignore[arg-type]
    return {
        "peak_mib": (_status_kib("VmHWM") - base) / 1024,
        "seconds": time.perf_counter() - start,
        "dimension": op.dim,
        "basis_dtype": r.basis_dtype,
        "basis_mib": r.basis_bytes / 2**20,
        "products": r.num_products,
        "converged": bool(r.top.all_converged),
        "eigenvalues": r.top.eigenvalues.tolist(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,resnet")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--short", action="store_true", help="the benchmark's tiny sizes")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    size = "short" if args.short else "full"
    if args.child:
        model, basis = args.child.split(":")
        print(json.dumps(child(model, size, args.batch, args.rtol, args.seed, basis)))
        return {}
    out: dict[str, Any] = {}
    for model in [m for m in args.models.split(",") if m]:
        rows = {}
        for basis in DTYPES:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", f"{model}:{basis}"]
            cmd += ["--batch", str(args.batch), "--rtol", str(args.rtol), "--seed", str(args.seed)]
            cmd += ["--short"] if args.short else []
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows[basis] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = rows[basis]
            print(
                f"{model:7s} basis {basis}: peak RSS {r['peak_mib']:8.1f} MiB, basis "
                f"{r['basis_mib']:7.1f} MiB, {r['products']} products, {r['seconds']:.1f} s, "
                f"converged {r['converged']} (n = {r['dimension']})",
                flush=True,
            )
        a, b = (np.asarray(rows[d]["eigenvalues"]) for d in DTYPES)
        k = min(len(a), len(b))
        diff = float(np.max(np.abs(a[:k] - b[:k]) / np.abs(a[:k])))
        ratio = rows["float32"]["peak_mib"] / rows["float64"]["peak_mib"]
        print(
            f"{model:7s} float32 / float64 peak RSS {ratio:.3f}; eigenvalues differ by {diff:.1e} (relative)"
        )
        out[model] = {**rows, "peak_ratio": ratio, "eigenvalue_rel_diff": diff}
    return out


if __name__ == "__main__":
    main()
