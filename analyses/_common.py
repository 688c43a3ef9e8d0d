"""Shared pieces of the analyses: command line, data, statistics over seeds, JSON output.

Every analysis takes ``--seeds N`` (default 5), ``--smoke`` (tiny sizes, one seed, no Fashion-MNIST
needed: scikit-learn's digits stand in) and ``--out DIR`` (default ``figures/<analysis>``), writes
``results.json`` with its numbers and its figures as PNG next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from hessiankit.errors import HessiankitError  # noqa: E402
from hessiankit.io.atomic import write_atomic  # noqa: E402

FIGURES = ROOT / "figures"


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"analyses/{name}.py", description=(doc or "").split("\n\n")[0]
    )
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and one seed (CI)")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default figures/{name})")
    p.add_argument("--data", default=None, help="fashion-mnist (default) or digits / synthetic")
    return p


def setup(args: argparse.Namespace, name: str) -> Path:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.smoke:
        args.seeds = 1
    if args.seeds < 1:
        raise SystemExit("error: --seeds must be at least 1")
    if args.data is None:
        args.data = "digits" if args.smoke else "fashion-mnist"
    out = args.out if args.out is not None else FIGURES / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def load_images(
    name: str, num: int, side: int, seed: int, flat: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` training images resized to ``side x side`` (flattened for MLPs), normalised."""
    from hessiankit.data import load_dataset

    shape: tuple[int, ...] = (side * side,) if flat else (1, side, side)
    try:
        return load_dataset(name, num_samples=num, input_shape=shape, seed=seed)
    except HessiankitError as exc:
        raise SystemExit(f"error: {exc}") from None


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% t-interval (half-width 0 for one value); NaNs dropped and counted."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1}
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


def quantiles(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"median": math.nan, "q10": math.nan, "q90": math.nan, "n": 0}
    return {
        "median": float(np.median(v)),
        "q10": float(np.quantile(v, 0.1)),
        "q90": float(np.quantile(v, 0.9)),
        "n": int(v.size),
    }


def write_json(out: Path, payload: dict[str, object], started: float) -> Path:
    payload = dict(payload)
    payload["seconds"] = round(time.time() - started, 1)
    payload["torch"] = torch.__version__
    path = out / "results.json"
    write_atomic(path, json.dumps(_clean(payload), indent=1, default=_jsonable, allow_nan=False))
    return path


def _clean(x: object) -> object:
    """Non-finite floats to ``None`` (strict JSON), recursively."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _jsonable(x: object) -> object:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


#: Relative null threshold of the analyses' condition numbers. The core's default
#: (``10 sqrt(n) eps``, ~4e-14 at n = 256) counts round-off as range in batch-norm input
#: Hessians: their exact null space (2 directions per unit: shift and scale of u_i) comes out
#: at 1e-14..1e-11 relative from the train-mode products, which gave kappa ~ 1e13. So
#: eigenvalues below 1e-9 lambda_max count as zero here; kappas above ~1e9 are not resolved.
RANK_RTOL = 1e-9


def kappa_of(op: object, rtol: float = RANK_RTOL) -> tuple[float, int, int]:
    """Condition number on the range, rank, dimension (dense float64 eigh of the operator)."""
    from hessiankit.solvers import spectrum

    r = spectrum(op, top=1, bottom=1, method="dense", rank_rtol=rtol)  # type: ignore[arg-type]
    c = r.condition
    return (float(c.kappa) if c.kappa is not None else math.nan, int(c.rank or 0), int(r.dimension))


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot
