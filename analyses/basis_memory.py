"""Peak memory of hessiankit's top-10 Lanczos run with a float64 and with a float32 Krylov basis.

The run is the benchmark's top-10 task (``analyses/benchmark.py``: loss Hessian of the
CIFAR-shaped CNN or small ResNet with BN, float32, batch-mean cross-entropy, ``top=10``,
``block_size=1``, ``tol=--rtol``), measured as its ``memory_child`` measures every tool: each
configuration in a fresh subprocess, peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) above the resident set before the capture. Linux only.

It prints, per model and basis dtype, the median peak RSS over ``--repeats`` runs (taken in
turn, float64 float32 float64 ...), the basis' own peak bytes, the products used, and the
largest relative difference of the float32-basis eigenvalues from the float64-basis ones (both
at the same tolerance).

``--max-basis-mib M`` adds a third configuration, the default basis (float32 for these float32
operators) within a budget of M MiB (thick restarts when it would not fit). ``--anchors`` also
measures the benchmark's anchors with its own ``measure_memory`` (the same fresh-subprocess
peak RSS; hessian-eigenthings runs as many steps as the float64 run used products), so the
ratios to the lowest anchor come from one run.

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


def child(model: str, size: str, batch: int, rtol: float, seed: int, config: str) -> dict[str, Any]:
    """One top-10 run in this (fresh) process; ``config`` is a basis dtype or ``budget:MIB``."""
    from benchmark import build  # the benchmark's models and batch, unchanged

    net, x, y = build(model, size, batch, seed, "cpu")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    base = _status_kib("VmRSS")
    start = time.perf_counter()
    op = hk.LossHessian(hk.capture(net, x, y), "model")
    if config.startswith("budget"):
        budget = int(float(config.split("=")[1]) * 2**20)
        r = lanczos(op, top=10, block_size=1, tol=rtol, seed=seed, max_basis_bytes=budget)
    else:
        r = lanczos(op, top=10, block_size=1, tol=rtol, seed=seed, basis_dtype=config)  # type: ignore[arg-type]
    return {
        "peak_mib": (_status_kib("VmHWM") - base) / 1024,
        "seconds": time.perf_counter() - start,
        "dimension": op.dim,
        "basis_dtype": r.basis_dtype,
        "basis_mib": r.basis_bytes / 2**20,
        "restarts": r.restarts,
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
    ap.add_argument("--repeats", type=int, default=3, help="fresh runs per configuration")
    ap.add_argument("--max-basis-mib", type=float, default=None, help="add a budgeted run")
    ap.add_argument("--anchors", default="", help="e.g. pyhessian,eigenthings,curvlinops")
    ap.add_argument("--short", action="store_true", help="the benchmark's tiny sizes")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    size = "short" if args.short else "full"
    if args.child:
        model, config = args.child.split(":")
        print(json.dumps(child(model, size, args.batch, args.rtol, args.seed, config)))
        return {}
    configs = list(DTYPES)
    if args.max_basis_mib is not None:
        configs.append(f"budget={args.max_basis_mib:g}")
    out: dict[str, Any] = {}
    for model in [m for m in args.models.split(",") if m]:
        runs: dict[str, list[dict[str, Any]]] = {d: [] for d in configs}
        for _ in range(args.repeats):
            for basis in configs:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", f"{model}:{basis}"]
                cmd += ["--batch", str(args.batch), "--rtol", str(args.rtol)]
                cmd += ["--seed", str(args.seed), *(["--short"] if args.short else [])]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[basis].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        rows = {}
        for basis in configs:
            peaks = [r["peak_mib"] for r in runs[basis]]
            r = rows[basis] = {
                **runs[basis][-1],
                "peak_mib": float(np.median(peaks)),
                "peaks": peaks,
            }
            print(
                f"{model:7s} basis {basis}: peak RSS {r['peak_mib']:8.1f} MiB (median of "
                f"{', '.join(f'{v:.1f}' for v in peaks)}), basis "
                f"{r['basis_mib']:7.1f} MiB, {r['products']} products, {r['restarts']} restarts, "
                f"{r['seconds']:.1f} s, "
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
        anchors = [a for a in args.anchors.split(",") if a]
        if anchors:
            import benchmark

            mem = benchmark.measure_memory(
                anchors,
                model,
                size,
                args.batch,
                args.rtol,
                args.seed,
                "cpu",
                rows["float64"]["products"],
                lambda msg: None,
            )
            peaks = {a: m["peak_mib"] for a, m in mem.items() if "peak_mib" in m}
            for a, m in mem.items():
                print(f"{model:7s} anchor {a}: {m}", flush=True)
            if peaks:
                low = min(peaks.values())
                ratios = {c: rows[c]["peak_mib"] / low for c in configs}
                print(
                    f"{model:7s} hessiankit / lowest anchor ({min(peaks, key=peaks.get)}, "
                    f"{low:.1f} MiB): " + ", ".join(f"{c} {v:.2f}" for c, v in ratios.items()),
                    flush=True,
                )
                out[model]["anchors"] = mem
    return out


if __name__ == "__main__":
    main()
