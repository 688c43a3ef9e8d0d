"""hessiankit against PyHessian, curvlinops (+ SciPy eigsh) and hessian-eigenthings, side by side.

Same model, batch, dtype (float32), thread count and accuracy target, in one process; tools are
timed in turn (A B C D A B C D ...) and the median over repeats is reported, with the ratio
hessiankit / anchor, the number of Hessian products each tool used, the relative error of its
eigenvalues against a float64 hessiankit reference (tol 1e-9), and (``--memory``) each tool's
peak memory for a top-10 run, each in a fresh subprocess (peak RSS above the process's
resident set before the run; ``torch.cuda.max_memory_allocated`` on a GPU).

Every tool computes in float32 proper: TF32, PyTorch's default for convolutions on NVIDIA GPUs
(relative error ~1e-3 per product, which showed as 1e-4 errors in every anchor's eigenvalues on
an H100), is off unless ``--tf32``; hessiankit turns it off for its own computations anyway.

Tasks (loss Hessian of the batch-mean cross-entropy w.r.t. every parameter, batch norm in eval
mode, which is what every anchor computes):

``product``  one Hessian-vector product (graph built once) against one gradient.
``top1``     the largest eigenvalue to relative accuracy ``--rtol``.
``top10``    the ten largest eigenvalues to relative accuracy ``--rtol``.
``trace``    Hutchinson with ``--probes`` Rademacher probes (agreement: within 5 standard errors).
``density``  SLQ with one probe and ``--steps`` Lanczos steps (agreement: the largest node).
``blocks``   every block's local Hessian top-5 and smallest nonzero eigenvalue (hessiankit only:
             the anchors have no local Hessians), against one full-model top-5 run.

hessiankit's top-k runs start Lanczos from the loss gradient (``LossHessian.gradient()``, free
from the kept graph, plus a 10% random component): the gradient lies mostly in the top
eigenspace, which saves 10-30% of the products; ``--hk-start random`` times the random start.

How each anchor is driven to the same accuracy (read ``/work/shared/anchors.md`` section 6):
PyHessian's power iteration stops on a relative change; it is given ``tol = rtol / 10`` and
``maxIter = 1000`` (top-10: ``--ph-top10-max-iter``; its default tol 1e-3 is off by ~1e-3). hessian-eigenthings' Lanczos runs a fixed
number of steps; it is given as many steps as hessiankit used products (at least ``2k`` and
``k + 10``), and its own convergence flags are reported. curvlinops goes through
``scipy.sparse.linalg.eigsh(tol=rtol)``. PyHessian's ``density`` calls the removed ``torch.eig``;
it is run with a shim that answers through ``torch.linalg.eigh`` (T is symmetric).
PyHessian accumulates into ``p.grad``: gradients are cleared after each of its runs.

Usage::

    python analyses/benchmark.py                      # the full run (see README for sizes)
    python analyses/benchmark.py --short              # CI: tiny sizes, asserts agreement only

An anchor that cannot be imported is skipped with the reason printed; hessiankit's own parts
still run and assert.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import contextlib
import importlib
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hessiankit as hk  # noqa: E402
from hessiankit.blocks import Block  # noqa: E402
from hessiankit.operators.all_blocks import AllBlocksLocalHessian  # noqa: E402
from hessiankit.pipeline import SolverOptions, block_operators, run_blocks  # noqa: E402
from hessiankit.solvers import hutchinson  # noqa: E402

ANCHORS = ("pyhessian", "curvlinops", "eigenthings")
FULL_TOP5 = "hessiankit full-model top-5"
BLOCKS_ONE_BY_ONE = "hessiankit one block at a time"
BLOCKS_TOP_ONLY = "hessiankit every block, top-5 only"
TOOLS = ("hessiankit", *ANCHORS)
TASKS = ("product", "top1", "top10", "trace", "density", "blocks")


# -- models -----------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet basic block with batch norm; a 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.proj is None else self.proj(x)))


def cifar_cnn(widths: tuple[int, ...], hidden: int, image: int, classes: int = 10) -> nn.Sequential:
    """conv-BN-ReLU-maxpool stages, then a two-layer head (CIFAR-shaped input 3 x image^2)."""
    layers: list[nn.Module] = []
    c = 3
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
        c = w
    side = image // 2 ** len(widths)
    layers += [
        nn.Flatten(),
        nn.Linear(c * side * side, hidden),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    ]
    return nn.Sequential(*layers)


def small_resnet(widths: tuple[int, ...], classes: int = 10) -> nn.Sequential:
    """Stem conv-BN-ReLU, one basic block per width (stride 2 after the first), pool, linear."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(),
    ]
    c = widths[0]
    for i, w in enumerate(widths):
        layers.append(BasicBlock(c, w, 1 if i == 0 else 2))
        c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


SIZES: dict[str, dict[str, Any]] = {
    "full": {"image": 32, "cnn": ((32, 48, 64), 32), "resnet": (32, 64, 128)},
    "short": {"image": 8, "cnn": ((4, 6), 8), "resnet": (4, 6)},
}


def build(
    model: str, size: str, batch: int, seed: int, device: str
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A model with random weights and non-trivial BN statistics, and a random CIFAR-shaped batch."""
    torch.manual_seed(seed)
    spec = SIZES[size]
    if model == "cnn":
        widths, hidden = spec["cnn"]
        net = cifar_cnn(widths, hidden, spec["image"])
    else:
        net = small_resnet(spec["resnet"])
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    x = torch.randn((batch, 3, spec["image"], spec["image"]), generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    return net.eval().to(device), x.to(device), y.to(device)


# -- one run of one tool ----------------------------------------------------------------------
@dataclass
class Run:
    values: list[float]
    products: int
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Setup:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    rtol: float
    probes: int
    steps: int
    seed: int
    block_p: int = 5
    block_budget: int | None = None
    ph_max_iter: int = 1000  # top-1
    ph_top10_max_iter: int = 1000
    compile: bool = False
    hk_start: str = "gradient"
    hk_products: dict[str, int] = field(default_factory=dict)


def _clear_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


def _hk_loss_op(s: Setup) -> hk.LossHessian:
    # The loss Hessian reads no back-propagated gradients: skip their backward and memory.
    return hk.LossHessian(hk.capture(s.model, s.x, s.y, gradients=False), "model")


def _weighted_blocks(cap: hk.BlockCapture) -> list[Block]:
    return [
        b for b in cap.split if any(cap.state.params[n].is_floating_point() for n in b.param_names)
    ]


def hk_run(task: str, s: Setup) -> Run:
    # Every eigenvalue run goes through the library pipeline (hessiankit.pipeline.run_blocks),
    # the path the CLI and the report take.
    if task in ("top1", "top10", "top5"):
        k = int(task[3:])
        cap = hk.capture(s.model, s.x, s.y, gradients=False)
        opts = SolverOptions(
            top=k,
            bottom=0,
            method="lanczos",
            tol=s.rtol,
            seed=s.seed,
            block_size=1,
            gradient_start=s.hk_start == "gradient",
        )
        [res] = run_blocks(block_operators(cap, kind="loss"), "model", opts)
        r = res.spectrum
        s.hk_products[task] = r.num_products
        return Run(
            r.top.eigenvalues.tolist(),
            r.num_products,
            extra={"converged": bool(r.top.all_converged)},
        )
    if task == "trace":
        t = hutchinson(_hk_loss_op(s), num_probes=s.probes, seed=s.seed)
        return Run([t.trace], t.num_products, extra={"std_error": t.std_error})
    if task == "density":
        slq = _optional_slq()
        if slq is None:
            raise _Skip("hessiankit.solvers.slq is not on this branch (issue 5 adds it)")
        op = _hk_loss_op(s)
        d = slq(op, num_probes=1, num_steps=s.steps, seed=s.seed)
        return Run([float(max(n.max() for n in d.nodes))], d.num_products)
    if task in ("blocks", "blocks-top", "blocks-each"):
        cap = hk.capture(s.model, s.x, s.y, gradients=False)
        blocks = _weighted_blocks(cap)
        opts = SolverOptions(
            top=5,
            bottom=0 if task == "blocks-top" else 1,
            # "blocks": the library's default route per block (exact separable spectra where
            # the block splits over its output channels, else dense or Lanczos); the other two
            # rows time Lanczos alone.
            method="auto" if task == "blocks" else "lanczos",
            tol=s.rtol,
            seed=s.seed,
            block_size=s.block_p,
            max_products=s.block_budget,
            all_blocks={"blocks": "auto", "blocks-top": "always"}.get(task, "never"),  # type: ignore[arg-type]
            clip=True,
        )
        rs = [r.spectrum for r in run_blocks(block_operators(cap), blocks, opts)]
        if task == "blocks-each":  # one LocalHessian (own graph) at a time
            conv = all(r.top.all_converged and r.bottom.all_converged for r in rs)
            return Run(
                [float(r.top.eigenvalues[0]) for r in rs],
                sum(r.num_products for r in rs),
                extra={"converged": conv},
            )
        return Run(
            [float(r.top.eigenvalues[0]) for r in rs],
            max(r.num_products for r in rs),
            extra={
                "converged": all(r.converged for r in rs),
                "blocks": len(rs),
                "per_block_products": [r.num_products for r in rs],
                "bottom_converged": [bool(r.bottom.all_converged) for r in rs],
                "top_converged": [bool(r.top.all_converged) for r in rs],
            },
        )
    raise KeyError(task)


def _optional_slq() -> Callable[..., Any] | None:
    try:
        return importlib.import_module("hessiankit.solvers.slq").slq  # type: ignore[no-any-return]
    except ImportError:
        return None


class _Skip(Exception):
    pass


@contextlib.contextmanager
def _torch_eig_shim() -> Any:
    """PyHessian's density calls the removed torch.eig; answer it through eigh (T is symmetric)."""

    def eig(T: torch.Tensor, eigenvectors: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    had = hasattr(torch, "eig")
    old = getattr(torch, "eig", None)
    torch.eig = eig  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had:
            torch.eig = old  # type: ignore[attr-defined]
        else:
            del torch.eig  # type: ignore[attr-defined]


def pyhessian_run(task: str, s: Setup) -> Run:
    ph = importlib.import_module(
        "pyhessian.hessian"
    )  # the module (the package re-exports a class of that name)

    count = {"n": 0}
    original = ph.hessian_vector_product

    def counted(gradsH: Any, params: Any, v: Any) -> Any:
        count["n"] += 1
        return original(gradsH, params, v)

    ph.hessian_vector_product = counted
    torch.manual_seed(s.seed)
    try:
        h = ph.hessian(s.model, nn.CrossEntropyLoss(), data=(s.x, s.y), cuda=s.x.is_cuda)
        if task in ("top1", "top10"):
            cap = s.ph_max_iter if task == "top1" else s.ph_top10_max_iter
            vals, _ = h.eigenvalues(maxIter=cap, tol=s.rtol / 10, top_n=int(task[3:]))
            return Run(sorted(vals, reverse=True), count["n"], extra={"max_iter": cap})
        if task == "trace":
            est = h.trace(maxIter=s.probes, tol=-np.inf)  # exactly `probes` probes
            return Run(
                [float(np.mean(est))],
                count["n"],
                extra={"std_error": float(np.std(est, ddof=1) / np.sqrt(len(est)))},
            )
        if task == "density":
            with _torch_eig_shim():
                nodes, _ = h.density(iter=s.steps, n_v=1)
            return Run([float(np.max(nodes[0]))], count["n"], note="torch.eig shimmed by eigh")
        raise _Skip("no such task in PyHessian")
    finally:
        ph.hessian_vector_product = original
        _clear_grads(s.model)


def curvlinops_run(task: str, s: Setup) -> Run:
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import eigsh

    params = [p for p in s.model.parameters() if p.requires_grad]
    H = HessianLinearOperator(
        s.model, nn.CrossEntropyLoss(), params, [(s.x, s.y)], check_deterministic=False
    )
    count = {"n": 0}
    inner = H._matmat

    def counted(X: list[torch.Tensor]) -> list[torch.Tensor]:
        count["n"] += int(X[0].shape[-1])
        return inner(X)

    H._matmat = counted  # type: ignore[method-assign]
    if task in ("top1", "top10"):
        k = int(task[3:])
        rng = np.random.default_rng(s.seed)
        vals = eigsh(
            H.to_scipy(),
            k=k,
            which="LA",
            tol=s.rtol,
            v0=rng.standard_normal(H.shape[0]),
            return_eigenvectors=False,
        )
        return Run(sorted(vals.tolist(), reverse=True), count["n"])
    if task == "trace":
        from curvlinops import hutchinson_trace

        torch.manual_seed(s.seed)
        est = hutchinson_trace(H, num_matvecs=s.probes)
        return Run([float(est)], count["n"])
    if task == "density":
        raise _Skip(
            "curvlinops' SLQ returns a smoothed curve only and spends extra eigsh runs "
            "on the spectrum's boundaries; not comparable node for node"
        )
    raise _Skip("no such task in curvlinops")


def eigenthings_run(task: str, s: Setup) -> Run:
    import hessian_eigenthings as he

    op = he.HessianOperator(s.model, [(s.x, s.y)], he.supervised_loss(nn.functional.cross_entropy))
    count = {"n": 0}
    inner = op.matvec

    def counted(v: torch.Tensor) -> torch.Tensor:
        count["n"] += 1
        return inner(v)

    op.matvec = counted  # type: ignore[method-assign]
    if task in ("top1", "top10"):
        k = int(task[3:])
        steps = max(2 * k, k + 10, s.hk_products.get(task, 0))
        r = he.lanczos(
            op,
            k=k,
            max_iter=min(steps, op.size - 1),
            which="LA",
            tol=s.rtol,
            seed=s.seed,
            reorthogonalize=True,
        )
        return Run(
            sorted(r.eigenvalues.tolist(), reverse=True),
            count["n"],
            extra={"converged": bool(r.converged.all()), "steps": steps},
        )
    if task == "trace":
        t = he.hutchinson(op, num_samples=s.probes, seed=s.seed)
        return Run([float(t.estimate)], count["n"], extra={"std_error": float(t.stderr)})
    if task == "density":
        d = he.spectral_density(op, num_runs=1, lanczos_steps=s.steps, seed=s.seed)
        return Run([float(d.raw_eigenvalues.max())], count["n"])
    raise _Skip("no such task in hessian-eigenthings")


RUNNERS: dict[str, Callable[[str, Setup], Run]] = {
    "hessiankit": hk_run,
    "pyhessian": pyhessian_run,
    "curvlinops": curvlinops_run,
    "eigenthings": eigenthings_run,
}
IMPORTS = {
    "pyhessian": "pyhessian",
    "curvlinops": "curvlinops",
    "eigenthings": "hessian_eigenthings",
}


def available_anchors(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    ok, skipped = [], {}
    for a in wanted:
        try:
            importlib.import_module(IMPORTS[a])
        except Exception as exc:  # noqa: BLE001 - any import failure skips the anchor
            skipped[a] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            ok.append(a)
    return ok, skipped


# -- measurements -----------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def product_vs_gradient(s: Setup, repeats: int) -> dict[str, Any]:
    """One loss-Hessian product (graph kept, hessiankit) and its parts, against one gradient."""
    device = s.x.device
    model, x, y = s.model, s.x, s.y

    def gradient() -> None:
        _clear_grads(model)
        nn.functional.cross_entropy(model(x), y).backward()
        _clear_grads(model)

    op = _hk_loss_op(s)
    v = torch.randn(op.dim, 1, generator=torch.Generator().manual_seed(s.seed)).to(device)
    V = torch.randn(op.dim, 8, generator=torch.Generator().manual_seed(s.seed)).to(device)
    batched = _hk_loss_op(s)
    batched._engine._batched.prefer = "batched"  # type: ignore[attr-defined]
    looped = _hk_loss_op(s)
    looped._engine._batched.prefer = "loop"  # type: ignore[attr-defined]
    fwd = hk.LossHessian(
        hk.capture(model, x, y, gradients=False), "model", backend="forward-over-reverse"
    )
    params = list(model.parameters())
    blocks = AllBlocksLocalHessian(hk.capture(model, x, y, gradients=False))
    vb = torch.randn(blocks.dim, 1, generator=torch.Generator().manual_seed(s.seed)).to(device)

    def rebuild_each_time() -> None:  # what hessian-eigenthings does per product
        loss = nn.functional.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        torch.autograd.grad(g, params, [torch.ones_like(p) for p in params])

    compiled: dict[str, Callable[[], Any]] = {}
    if s.compile:
        compiled = _compiled_products(s)
    jobs: dict[str, Callable[[], Any]] = {
        "gradient": gradient,
        "capture + graph (once)": lambda: _hk_loss_op(s),
        "product (graph kept)": lambda: op.matmat(v),
        "product, forward-over-reverse": lambda: fwd.matmat(v),
        "product, graph rebuilt": rebuild_each_time,
        "8 products batched (vmap) / 8": lambda: batched.matmat(V),
        "8 products looped / 8": lambda: looped.matmat(V),
        "every block's local GN product (graph kept)": lambda: blocks.matmat(vb),
        **compiled,
    }
    for fn in jobs.values():  # warm up
        fn()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            times[name].append(_timed(fn, device)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in ("8 products batched (vmap) / 8", "8 products looped / 8"):
        med[k] /= 8
    return {
        "seconds": med,
        "ratio_product_to_gradient": med["product (graph kept)"] / med["gradient"],
    }


def _compiled_products(s: Setup) -> dict[str, Callable[[], Any]]:
    """``torch.compile`` of the functional Hessian-vector product (torch.func), both orders.

    Compiling happens here, outside the timed loop; its seconds are printed. The kept-graph
    double backward cannot be compiled (the graph is built eagerly once), so these are the
    functional products a compiled path would use.
    """
    from torch.func import functional_call, grad, jvp, vjp

    model, x, y = s.model, s.x, s.y
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    v = {k: torch.randn_like(p) for k, p in params.items()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

    def forward_over_reverse(p: Any, u: Any) -> Any:
        return jvp(grad(loss), (p,), (u,))[1]

    def reverse_over_reverse(p: Any, u: Any) -> Any:
        return vjp(grad(loss), p)[1](u)[0]

    out: dict[str, Callable[[], Any]] = {}
    for name, fn in [
        ("forward-over-reverse", forward_over_reverse),
        ("reverse-over-reverse", reverse_over_reverse),
    ]:
        c = torch.compile(fn)
        seconds, _ = _timed(lambda c=c: c(params, v), x.device)
        print(f"  torch.compile {name}: {seconds:.1f} s to compile", flush=True)
        out[f"product, torch.compile {name}"] = lambda c=c: c(params, v)
    return out


def reference_top(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, seed: int
) -> dict[str, np.ndarray]:
    """float64 hessiankit Lanczos at tol 1e-9: the yardstick for everyone's eigenvalues.

    ``"LA"``: the k largest (algebraic); ``"LM"``: the k largest in magnitude, what PyHessian's
    deflated power iteration finds (the loss Hessian is indefinite).
    """
    cap = hk.capture(model, x, y, dtype=torch.float64)
    opts = SolverOptions(
        top=k,
        bottom=k,
        method="lanczos",
        block_size=1,
        tol=1e-9,
        seed=seed + 7,
        gradient_start=False,  # the yardstick starts where no tool is favoured
    )
    r = run_blocks(block_operators(cap, kind="loss"), "model", opts)[0].spectrum
    both = np.concatenate([r.top.eigenvalues, r.bottom.eigenvalues])
    lm = both[np.argsort(-np.abs(both), kind="stable")][:k]
    return {"LA": np.asarray(r.top.eigenvalues), "LM": lm}


def run_tasks(
    s: Setup,
    tasks: list[str],
    tools: list[str],
    repeats: int,
    slow_repeats: int,
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Median seconds per (task, tool), timed in turn A B C D A B C D."""
    device = s.x.device
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if task == "product":
            continue
        row: dict[str, Any] = {}
        names = ["hessiankit"] if task == "blocks" else list(tools)
        reps = slow_repeats if task in ("top10", "blocks") else repeats
        runs: dict[str, list[float]] = {n: [] for n in names}
        last: dict[str, Run] = {}
        skipped: dict[str, str] = {}
        if task == "blocks":
            names = ["hessiankit", BLOCKS_TOP_ONLY, BLOCKS_ONE_BY_ONE, FULL_TOP5]
            runs = {n: [] for n in names}
        for rep in range(reps):
            for name in names:
                if name in skipped:
                    continue
                fn = {
                    FULL_TOP5: lambda: hk_run("top5", s),
                    BLOCKS_TOP_ONLY: lambda: hk_run("blocks-top", s),
                    BLOCKS_ONE_BY_ONE: lambda: hk_run("blocks-each", s),
                }.get(name, lambda n=name, t=task: RUNNERS[n](t, s))
                try:
                    seconds, r = _timed(fn, device)
                except _Skip as why:
                    skipped[name] = str(why)
                    log(f"  {task:8s} {name:28s} skipped: {why}")
                    continue
                runs[name].append(seconds)
                last[name] = r
                log(
                    f"  {task:8s} {name:28s} rep {rep + 1}/{reps}: {seconds:8.3f} s, {r.products} products"
                )
        for name in names:
            if name in skipped:
                row[name] = {"skipped": skipped[name]}
            elif runs[name]:
                r = last[name]
                row[name] = {
                    "seconds": statistics.median(runs[name]),
                    "runs": runs[name],
                    "products": r.products,
                    "values": r.values,
                    "note": r.note,
                    **r.extra,
                }
        out[task] = row
    return out


def memory_child(
    tool: str, model: str, size: str, batch: int, rtol: float, seed: int, device: str
) -> dict[str, float]:
    """Peak memory of one top-10 run, measured in this (fresh) process."""
    net, x, y = build(model, size, batch, seed, device)
    s = Setup(net, x, y, rtol, 0, 0, seed)
    if tool == "eigenthings":  # it runs as many steps as hessiankit used in the timed run
        s.hk_products["top10"] = int(os.environ.get("HK_TOP10_PRODUCTS", "0"))
    # PyHessian keeps one vector per eigenvalue whatever its iteration count: capping its
    # iterations bounds the run time without changing its peak memory.
    s.ph_top10_max_iter = 5
    if x.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        RUNNERS[tool]("top10", s)
        torch.cuda.synchronize()
        return {
            "peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20,
            "kind": "cuda max allocated",
        }
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    base = _status_kib("VmRSS")
    RUNNERS[tool]("top10", s)
    return {"peak_mib": (_status_kib("VmHWM") - base) / 1024, "kind": "peak RSS above start"}


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def measure_memory(
    tools: list[str],
    model: str,
    size: str,
    batch: int,
    rtol: float,
    seed: int,
    device: str,
    hk_top10_products: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in tools:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-child",
            tool,
            "--models",
            model,
            "--batch",
            str(batch),
            "--rtol",
            str(rtol),
            "--seed",
            str(seed),
            "--device",
            device,
        ]
        if size == "short":
            cmd.append("--short")
        env = {**os.environ, "HK_TOP10_PRODUCTS": str(hk_top10_products)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            out[tool] = {"skipped": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        else:
            out[tool] = json.loads(proc.stdout.strip().splitlines()[-1])
        log(f"  memory   {tool:28s} {out[tool]}")
    return out


# -- report -----------------------------------------------------------------------------------
def relative_errors(values: list[float], ref: np.ndarray) -> float:
    k = min(len(values), len(ref))
    v = np.asarray(values[:k])
    return float(np.max(np.abs(v - ref[:k]) / np.abs(ref[:k])))


def check_agreement(
    task: str, row: dict[str, Any], ref: dict[str, np.ndarray], rtol: float
) -> dict[str, str]:
    """Pass/fail per tool: eigenvalues within 10 rtol of the reference (plus what each tool allows)."""
    verdict: dict[str, str] = {}
    for name, r in row.items():
        if "values" not in r:
            continue
        if task in ("top1", "top10"):
            if name == "pyhessian":  # largest in magnitude, in its own order
                vals = sorted(r["values"], key=lambda v: -abs(v))
                err = relative_errors(vals, ref["LM"])
            else:
                err = relative_errors(r["values"], ref["LA"])
            r["rel_error"] = err
            verdict[name] = "ok" if err <= 10 * rtol else f"off by {err:.1e}"
        elif task == "density":
            err = abs(r["values"][0] - ref["LA"][0]) / abs(ref["LA"][0])
            r["rel_error"] = err
            verdict[name] = "ok" if err <= 1e-2 else f"largest node off by {err:.1e}"
    if (
        task == "blocks"
        and "values" in row.get("hessiankit", {})
        and "values" in row.get(BLOCKS_ONE_BY_ONE, {})
    ):
        err = relative_errors(
            row["hessiankit"]["values"], np.asarray(row[BLOCKS_ONE_BY_ONE]["values"])
        )
        row["hessiankit"]["rel_error"] = err
        verdict["hessiankit"] = (
            "ok" if err <= 10 * rtol else f"off by {err:.1e} from one block at a time"
        )
    if task == "trace" and "hessiankit" in row and "values" in row["hessiankit"]:
        base = row["hessiankit"]
        for name, r in row.items():
            if "values" not in r:
                continue
            se = np.hypot(
                base.get("std_error", 0.0), r.get("std_error", base.get("std_error", 0.0))
            )
            dev = abs(r["values"][0] - base["values"][0])
            r["deviation_in_se"] = dev / se if se > 0 else 0.0
            verdict[name] = "ok" if dev <= 5 * se else f"{dev / se:.1f} standard errors apart"
    return verdict


def _same_numbers(r: dict[str, Any]) -> bool:
    """An anchor computes the same quantity: within 5% (its own stopping rule may be looser than
    rtol, as PyHessian's power iteration on close eigenvalues is; the table shows its error)."""
    return r.get("rel_error", 0.0) <= 5e-2 and r.get("deviation_in_se", 0.0) <= 5.0


def render(results: dict[str, Any]) -> str:
    lines = []
    for model, res in results["models"].items():
        lines.append(
            f"\n### {model}: {res['parameters']:,} parameters, batch {res['batch']}, float32, "
            f"{results['threads']} thread(s), rtol {results['rtol']:g}\n"
        )
        p = res["product"]
        lines.append("| product on a fixed batch | seconds (median) | / gradient |")
        lines.append("|---|---:|---:|")
        for k, v in p["seconds"].items():
            lines.append(f"| {k} | {v:.4f} | {v / p['seconds']['gradient']:.2f} |")
        lines.append("")
        lines.append(
            "| task | tool | seconds (median) | products | hessiankit / tool | rel. error | agrees |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---|")
        for task, row in res["tasks"].items():
            base = row.get("hessiankit", {}).get("seconds")
            for name, r in row.items():
                if "skipped" in r:
                    lines.append(f"| {task} | {name} | skipped: {r['skipped']} | | | | |")
                    continue
                ratio = f"{base / r['seconds']:.3f}" if base and name != "hessiankit" else ""
                err = (
                    f"{r['rel_error']:.1e}"
                    if "rel_error" in r
                    else (f"{r['deviation_in_se']:.1f} se" if "deviation_in_se" in r else "")
                )
                conv = "" if r.get("converged", True) else " (not converged)"
                lines.append(
                    f"| {task} | {name} | {r['seconds']:.3f} | {r['products']} | {ratio} | {err} | "
                    f"{res['agreement'].get(task, {}).get(name, '')}{conv} |"
                )
        if res.get("memory"):
            lines.append("")
            lines.append("| top-10 peak memory | MiB | hessiankit / tool |")
            lines.append("|---|---:|---:|")
            hk_mem = res["memory"].get("hessiankit", {}).get("peak_mib")
            for name, m in res["memory"].items():
                if "peak_mib" not in m:
                    lines.append(f"| {name} | skipped: {m.get('skipped')} | |")
                    continue
                ratio = (
                    f"{hk_mem / m['peak_mib']:.2f}"
                    if hk_mem and name != "hessiankit" and m["peak_mib"] > 0
                    else ""
                )
                lines.append(f"| {name} | {m['peak_mib']:.1f} | {ratio} |")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---:|---|")
        for t in res["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    return "\n".join(lines)


def targets(res: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    tasks = res["tasks"]

    def ratio(task: str, anchor: str) -> float | None:
        row = tasks.get(task, {})
        a, b = row.get("hessiankit", {}), row.get(anchor, {})
        if "seconds" in a and "seconds" in b:
            return a["seconds"] / b["seconds"]
        return None

    for task, anchor, goal in [
        ("top1", "pyhessian", 0.25),
        ("top1", "curvlinops", 0.5),
        ("top1", "eigenthings", 0.5),
        ("top10", "pyhessian", 0.1),
    ]:
        r = ratio(task, anchor)
        out.append(
            {
                "target": f"{task}: hessiankit / {anchor} <= {goal}",
                "measured": "n/a" if r is None else f"{r:.3f}",
                "met": "n/a" if r is None else ("yes" if r <= goal else "no"),
            }
        )
    b = tasks.get("blocks", {})
    if "seconds" in b.get("hessiankit", {}) and "seconds" in b.get(
        "hessiankit full-model top-5", {}
    ):
        full = b[FULL_TOP5]["seconds"]
        for name, what in [
            ("hessiankit", "every block's top-5 + smallest"),
            (BLOCKS_TOP_ONLY, "every block's top-5 (no smallest)"),
        ]:
            if "seconds" not in b.get(name, {}):
                continue
            r = b[name]["seconds"] / full
            conv = "" if b[name].get("converged", True) else " (not converged)"
            out.append(
                {
                    "target": f"{what} <= 1.5 x one full-model top-5",
                    "measured": f"{r:.2f}{conv}",
                    "met": "yes" if r <= 1.5 and not conv else "no",
                }
            )
    r = res["product"]["ratio_product_to_gradient"]
    out.append(
        {
            "target": "one product <= 1.3 x one gradient",
            "measured": f"{r:.2f}",
            "met": "yes" if r <= 1.3 else "no",
        }
    )
    mem = res.get("memory") or {}
    anchors = [m["peak_mib"] for n, m in mem.items() if n != "hessiankit" and "peak_mib" in m]
    if anchors and "peak_mib" in mem.get("hessiankit", {}):
        r = mem["hessiankit"]["peak_mib"] / max(min(anchors), 1e-9)
        out.append(
            {
                "target": "top-10 peak memory <= 1.2 x lowest anchor",
                "measured": f"{r:.2f}",
                "met": "yes" if r <= 1.2 else "no",
            }
        )
    return out


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--short", action="store_true", help="CI mode: tiny sizes, assert agreement only"
    )
    ap.add_argument("--models", default="cnn,resnet")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--anchors", default=",".join(ANCHORS))
    ap.add_argument("--batch", type=int, default=None, help="batch size (full 128, short 8)")
    ap.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per tool (full 3, short 1)"
    )
    ap.add_argument(
        "--slow-repeats",
        type=int,
        default=None,
        help="repeats for top10 and blocks (full 2, short 1)",
    )
    ap.add_argument("--rtol", type=float, default=1e-4, help="relative accuracy of eigenvalues")
    ap.add_argument(
        "--probes", type=int, default=None, help="Hutchinson probes (full 20, short 10)"
    )
    ap.add_argument("--steps", type=int, default=None, help="SLQ steps (full 30, short 10)")
    ap.add_argument(
        "--block-size",
        type=int,
        default=1,
        help="Lanczos block size of the per-block runs (p >= a multiplicity finds every copy)",
    )
    ap.add_argument(
        "--block-budget",
        type=int,
        default=None,
        help="product budget per block (default: Lanczos')",
    )
    ap.add_argument(
        "--ph-top10-max-iter",
        type=int,
        default=1000,
        help="PyHessian's power-iteration cap per eigenvalue in top-10 (it may need thousands)",
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="add torch.compile'd functional products to the product table (compiles for minutes)",
    )
    ap.add_argument(
        "--hk-start",
        choices=["gradient", "random"],
        default="gradient",
        help="hessiankit's Lanczos start for top-k: the loss gradient (plus 10%% random) or random",
    )
    ap.add_argument(
        "--tf32",
        action="store_true",
        help="let the anchors and the gradient use TF32 on NVIDIA GPUs (PyTorch's default for "
        "convolutions; ~1e-3 relative error per product). Off by default: float32 for everyone, "
        "as hessiankit always computes",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure top-10 peak memory in subprocesses (full: on, short: off)",
    )
    ap.add_argument(
        "--out", default=None, help="folder for results.json/results.md (full: figures/benchmark)"
    )
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    size = "short" if args.short else "full"
    batch = args.batch or (8 if args.short else 128)
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if args.memory_child:
        print(
            json.dumps(
                memory_child(
                    args.memory_child,
                    args.models.split(",")[0],
                    size,
                    batch,
                    args.rtol,
                    args.seed,
                    args.device,
                )
            )
        )
        return {}
    repeats = args.repeats or (1 if args.short else 3)
    slow = args.slow_repeats or (1 if args.short else 2)
    probes = args.probes or (10 if args.short else 20)
    steps = args.steps or (10 if args.short else 30)
    memory = args.memory if args.memory is not None else not args.short
    tasks = [t for t in args.tasks.split(",") if t]
    anchors, skipped = available_anchors([a for a in args.anchors.split(",") if a])
    for a, why in skipped.items():
        print(f"anchor {a} skipped: {why}", flush=True)
    tools = ["hessiankit", *anchors]

    def log(msg: str) -> None:
        print(msg, flush=True)

    results: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "size": size,
        "threads": args.threads,
        "rtol": args.rtol,
        "device": args.device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "skipped_anchors": skipped,
        "versions": _versions(anchors),
        "models": {},
    }
    for model in [m for m in args.models.split(",") if m]:
        net, x, y = build(model, size, batch, args.seed, args.device)
        n_params = sum(p.numel() for p in net.parameters())
        log(f"== {model}: {n_params:,} parameters, batch {batch}, device {args.device}")
        if any(t in tasks for t in ("top1", "top10", "density")):
            ref = reference_top(net, x, y, 10, args.seed)
            log(f"  float64 reference top-10: {np.array2string(ref['LA'][:3], precision=6)} ...")
        else:  # no task compares with it (the blocks row checks against its own Lanczos run)
            ref = {"LA": np.array([]), "LM": np.array([])}
        s = Setup(
            net, x, y, args.rtol, probes, steps, args.seed, args.block_size, args.block_budget
        )
        s.ph_top10_max_iter = args.ph_top10_max_iter
        s.compile = args.compile
        s.hk_start = args.hk_start
        product = (
            product_vs_gradient(s, max(repeats, 3))
            if "product" in tasks
            else {"seconds": {"gradient": 1.0}, "ratio_product_to_gradient": float("nan")}
        )
        log(f"  product / gradient: {product['ratio_product_to_gradient']:.2f}")
        res_tasks = run_tasks(s, tasks, tools, repeats, slow, log)
        agreement = {t: check_agreement(t, row, ref, args.rtol) for t, row in res_tasks.items()}
        res = {
            "parameters": n_params,
            "batch": batch,
            "reference_top10": ref["LA"].tolist(),
            "reference_top10_magnitude": ref["LM"].tolist(),
            "product": product,
            "tasks": res_tasks,
            "agreement": agreement,
        }
        if memory and "top10" in tasks:
            hk_products = res_tasks.get("top10", {}).get("hessiankit", {}).get("products", 0)
            res["memory"] = measure_memory(
                tools, model, size, batch, args.rtol, args.seed, args.device, hk_products, log
            )
        res["targets"] = targets(res)
        results["models"][model] = res
    table = render(results)
    print(table)
    if args.short:  # CI: every tool that ran must agree (speed is not asserted)
        bad = [
            f"{m}/{t}/{tool}: {v}"
            for m, res in results["models"].items()
            for t, verdicts in res["agreement"].items()
            for tool, v in verdicts.items()
            if v != "ok"
            and (tool.startswith("hessiankit") or not _same_numbers(res["tasks"][t][tool]))
        ]
        bad += [
            f"{m}/{t}/hessiankit: not converged"
            for m, res in results["models"].items()
            for t, row in res["tasks"].items()
            if row.get("hessiankit", {}).get("converged") is False
        ]
        if bad:
            raise AssertionError("benchmark tools disagree: " + "; ".join(bad))
        print("short benchmark: every tool that ran agrees with the float64 reference")
    out = Path(args.out) if args.out else (None if args.short else ROOT / "figures" / "benchmark")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
        (out / "results.md").write_text(
            f"Command: `python analyses/{results['command']}`\n{table}\n"
        )
    return results


def _versions(anchors: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    dists = {
        "pyhessian": "pyhessian",
        "curvlinops": "curvlinops-for-pytorch",
        "eigenthings": "hessian-eigenthings",
    }
    out = {}
    for a in anchors:
        try:
            out[a] = version(dists[a])
        except PackageNotFoundError:
            out[a] = "unknown"
    return out


if __name__ == "__main__":
    main()
