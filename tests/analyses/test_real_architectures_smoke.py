"""analyses/real_architectures.py end to end (--smoke), its kappas against an independent
dense float64 eigendecomposition, and its resumption."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacfwd
from tests.analyses.scripts import load_script

pytestmark = pytest.mark.slow  # runs an analysis script end to end

ROOT = Path(__file__).resolve().parents[2]


def _independent_kappa(
    net: nn.Module, unit: nn.Sequential | nn.Module, x: torch.Tensor, rel_threshold: float
) -> tuple[float, int]:
    """kappa on the range and rank of ``(1/m) J^T J``, J = d unit(z) / d (unit's weights),
    z the unit's input in a train-mode (batch-statistics) float64 forward; built with
    torch.func only (no hessiankit)."""
    seen: list[torch.Tensor] = []
    first = unit[0] if isinstance(unit, nn.Sequential) else unit  # a slice is not called
    h = first.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    net.train()
    with torch.no_grad():
        net(x)
    h.remove()
    z = seen[0]
    unit = copy.deepcopy(unit)
    for m in unit.modules():
        if isinstance(m, nn.BatchNorm2d):  # batch statistics, no running-statistics update
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    names = [n for n, _ in unit.named_parameters()]
    params = {n: p.detach() for n, p in unit.named_parameters()}

    def f(*flat: torch.Tensor) -> torch.Tensor:
        return functional_call(unit, dict(zip(names, flat)), (z,)).reshape(-1)

    jac = jacfwd(f, argnums=tuple(range(len(names))))(*params.values())
    J = torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)
    H = J.T @ J / x.shape[0]
    ev = torch.linalg.eigvalsh(H).numpy()
    on = ev[ev > rel_threshold * ev[-1]]
    return float(on[-1] / on[0]), int(on.size)


def test_smoke_run_matches_dense_reference_and_resumes(tmp_path: Path) -> None:
    exp = load_script("real_architectures")
    out, ck = tmp_path / "out", tmp_path / "ck"
    configs = "vgg13-bn-he,resnet20-skip-orth"
    argv = ["--smoke", "--configs", configs, "--out", str(out), "--checkpoints", str(ck)]
    argv += ["--input-batch", "2", "--input-products", "60"]
    threads = torch.get_num_threads()
    try:
        assert exp.main(argv) == 0
        runs = sorted((out / "runs").glob("*/*.json"))
        assert [p.relative_to(out / "runs").as_posix() for p in runs] == [
            "resnet20-skip-orth/seed0_epoch0.json",
            "resnet20-skip-orth/seed0_epoch1.json",
            "vgg13-bn-he/seed0_epoch0.json",
            "vgg13-bn-he/seed0_epoch1.json",
        ]
        for name in ("results.json", "kappa_vgg13.png", "kappa_resnet20.png", "table.md"):
            assert (out / name).is_file()
        before = {p: p.read_text() for p in runs}

        # The weight kappa of a conv-BN-ReLU-pool block (separable route) and of a residual
        # unit (dense route) after one epoch, against an independent dense reference.
        x, y, xh, yh = exp.load_train("digits", 256, 32)
        for cfg, block, unit_of in (
            ("vgg13-bn-he", 2, lambda n: n.features[3:7]),
            ("resnet20-skip-orth", 2, lambda n: n.stage1[0]),
        ):
            r = json.loads((out / "runs" / cfg / "seed0_epoch1.json").read_text())
            w = r["weights"][block - 1]
            assert w["converged"] and w["method"] in ("separable-jacobian", "dense")
            net = exp.build(exp.CONFIGS[cfg], r["width"], 0)
            state = torch.load(ck / f"w{r['width']:g}" / cfg / "seed0_epoch1.pt", weights_only=True)
            net.load_state_dict(state["model"])
            net = net.double()
            m = r["hessian_batch"]
            rel = w["rank_threshold"] / w["lambda_max"]
            kappa, rank = _independent_kappa(net, unit_of(net), xh[:m].double(), rel)
            assert w["rank"] == rank
            assert w["kappa"] == pytest.approx(kappa, rel=1e-8)
            assert sum(w["spectrum_hist"]) == w["rank"]  # the stored spectrum is the range

        # results.json: weight stats from every seed; input stats only from converged runs
        res = json.loads((out / "results.json").read_text())
        e = res["configs"]["resnet20-skip-orth"]["epochs"]["1"]
        r = json.loads((out / "runs" / "resnet20-skip-orth" / "seed0_epoch1.json").read_text())
        for b in r["input"]:
            st = e["input"][str(b["block"])]["stats"]
            assert st["n"] == (1 if b["converged"] and b["kappa"] is not None else 0)
        # a rerun finds every measurement done and rewrites none
        assert exp.main(argv) == 0
        assert {p: p.read_text() for p in runs} == before
        assert np.isfinite(
            res["configs"]["vgg13-bn-he"]["epochs"]["0"]["weights_median_kappa_over_blocks"]
        )
    finally:
        torch.set_num_threads(threads)
