"""The report's per-block summary table, as text cells shared by the HTML and Markdown renderers.

Columns: block, module, dimension, lambda_max (with its error bound), smallest nonzero
eigenvalue, rank / nullity, condition number on the range, trace (estimate +- standard error,
and the exact value when the whole spectrum is known), and the converged flags of lambda_max,
of the smallest eigenvalue and of kappa.
"""

from __future__ import annotations

import math

from hessiankit.report.analysis import BlockAnalysis, Report

__all__ = ["COLUMNS", "fmt", "summary_rows"]

COLUMNS = (
    ("block", "block"),
    ("module", "module"),
    ("n", "dimension"),
    ("lambda_max", "λ_max ± bound"),
    ("smallest", "smallest nonzero λ"),
    ("rank", "rank / nullity"),
    ("kappa", "κ (on the range)"),
    ("trace", "trace (estimate ± s.e.)"),
    ("converged", "converged λ_max, λ_min, κ"),
)


def fmt(x: float | None, digits: int = 4) -> str:
    """A number for reading: ``n/a`` for unknown, ``digits`` significant digits for floats."""
    if x is None:
        return "n/a"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return str(x)
    if not math.isfinite(float(x)):
        return str(x)
    return f"{float(x):.{digits}g}"


def _flag(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def summary_rows(report: Report) -> list[dict[str, str]]:
    """One dict per block, keys as in :data:`COLUMNS` plus ``modules`` (the module types)."""
    return [_row(b) for b in report.blocks]


def _row(b: BlockAnalysis) -> dict[str, str]:
    s, c, t = b.spectrum, b.spectrum.condition, b.trace
    top_bound = float(s.top.error_bounds[0]) if len(s.top) else None
    smallest = c.lambda_min_nonzero
    rank = "n/a" if c.rank is None else f"{c.rank} / {c.nullity}"
    trace = f"{fmt(t.trace)} ± {fmt(t.std_error, 2)}"
    if b.exact_trace is not None:  # the whole spectrum is known: lead with the exact value
        trace = f"{fmt(b.exact_trace)} exact (est. {trace})"
    flags = (
        _flag(bool(s.top.converged[0]) if len(s.top) else None),
        _flag(bool(s.bottom.converged[0]) if len(s.bottom) else None),
        _flag(c.converged if c.kappa is not None else None),
    )
    return {
        "block": str(b.index),
        "module": b.name,
        "modules": b.modules,
        "n": str(s.dimension),
        "lambda_max": f"{fmt(c.lambda_max)} ± {fmt(top_bound, 2)}",
        "smallest": fmt(smallest) + (" (?)" if b.warnings and smallest is not None else ""),
        "rank": rank,
        "kappa": fmt(c.kappa),
        "trace": trace,
        "converged": ", ".join(flags),
    }
