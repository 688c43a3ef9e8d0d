"""``figures/claims.md`` is a pure function of the committed results files, and its verdicts follow
the stated rules.

The committed table is regenerated from the committed ``figures/*/results.json`` and compared
byte for byte (a stale table, such as one still quoting an older optimizer run, fails). The
numbers of claim 17 are checked against a Student-t interval computed here from the raw paired
differences, and the verdict rules against synthetic results whose intervals sit above, across
and below the predicted value.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "figures"


@pytest.fixture(scope="module")
def claims():
    sys.path.insert(0, str(ROOT / "analyses"))  # claims.py imports _common beside it
    try:
        import claims as mod

        yield mod
    finally:
        sys.path.remove(str(ROOT / "analyses"))


@pytest.fixture(scope="module")
def rows(claims) -> list[dict]:
    return claims.build(FIGURES)


def test_committed_table_is_what_the_committed_results_give(claims, rows) -> None:
    expected = claims.markdown(rows, FIGURES)
    committed = (FIGURES / "claims.md").read_text()
    assert committed == expected, (
        "figures/claims.md is stale: regenerate it with `python analyses/claims.py`"
    )
    on_disk = json.loads((FIGURES / "claims.json").read_text())
    assert on_disk == json.loads(json.dumps(rows, default=str))


def test_every_claim_once_with_a_verdict_from_the_vocabulary(claims, rows) -> None:
    assert sorted(r["claim"] for r in rows) == list(range(1, 20))
    assert {r["verdict"] for r in rows} <= set(claims.VERDICTS)
    for r in rows:
        assert r["kind"] == ("toolkit check" if r["claim"] in claims.TOOLKIT else "empirical")
    # the identities are met to round-off in the committed runs
    assert all(r["verdict"] == "holds" for r in rows if r["kind"] == "toolkit check")


def test_counts_are_the_rows_counted_apart(claims, rows) -> None:
    line = claims.counts_line(rows)
    for kind, label in (("empirical", "empirical claims"), ("toolkit check", "exact identities")):
        rs = [r for r in rows if r["kind"] == kind]
        part = line.split(label, 1)[1].split(";")[0]
        assert part.startswith(f" ({len(rs)}):")
        for v in ("holds", "fails"):
            n = sum(r["verdict"] == v for r in rs)
            assert f"{v} {n}" in part
    text = (FIGURES / "claims.md").read_text()
    # one table per kind: each claim's row sits under its kind's heading
    emp, tool = text.split("## Toolkit checks")
    for r in rows:
        mark = f"\n| {r['claim']} | "
        assert (mark in tool) == (r["kind"] == "toolkit check") and (mark in emp) != (mark in tool)


def test_readme_quotes_the_table_counts(claims, rows) -> None:
    readme = (ROOT / "README.md").read_text()
    assert claims.counts_line(rows) in readme, "README's analyses section has stale verdict counts"


def test_claim17_is_the_t_interval_of_the_paired_seeds(rows) -> None:
    d = json.loads((FIGURES / "optimizer" / "results.json").read_text())
    v = 100 * np.asarray(d["paired_difference"]["test_acc"]["values"])
    lo, hi = stats.t.interval(0.95, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    r = next(r for r in rows if r["claim"] == 17)
    assert f"{v.mean():+.2f} +- {(hi - lo) / 2:.2f} points" in r["measured"]
    assert f"[{lo:+.2f}, {hi:+.2f}]" in r["measured"]
    assert f"{v.size} paired seeds" in r["measured"]
    acc = "holds" if lo > 0 else "fails" if hi < 0 else "inconclusive"
    m, h = d["paired_difference"]["train_loss"]["mean_ci"]
    speed = "holds" if m + h < 0 else "fails" if m - h > 0 else "inconclusive"  # lower = faster
    assert f"test accuracy: {acc}; training speed (final training loss): {speed}" in r["why"]


def _optimizer_results(tmp: Path, values: list[float], loss: tuple[float, float]) -> Path:
    src = json.loads((FIGURES / "optimizer" / "results.json").read_text())
    v = np.asarray(values)
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    src["paired_difference"]["test_acc"] = {"values": values, "mean_ci": [float(v.mean()), half]}
    src["paired_difference"]["train_loss"] = {"values": [], "mean_ci": list(loss)}
    (tmp / "optimizer").mkdir(parents=True, exist_ok=True)
    (tmp / "optimizer" / "results.json").write_text(json.dumps(src))
    return tmp


UP = [0.004, 0.006, 0.005, 0.007, 0.003]  # accuracy CI above 0
ACROSS = [0.004, 0.002, 0.0005, 0.0085, -0.002]  # CI across 0
DOWN = [-0.004, -0.006, -0.005, -0.007, -0.003]  # CI below 0


@pytest.mark.parametrize(
    ("values", "loss", "verdict"),
    [
        (UP, (-0.02, 0.01), "holds"),  # better accuracy and lower training loss
        (UP, (-0.02, 0.03), "holds partly"),  # speed inconclusive
        (ACROSS, (0.01, 0.02), "inconclusive"),
        (ACROSS, (0.03, 0.01), "fails"),  # higher training loss: slower
        (DOWN, (0.01, 0.02), "fails"),
        (DOWN, (-0.02, 0.01), "holds partly"),  # faster, but worse accuracy
    ],
)
def test_claim17_rule(
    claims, tmp_path: Path, values: list[float], loss: tuple[float, float], verdict: str
) -> None:
    assert claims.claim17(_optimizer_results(tmp_path, values, loss))["verdict"] == verdict


def _with_slope(lo: float, hi: float, norm_lo: float = 1.89) -> dict:
    bn = json.loads((FIGURES / "bn_scale" / "results.json").read_text())
    s = bn["summary"]["claim14"]["0.0"]
    s["slope_log_mw_vs_log_norm"].update(mean=(lo + hi) / 2, lo=lo, hi=hi)
    s["final_over_initial_norm"]["lo"] = norm_lo
    return bn


def test_claim14_exponent_decides_between_holds_and_holds_partly(claims) -> None:
    committed = claims.claim14(json.loads((FIGURES / "bn_scale" / "results.json").read_text()))
    sl = json.loads((FIGURES / "bn_scale" / "results.json").read_text())["summary"]["claim14"]
    sl = sl["0.0"]["slope_log_mw_vs_log_norm"]
    # the committed slope's CI excludes -2, so the exponent part cannot hold
    assert not sl["lo"] <= -2 <= sl["hi"] and committed["verdict"] == "holds partly"
    assert "exponent fails" in committed["why"]
    assert claims.claim14(_with_slope(-2.3, -1.8))["verdict"] == "holds"
    assert claims.claim14(_with_slope(-4.1, -3.5))["verdict"] == "holds partly"
    assert claims.claim14(_with_slope(-2.3, -1.8, norm_lo=0.9))["verdict"] == "inconclusive"


def test_claim13_rule_per_hessian_and_state(claims) -> None:
    def cell(bn: bool, depth: int, kw: float, kz: float) -> dict:
        base = dict(arch="relu", init="gaussian", residual=False, bn=bn, depth=depth, state="init")
        return base | {"log10_kappa_w": {"mean": kw}, "log10_kappa_z": {"mean": kz}}

    # BN lowers weight kappa by ~1 everywhere; input kappa differences straddle 0
    summary = []
    for depth, dz in zip((2, 4, 8, 16), (0.5, -0.5, 0.3, -0.4), strict=True):
        summary += [cell(False, depth, 5.0, 3.0), cell(True, depth, 4.0 + 0.01 * depth, 3.0 + dz)]
    r = claims.claim13({"summary": summary})
    assert r["verdict"] == "holds partly"
    assert "holds for weights (init)" in r["why"] and "inconclusive for input (init)" in r["why"]
    for s in summary:
        if s["bn"]:
            s["log10_kappa_z"]["mean"] = 2.0 - 0.01 * s["depth"]
    assert claims.claim13({"summary": summary})["verdict"] == "holds"


def test_missing_results_are_not_run(claims, tmp_path: Path) -> None:
    rows = claims.build(tmp_path)
    assert {r["verdict"] for r in rows} == {"not run"}


def test_regenerating_into_a_copy_reproduces_the_committed_files(claims, tmp_path: Path) -> None:
    for name in (*claims.ANALYSES, *claims.READ_ONLY):
        dst = tmp_path / name
        dst.mkdir()
        shutil.copy(FIGURES / name / "results.json", dst / "results.json")
    claims.write(tmp_path)
    assert (tmp_path / "claims.md").read_text() == (FIGURES / "claims.md").read_text()
    assert (tmp_path / "claims.json").read_text() == (FIGURES / "claims.json").read_text()


def test_claim19_combines_the_shape_and_scale_verdicts(claims) -> None:
    def th(
        kappa: tuple[float, float],
        spread: tuple[float, float],
        spread_with_act: tuple[float, float] | None = None,
    ) -> dict:
        def corr(lo: float, hi: float, robust: tuple[float, float] | None = None) -> dict:
            c = {"r": (lo + hi) / 2, "lo": lo, "hi": hi, "n": 64, "raw_spearman": 0.1}
            c["verdict"] = "holds" if lo > 0 else "fails" if hi < 0 else "inconclusive"
            if robust is not None:
                c["given_depth_and_activation"] = corr(*robust)
            return c

        args = {"width": 64, "side": 14, "depths": "2,4", "seeds": 3, "hessian_batch": 512}
        args |= {"target": 0.45, "max_steps": 3000}
        summary = {
            "correlations": {
                "log_kappa": corr(*kappa, kappa),
                "scale_spread": corr(*spread, spread_with_act or spread),
            }
        }
        summary |= {"censored_runs": 0, "runs": 192}
        summary["per_block"] = {"lambda_max": {"mean": 0.2, "lo": 0.1, "hi": 0.3, "n": 192}}
        return {"summary": summary, "args": args}

    assert claims.claim19(th((0.1, 0.5), (0.2, 0.6)))["verdict"] == "holds"
    # holds given depth but not once the activation is fixed too: only partly
    fragile = claims.claim19(th((0.1, 0.5), (0.01, 0.6), (-0.1, 0.5)))
    assert fragile["verdict"] == "holds partly" and "activation also fixed" in fragile["why"]
    assert claims.claim19(th((0.1, 0.5), (-0.2, 0.3)))["verdict"] == "holds partly"
    assert claims.claim19(th((-0.5, -0.1), (-0.2, 0.3)))["verdict"] == "fails"
    assert claims.claim19(th((-0.1, 0.5), (-0.2, 0.3)))["verdict"] == "inconclusive"
    assert claims.claim19(None)["verdict"] == "not run"
