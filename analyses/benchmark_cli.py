"""Whole processes: the ``hessiankit`` command line against each anchor's own shortest script.

What a user waits for (issue 16): start-up, imports, loading the model and the data, set-up and
the products, each tool as one ``python`` process timed from the outside, in turn (A B C A B C
...), median of ``--repeats``. The case is the issue's: a CIFAR-shaped conv net with batch norm
(``benchmark.cifar_cnn``, 95,563 weights with ``--hidden 51``), batch 128, float32, BN in eval
mode, the loss Hessian of the batch-mean cross-entropy w.r.t. every weight, files written by
``torch.save`` as a user would have them.

Tasks and anchors:

``top1``   ``hessiankit spectrum model.pt --block model --kind loss --top 1 --bottom 0 --bn eval
           --data data.pt --dtype float32`` (default tol 1e-6) against hessian-eigenthings'
           Lanczos for k=1 with 20 steps and PyHessian's ``eigenvalues(top_n=1)`` at its
           default tol 1e-3.
``top10``  the same with ``--top 10`` against the anchors that can reach 1e-6: hessian-
           eigenthings' Lanczos for k=10 (no stopping rule: given ``--eig10-steps`` steps, by
           default as many as hessiankit's products) and curvlinops through SciPy's
           ``eigsh(k=10, tol=1e-6)``. PyHessian's deflated power iteration needs ~1,000 products
           for a top-10 at that accuracy (README), so it is left out.

Printed: medians, the ratios hessiankit / anchor, each tool's products where it is counted, and
the largest relative difference of its eigenvalues from hessiankit's. ``--breakdown`` also
times where hessiankit's process spends its time (interpreter and imports, load, capture,
products) from the same process's ``--json`` and stdout.

Usage::

    OMP_NUM_THREADS=1 python analyses/benchmark_cli.py --repeats 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from benchmark import cifar_cnn  # noqa: E402

# Each anchor's shortest script for the task: argv = model.pt data.pt; prints one JSON line.
_LOAD = """
import json, sys, torch
model = torch.load(sys.argv[1], weights_only=False).eval()
d = torch.load(sys.argv[2])
"""
SCRIPTS: dict[str, str] = {
    "eigenthings": _LOAD
    + """
import hessian_eigenthings as he
op = he.HessianOperator(model, [(d["x"], d["y"])], he.supervised_loss(torch.nn.functional.cross_entropy))
r = he.lanczos(op, k=__K__, max_iter=__STEPS__, which="LA", seed=0, reorthogonalize=True)
print(json.dumps({"values": sorted(r.eigenvalues.tolist(), reverse=True), "products": __STEPS__}))
""",
    "pyhessian": _LOAD
    + """
import importlib
ph = importlib.import_module("pyhessian.hessian")  # the module (the package exports a class)
count = [0]
hvp = ph.hessian_vector_product
def counted(*a):
    count[0] += 1
    return hvp(*a)
ph.hessian_vector_product = counted
h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(d["x"], d["y"]), cuda=False)
values, _ = h.eigenvalues(top_n=__K__)  # default maxIter=100, tol=1e-3
print(json.dumps({"values": sorted(values, reverse=True), "products": count[0]}))
""",
    "curvlinops": _LOAD
    + """
import numpy as np
from curvlinops import HessianLinearOperator
from scipy.sparse.linalg import eigsh
params = [p for p in model.parameters() if p.requires_grad]
H = HessianLinearOperator(model, torch.nn.CrossEntropyLoss(), params, [(d["x"], d["y"])],
                          check_deterministic=False)
v0 = np.random.default_rng(0).standard_normal(H.shape[0])
values = eigsh(H.to_scipy(), k=__K__, which="LA", tol=1e-6, v0=v0, return_eigenvectors=False)
print(json.dumps({"values": sorted(values.tolist(), reverse=True), "products": None}))
""",
}


def make_case(where: Path, hidden: int, batch: int, seed: int) -> tuple[Path, Path, int]:
    """``model.pt`` (the whole module, eval mode) and ``data.pt`` (``{"x", "y"}``) in ``where``."""
    torch.manual_seed(seed)
    net = cifar_cnn((32, 48, 64), hidden, 32)
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():  # non-trivial BN statistics, as analyses/benchmark.py's build()
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    x = torch.randn((batch, 3, 32, 32), generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    model, data = where / "model.pt", where / "data.pt"
    torch.save(net.eval(), model)
    torch.save({"x": x, "y": y}, data)
    return model, data, sum(p.numel() for p in net.parameters())


def hessiankit_command() -> list[str]:
    beside = Path(sys.executable).parent / "hessiankit"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("hessiankit")
    return [found] if found else [sys.executable, "-m", "hessiankit"]


def run_hessiankit(model: Path, data: Path, top: int, out: Path) -> dict[str, Any]:
    argv = [*hessiankit_command(), "spectrum", str(model), "--block", "model", "--kind", "loss"]
    argv += ["--top", str(top), "--bottom", "0", "--bn", "eval", "--data", str(data)]
    argv += ["--dtype", "float32", "--json", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    rec = json.loads(out.read_text())
    m = re.search(r"\(capture ([0-9.]+) s", proc.stdout)
    return {
        "seconds": wall,
        "values": rec["eigenvalues"],
        "products": rec["num_products"],
        "solve_seconds": rec["seconds"],
        "capture_seconds": float(m.group(1)) if m else None,
    }


def run_anchor(name: str, model: Path, data: Path, k: int, steps: int, where: Path) -> dict:
    script = where / f"{name}_top{k}.py"
    script.write_text(SCRIPTS[name].replace("__STEPS__", str(steps)).replace("__K__", str(k)))
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script), str(model), str(data)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{name}: {proc.stderr[-2000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    return {"seconds": wall, **json.loads(line)}


def _startup(code: str, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _diff(values: list[float], ref: list[float]) -> float:
    k = min(len(values), len(ref))
    return max(abs(a - b) / abs(b) for a, b in zip(values[:k], ref[:k]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="top1,top10")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=51, help="head width (51: 95,563 weights)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eig1-steps", type=int, default=20, help="eigenthings' steps for top-1")
    ap.add_argument("--eig10-steps", type=int, default=None, help="default: hessiankit's")
    ap.add_argument("--breakdown", action="store_true", help="where hessiankit's time goes")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"threads": os.environ["OMP_NUM_THREADS"], "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        model, data, n = make_case(where, args.hidden, args.batch, args.seed)
        results.update(weights=n, batch=args.batch)
        print(f"case: {n} weights, batch {args.batch}, float32, bn eval, loss Hessian, whole model")
        for task in args.tasks.split(","):
            k = int(task[3:])
            anchors = ["eigenthings", "pyhessian"] if k == 1 else ["eigenthings", "curvlinops"]
            runs: dict[str, list[dict[str, Any]]] = {"hessiankit": []}
            runs.update({a: [] for a in anchors})
            for _ in range(args.repeats):  # in turn: A B C A B C ...
                hk = run_hessiankit(model, data, k, where / "out.json")
                runs["hessiankit"].append(hk)
                steps = args.eig1_steps if k == 1 else (args.eig10_steps or hk["products"])
                for a in anchors:
                    runs[a].append(run_anchor(a, model, data, k, steps, where))
            ref = runs["hessiankit"][-1]["values"]
            row: dict[str, Any] = {}
            for tool, rs in runs.items():
                med = statistics.median(r["seconds"] for r in rs)
                row[tool] = {
                    "median_s": med,
                    "runs_s": [r["seconds"] for r in rs],
                    "products": rs[-1]["products"],
                    "values": rs[-1]["values"],
                    "rel_diff_from_hessiankit": _diff(rs[-1]["values"], ref),
                }
            hk_s = row["hessiankit"]["median_s"]
            print(f"\n{task}: median of {args.repeats} whole processes")
            for tool, r in row.items():
                ratio = (
                    ""
                    if tool == "hessiankit"
                    else f"  hessiankit/{tool} = {hk_s / r['median_s']:.3f}"
                )
                print(
                    f"  {tool:12s} {r['median_s']:7.2f} s  products {r['products']}  "
                    f"max rel diff {r['rel_diff_from_hessiankit']:.1e}{ratio}"
                )
            hk_runs = runs["hessiankit"]
            row["hessiankit"]["solve_s"] = statistics.median(r["solve_seconds"] for r in hk_runs)
            row["hessiankit"]["capture_s"] = statistics.median(
                r["capture_seconds"] or 0.0 for r in hk_runs
            )
            results["tasks"][task] = row
        if args.breakdown:
            reps = max(3, args.repeats)
            results["startup"] = {
                "python_s": _startup("pass", reps),
                "import_torch_s": _startup("import torch", reps),
                "import_hessiankit_pipeline_s": _startup(
                    "import hessiankit.cli.spectrum, hessiankit.pipeline.run, "
                    "hessiankit.pipeline.data",
                    reps,
                ),
            }
            print("\nstart-up (median of", reps, "):", json.dumps(results["startup"]))
            for task, row in results["tasks"].items():
                h = row["hessiankit"]
                rest = h["median_s"] - h["solve_s"] - h["capture_s"]
                print(
                    f"  {task}: whole {h['median_s']:.2f} s = solve (products + Ritz) "
                    f"{h['solve_s']:.2f} s + capture {h['capture_s']:.2f} s + interpreter, "
                    f"imports, load and output {rest:.2f} s"
                )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
