"""One self-contained HTML file: styles inline, figures as base64 data URIs, the JSON inline.

The page loads nothing from anywhere (no scripts, fonts, style sheets or images outside the
file), so it opens offline and can be mailed as it is. Every string that comes from the model
or the user is escaped. The JSON twin of every number sits in a
``<script type="application/json" id="hessiankit-data">`` element (not executed) and behind a
download link.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from hessiankit.io.atomic import write_atomic
from hessiankit.report.analysis import BlockAnalysis, Report
from hessiankit.report.figures import ReportFigure, figure_bytes, report_figures
from hessiankit.report.tables import COLUMNS, fmt, summary_rows

__all__ = ["render_html", "to_json", "write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
  color:#1d232a;background:#fff;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:34px 0 8px;
  border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{font-size:1.05em;margin:20px 0 6px}
.sub{color:#57606a;margin:0 0 18px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600}
td.module{min-width:11em}td.flags{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.wrap{white-space:normal;min-width:9em}.scroll{overflow-x:auto}
tr:nth-child(even) td{background:#fafbfc}
.bad{color:#b42318;font-weight:600}
figure{margin:14px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#57606a;font-size:.9em;margin-top:4px}
.note{background:#f6f8fa;border-left:4px solid #8c959f;padding:8px 12px;font-size:.92em}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.88em}
pre{background:#f6f8fa;padding:10px;overflow:auto;max-height:340px}
nav a{margin-right:12px}
"""


def to_json(report: Report) -> str:
    """The report's numbers as JSON (NaN and infinities become ``null``)."""
    return json.dumps(_clean(report.to_dict()), separators=(",", ":"), allow_nan=False)


def _clean(x: object) -> object:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def render_html(report: Report, figures: list[ReportFigure] | None = None) -> str:
    """The report as one HTML document (a string)."""
    figs = report_figures(report) if figures is None else figures
    e = html.escape
    data = to_json(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # forbids every network request the page could make, whatever is inside it
        (
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "img-src data:; style-src 'unsafe-inline'\">"
        ),
        f"<title>{e(report.title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{e(report.title)}</h1>",
        f'<p class="sub">{e(_subtitle(report))}</p>',
        '<nav><a href="#summary">summary</a>'
        + ('<a href="#diagnostics">diagnostics</a>' if report.diagnostics is not None else "")
        + "".join(f'<a href="#block-{b.index}">block {b.index}</a>' for b in report.blocks)
        + '<a href="#settings">settings</a><a href="#data">JSON</a></nav>',
        '<h2 id="summary">Summary</h2>',
        _summary_table(report),
        *[
            f'<p class="bad">Block {b.index}: {html.escape(w)}.</p>'
            for b in report.blocks
            for w in b.warnings
        ],
        _notes(report),
    ]
    by_block: dict[int | None, list[ReportFigure]] = {}
    for f in figs:
        by_block.setdefault(f.block, []).append(f)
    parts += [_figure(f) for f in by_block.get(None, [])]
    if report.diagnostics is not None:
        parts.append('<h2 id="diagnostics">Diagnostics beyond the paper</h2>')
        parts += [_plain_table(*t) for t in report.diagnostics.tables()]
    for b in report.blocks:
        parts.append(f'<h2 id="block-{b.index}">Block {b.index}: <code>{e(b.name)}</code></h2>')
        parts.append(_block_details(b))
        parts += [_figure(f) for f in by_block.get(b.index, [])]
    parts += [
        '<h2 id="settings">Run settings</h2>',
        _settings_table(report.settings),
        '<h2 id="data">Every number (JSON)</h2>',
        (
            "<p>The same numbers at full precision: "
            f'<a download="hessiankit-report.json" href="data:application/json;base64,'
            f'{base64.b64encode(data.encode()).decode()}">download the JSON</a>'
            " (also inline below, in the element <code>#hessiankit-data</code>).</p>"
        ),
        '<script type="application/json" id="hessiankit-data">'
        + data.replace("<", "\\u003c")
        + "</script>",  # '<' only occurs inside JSON strings
        "</main></body></html>",
    ]
    return "\n".join(parts)


def write_html(report: Report, path: str | Path, *, json_path: str | Path | None = None) -> Path:
    """Write the report to ``path`` (and its JSON to ``json_path`` when given), atomically."""
    target = Path(path)
    text = render_html(report)
    _atomic_write(target, text)
    if json_path is not None:
        _atomic_write(Path(json_path), to_json(report) + "\n")
    return target


def _atomic_write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text)


def _subtitle(report: Report) -> str:
    s = report.settings
    v = s.get("versions", {})
    hk = v.get("hessiankit", "?") if isinstance(v, dict) else "?"
    bits = [f"hessiankit {hk}", f"{len(report.blocks)} blocks"]
    for key in ("kind", "wrt"):
        if key in s:
            bits.append(f"{key} {s[key]}")
    if "created_utc" in s:
        bits.append(f"{s['created_utc']} UTC")
    return " · ".join(bits)


def _summary_table(report: Report) -> str:
    e = html.escape
    head = "".join(f"<th>{e(label)}</th>" for _, label in COLUMNS)
    rows = []
    for b, row in zip(report.blocks, summary_rows(report)):
        cells = []
        for key, _ in COLUMNS:
            text = row[key]
            cls = ' class="num"' if key not in ("module", "converged", "trace") else ""
            if key == "trace":
                cls = ' class="num wrap"'
            if key == "converged":
                cls = ' class="flags bad"' if "NO" in text else ' class="flags"'
            if key == "module":
                text = f"<code>{e(text)}</code> {e(row['modules'])}"
                cls = ' class="module"'
            else:
                text = e(text)
            cells.append(f"<td{cls}>{text}</td>")
        rows.append(f'<tr id="row-block-{b.index}">' + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table id="summary-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _notes(report: Report) -> str:
    kinds = {str(report.settings.get("kind", ""))}
    psd = "gauss-newton" in kinds
    text = (
        "λ_max ± bound: the largest eigenvalue and a bound on its error. κ = max|λ| / smallest "
        "|λ| above the null threshold (rtol · max|λ|), so the zeros of a singular local Hessian "
        "are counted in the nullity rather than divided by. Rank is known only when the whole "
        "spectrum was computed (dense); iterative solvers report n/a. Trace: "
        "Hutchinson/Hutch++ estimate ± one standard error."
    )
    if psd:
        text += " Gauss-Newton local Hessians are positive semi-definite."
    return f'<p class="note">{html.escape(text)}</p>'


def _block_details(b: BlockAnalysis) -> str:
    s, c = b.spectrum, b.spectrum.condition
    items = [
        (
            "operator",
            ", ".join(
                f"{k} {v}"
                for k, v in s.operator.items()
                if k in ("wrt", "kind", "eta") and v is not None
            ),
        ),
        (
            "method",
            f"{s.method}, {s.num_products} products, {s.seconds:.2f} s, precision {fmt(s.precision, 2)}",
        ),
        ("largest eigenvalues", ", ".join(fmt(v) for v in s.top.eigenvalues)),
        ("residuals", ", ".join(fmt(v, 2) for v in s.top.residuals)),
        (
            "smallest" + (" nonzero" if s.bottom_on_range else ""),
            ", ".join(fmt(v) for v in s.bottom.eigenvalues) or "n/a",
        ),
        ("condition number", f"{fmt(c.kappa)}" + (f" ({c.note})" if c.note else "")),
        (
            "trace",
            f"{fmt(b.trace.trace)} ± {fmt(b.trace.std_error, 2)} ({b.trace.method}, "
            f"{b.trace.num_products} products)"
            + (f"; exact {fmt(b.exact_trace)}" if b.exact_trace is not None else ""),
        ),
    ]
    if b.density is not None:
        d = b.density
        m1, s1 = d.moment(1)
        density_text = (
            f"{d.num_probes} probes × {d.num_steps} steps, mean eigenvalue {fmt(m1)} ± {fmt(s1, 2)}, "
            f"kernel width σ = {fmt(d.linear.sigma, 3)} (λ) and {fmt(d.log.sigma, 3)} decades "
            f"(log10|λ|), zero mass {d.zero_mass:.3f} (nodes with |θ| ≤ {fmt(d.zero_threshold, 3)}), "
            f"negative mass {d.negative_mass:.3f}"
        )
        items.append(("spectral density", density_text))
    items += [("warning", w) for w in b.warnings]
    e = html.escape
    bad = ' class="bad"'
    rows = "".join(
        f"<tr><th>{e(k)}</th><td{bad if k == 'warning' else ''}>{e(v)}</td></tr>" for k, v in items
    )
    return f'<table class="details" id="details-block-{b.index}">{rows}</table>'


def _plain_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<h3>{e(title)}</h3><div class="scroll"><table class="diagnostics">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _settings_table(settings: dict[str, object]) -> str:
    e = html.escape
    rows = []
    for k, v in settings.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk} {vv}" for kk, vv in v.items())
        rows.append(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>")
    return f'<table id="settings-table">{"".join(rows)}</table>'


def _figure(f: ReportFigure) -> str:
    png = base64.b64encode(figure_bytes(f.figure, "png")).decode()
    e = html.escape
    return (
        f'<figure id="fig-{e(f.key)}"><img alt="{e(f.caption)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{e(f.caption)}</figcaption></figure>"
    )
