"""analyses/thesis.py: its statistics against independent computations, and the script end to
end (--smoke) with a block's kappa against a dense float64 reference built with torch.func."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.func import functional_call, jacfwd
from tests.analyses.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def test_partial_spearman_is_the_correlation_of_rank_residuals_given_the_groups() -> None:
    exp = load_script("thesis")
    rng = np.random.default_rng(0)
    groups = np.repeat([2, 4, 8, 16], 6)
    x = rng.normal(size=groups.size) + 0.3 * np.log2(groups)
    y = 0.5 * x + rng.normal(size=groups.size) + np.log2(groups)
    # reference: least-squares residuals of the ranks on group indicators, then Pearson
    design = (groups[:, None] == np.unique(groups)[None, :]).astype(float)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    res_x = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    res_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    ref = stats.pearsonr(res_x, res_y).statistic
    assert exp.partial_spearman(x, y, groups) == pytest.approx(ref, abs=1e-12)
    # one group: plain Spearman
    one = np.zeros_like(groups)
    assert exp.partial_spearman(x, y, one) == pytest.approx(
        stats.spearmanr(x, y).statistic, abs=1e-12
    )


def test_bootstrap_interval_and_verdicts() -> None:
    exp = load_script("thesis")
    rng = np.random.default_rng(1)
    groups = np.repeat([1, 2, 3], 12)
    x = rng.normal(size=groups.size)
    # a depth effect on y alone must not create a correlation given depth
    noise = rng.normal(size=groups.size)
    up = exp.bootstrap_ci(x, x + 0.3 * noise + 5 * groups, groups, 500, seed=0)
    assert up["lo"] <= up["r"] <= up["hi"] and exp.verdict(up) == "holds"
    down = exp.bootstrap_ci(x, -x + 0.3 * noise, groups, 500, seed=0)
    assert exp.verdict(down) == "fails"
    none = exp.bootstrap_ci(x, noise + 5 * groups, groups, 500, seed=0)
    assert none["lo"] < 0 < none["hi"] and exp.verdict(none) == "inconclusive"


def _dense_kappa(net: nn.Module, unit: nn.Module, x: torch.Tensor, rel: float) -> float:
    """kappa on the range of (1/m) J^T J, J = d unit(z) / d (unit's weights) at the unit's
    train-mode input z; torch.func only (no hessiankit)."""
    seen: list[torch.Tensor] = []
    h = unit.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    net.train()
    with torch.no_grad():
        net(x)
    h.remove()
    unit = copy.deepcopy(unit)
    for m in unit.modules():
        if isinstance(m, nn.BatchNorm1d):  # batch statistics, no running-statistics update
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    names = [n for n, _ in unit.named_parameters()]
    params = [p.detach() for _, p in unit.named_parameters()]

    def f(*flat: torch.Tensor) -> torch.Tensor:
        return functional_call(unit, dict(zip(names, flat)), (seen[0],)).reshape(-1)

    jac = jacfwd(f, argnums=tuple(range(len(names))))(*params)
    J = torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)
    ev = torch.linalg.eigvalsh(J.T @ J / x.shape[0]).numpy()
    on = ev[ev > rel * ev[-1]]
    return float(on[-1] / on[0])


@pytest.mark.slow  # runs the analysis end to end (about 30 s)
def test_smoke_run_matches_dense_reference_and_resumes(tmp_path: Path) -> None:
    exp = load_script("thesis")
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        exp.main(["--smoke", "--out", str(out)])
        for name in ("results.json", "table.md", "thesis.png", "kappa_vs_depth_w64.png"):
            assert (out / name).is_file()
        res = json.loads((out / "results.json").read_text())
        args = res["args"]
        row = next(
            r
            for r in res["rows"]
            if (r["act"], r["init"], r["residual"], r["bn"], r["depth"], r["seed"])
            == ("relu", "orthogonal", True, True, 2, 1)
        )
        # block 2 is the first residual unit (Residual(Linear -> BN -> ReLU)), BN in train mode
        net = exp.build("relu", 2, args["width"], "orthogonal", True, True, 49, 7, 1).double()
        from _common import load_images

        x, _ = load_images("digits", args["train_size"] + args["hessian_batch"], 7, 0, flat=True)
        xh = x[args["train_size"] :].double()
        rel = row["threshold"][1] / row["lambda_max"][1]
        assert row["converged"][1]  # (dense route at this size; the separable one is
        # checked against dense in tests/solvers/test_separable.py)
        assert row["kappa"][1] == pytest.approx(_dense_kappa(net, net[1], xh, rel), rel=1e-8)
        units = res["summary"]["units"]
        assert len(units) == 2 * 2 * 4 * 2 and all(u["seeds"] == 2 for u in units)
        for pred in ("log_kappa", "scale_spread"):
            c = res["summary"]["correlations"][pred]
            assert -1 <= c["lo"] <= c["hi"] <= 1 and c["verdict"] == exp.verdict(c)
        cached = sorted((out / "cache").glob("*.json"))
        before = {p: p.read_text() for p in cached}
        exp.main(["--smoke", "--out", str(out)])  # everything cached: nothing recomputed
        assert {p: p.read_text() for p in sorted((out / "cache").glob("*.json"))} == before
        again = json.loads((out / "results.json").read_text())
        assert again["summary"] == res["summary"]
    finally:
        torch.set_num_threads(threads)
