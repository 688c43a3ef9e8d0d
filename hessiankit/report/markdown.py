"""The report as Markdown, with its figures as PNG files beside it and a JSON twin.

``write_markdown(report, "out/report.md")`` writes ``out/report_files/<key>.png`` (one per
figure), ``out/report.json`` and, last, ``out/report.md`` (so a finished ``.md`` means a
finished report).
"""

from __future__ import annotations

from pathlib import Path

from hessiankit.io.atomic import write_atomic
from hessiankit.report.analysis import Report
from hessiankit.report.figures import figure_bytes, report_figures
from hessiankit.report.html import _atomic_write, to_json
from hessiankit.report.tables import COLUMNS, fmt, summary_rows

__all__ = ["render_markdown", "write_markdown"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report, figure_dir: str) -> str:
    """Markdown text whose images point to ``figure_dir/<key>.png``."""
    lines = [f"# {report.title}", ""]
    lines += ["## Summary", ""]
    lines.append("| " + " | ".join(label for _, label in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in summary_rows(report):
        row = {**row, "module": f"`{row['module']}` {row['modules']}".strip()}
        lines.append("| " + " | ".join(_cell(row[k]) for k, _ in COLUMNS) + " |")
    lines.append("")
    for b in report.blocks:
        lines += [f"**Block {b.index}**: {w}." for w in b.warnings] + ([""] if b.warnings else [])
    figs = report_figures(report)
    for f in figs:
        if f.block is None:
            lines += [f"![{f.caption}]({figure_dir}/{f.key}.png)", "", f"*{f.caption}*", ""]
    if report.diagnostics is not None:
        lines += ["## Diagnostics beyond the paper", ""]
        for title, header, rows in report.diagnostics.tables():
            lines += [f"### {title}", "", "| " + " | ".join(header) + " |"]
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
            lines.append("")
    for b in report.blocks:
        lines += [f"## Block {b.index}: `{b.name}`", ""]
        s = b.spectrum
        lines.append(f"- largest eigenvalues: {', '.join(fmt(v) for v in s.top.eigenvalues)}")
        lines.append(f"- residuals: {', '.join(fmt(v, 2) for v in s.top.residuals)}")
        lines.append(f"- method: {s.method}, {s.num_products} products, {s.seconds:.2f} s")
        if s.condition.note:
            lines.append(f"- note: {s.condition.note}")
        lines += [f"- **warning**: {w}" for w in b.warnings]
        lines.append("")
        for f in figs:
            if f.block == b.index:
                lines += [f"![{f.caption}]({figure_dir}/{f.key}.png)", "", f"*{f.caption}*", ""]
    lines += ["## Run settings", "", "| setting | value |", "|---|---|"]
    for k, v in report.settings.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk} {vv}" for kk, vv in v.items())
        lines.append(f"| {_cell(str(k))} | {_cell(str(v))} |")
    lines.append("")
    return "\n".join(lines)


def write_markdown(report: Report, path: str | Path) -> list[Path]:
    """Write the Markdown report, its PNGs and its JSON; returns every path written."""
    target = Path(path)
    fig_dir = target.with_name(target.stem + "_files")
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in report_figures(report):
        p = fig_dir / f"{f.key}.png"
        write_atomic(p, figure_bytes(f.figure, "png", dpi=150))
        written.append(p)
    json_path = target.with_suffix(".json")
    _atomic_write(json_path, to_json(report) + "\n")
    _atomic_write(target, render_markdown(report, fig_dir.name))
    return [*written, json_path, target]
