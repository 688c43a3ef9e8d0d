"""Every analysis runs end to end in its smoke mode (tiny sizes, one seed, scikit-learn digits
instead of Fashion-MNIST), and ``analyses/claims.py`` turns their JSON into a claims table with one
row per claim of the digest."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANALYSES = ("depth", "spectra", "blocks", "bn_scale", "scales")

pytest.importorskip("sklearn")  # the smoke data (digits)


def _run(script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    monkeypatch.syspath_prepend(str(ROOT / "analyses"))
    runpy.run_path(str(ROOT / "analyses" / f"{script}.py"), run_name="__main__")


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("figures")
    mp = pytest.MonkeyPatch()
    try:
        for name in ANALYSES:
            _run(name, ["--smoke", "--out", str(out / name)], mp)
        _run("claims", ["--figures", str(out)], mp)
    finally:
        mp.undo()
    return out


@pytest.mark.slow  # runs every analysis script (the figures fixture)
@pytest.mark.parametrize("name", ANALYSES)
def test_analysis_writes_json_and_figures(figures: Path, name: str) -> None:
    d = json.loads((figures / name / "results.json").read_text())
    assert d["analysis"] == name and d["args"]["smoke"] is True
    assert list((figures / name).glob("*.png")), f"{name} wrote no figure"


@pytest.mark.slow
def test_claims_table_has_every_claim(figures: Path) -> None:
    text = (figures / "claims.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert sorted(int(r.split("|")[1]) for r in rows) == list(range(1, 20))
    verdicts = {r["verdict"] for r in json.loads((figures / "claims.json").read_text())}
    assert verdicts <= {"holds", "holds partly", "fails", "inconclusive", "not run"}
    # the exact closed forms must hold even at smoke sizes
    by = {r["claim"]: r["verdict"] for r in json.loads((figures / "claims.json").read_text())}
    for n in (1, 3, 4, 5, 7, 9, 10, 11, 18):
        assert by[n] == "holds", (n, by[n])


def test_mean_ci_is_the_t_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from scipy import stats

    monkeypatch.syspath_prepend(str(ROOT / "analyses"))
    from _common import mean_ci, quantiles

    v = [1.0, 2.5, 0.5, 4.0, float("nan")]  # NaN (a failed run) is dropped
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(v[:4]), scale=stats.sem(v[:4]))
    c = mean_ci(v)
    assert (
        c["n"] == 4
        and c["lo"] == pytest.approx(lo, rel=1e-12)
        and c["hi"] == pytest.approx(hi, rel=1e-12)
    )
    assert quantiles([3.0, 1.0, 2.0])["median"] == 2.0
