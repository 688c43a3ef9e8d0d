"""SLQ spectral density: hessiankit against PyHessian (the anchor), same operator, same budget.

Operator: the Hessian of the mean cross-entropy loss w.r.t. all parameters of an MLP
64-48-48-10 (tanh, float32, 5,962 parameters) on 256 scikit-learn digits, the operator
PyHessian's ``hessian.density`` works on (``hk.LossHessian`` of the whole model). Both run
``PROBES`` Rademacher probes of ``STEPS`` Lanczos steps with full reorthogonalisation and
return nodes and weights; we time each (best of ``REPEATS``) in this process and print the
ratio, and compare the first two moments (trace/n, trace(H^2)/n) to the exact ones from the
dense Hessian.

PyHessian 0.1 (PyPI ``pyhessian``) calls ``torch.eig``, removed in torch 2.0: on torch 2.x its
``density`` fails. Here that one call is replaced by ``torch.linalg.eigh`` on the (symmetric)
tridiagonal matrix; nothing else of PyHessian is changed.

Run:  pip install --no-deps --target /tmp/pyh pyhessian
      OMP_NUM_THREADS=1 PYTHONPATH=/tmp/pyh:. python analyses/benchmark_slq.py
Writes figures/slq-benchmark/benchmark.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import hessiankit as hk
from hessiankit.solvers.slq import slq

PROBES, STEPS, REPEATS = 8, 80, 2
OUT = Path(__file__).resolve().parents[1] / "figures" / "slq-benchmark" / "benchmark.json"


def _patch_torch_eig() -> None:
    def eig(T: torch.Tensor, eigenvectors: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    torch.eig = eig  # type: ignore[attr-defined]


def _moments(nodes: list[np.ndarray], weights: list[np.ndarray]) -> tuple[float, float]:
    m1 = np.mean([np.sum(w * t) for t, w in zip(nodes, weights)])
    m2 = np.mean([np.sum(w * t**2) for t, w in zip(nodes, weights)])
    return float(m1), float(m2)


def main() -> None:
    from pyhessian import hessian  # the anchor

    _patch_torch_eig()
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)[:256]
    x = (x - x.mean(0)) / (x.std(0) + 1e-3)
    y = torch.tensor(d.target)[:256]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(64, 48), nn.Tanh(), nn.Linear(48, 48), nn.Tanh(), nn.Linear(48, 10)
    )
    n = sum(p.numel() for p in net.parameters())

    def run_ours() -> tuple[list[np.ndarray], list[np.ndarray], int]:
        cap = hk.capture(net, x, y, dtype=torch.float32)
        op = hk.hessian_operator(cap, "model", kind="loss")
        r = slq(op, num_probes=PROBES, num_steps=STEPS, seed=0, reorthogonalize="full")
        return list(r.nodes), list(r.weights), r.num_products

    def run_anchor() -> tuple[list[np.ndarray], list[np.ndarray], int]:
        torch.manual_seed(0)
        h = hessian(net, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        ev, w = h.density(iter=STEPS, n_v=PROBES)
        return [np.array(e) for e in ev], [np.array(v) for v in w], PROBES * STEPS

    times: dict[str, float] = {}
    results = {}
    for name, fn in (("hessiankit", run_ours), ("pyhessian", run_anchor)):
        best = float("inf")
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            results[name] = fn()
            best = min(best, time.perf_counter() - t0)
        times[name] = best

    # exact moments from the dense float64 loss Hessian
    cap64 = hk.capture(net.double(), x.double(), y)
    H = hk.hessian_operator(cap64, "model", kind="loss").to_dense().numpy()
    exact = (float(np.trace(H)) / n, float(np.sum(H * H)) / n)
    out = {
        "operator": f"loss Hessian, MLP 64-48-48-10 tanh, {n} parameters, 256 digits, float32",
        "probes": PROBES,
        "steps": STEPS,
        "repeats": REPEATS,
        "seconds": times,
        "speedup_vs_pyhessian": times["pyhessian"] / times["hessiankit"],
        "exact_moments": exact,
        "moments": {k: _moments(v[0], v[1]) for k, v in results.items()},
        "products": {k: v[2] for k, v in results.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"dimension {n}, {PROBES} probes x {STEPS} steps (best of {REPEATS}, {torch.get_num_threads()} thread(s))"
    )
    for k in ("hessiankit", "pyhessian"):
        m1, m2 = out["moments"][k]
        print(f"{k:10s} {times[k]:8.2f} s   trace/n {m1:.5g}   tr(H^2)/n {m2:.5g}")
    print(f"exact                  trace/n {exact[0]:.5g}   tr(H^2)/n {exact[1]:.5g}")
    print(f"speed-up of hessiankit over PyHessian: {out['speedup_vs_pyhessian']:.2f}x")


if __name__ == "__main__":
    main()
