"""Reports: per-block spectra, traces and densities rendered as self-contained HTML or Markdown.

::

    from hessiankit.report import Report, analyse_blocks, run_settings, write_html
    blocks = analyse_blocks(cap, "all", wrt="weights", kind="gauss-newton", seed=0)
    report = Report("my model", run_settings(cap, seed=0, data="..."), blocks)
    write_html(report, "report.html", json_path="report.json")
"""

from hessiankit.report.analysis import BlockAnalysis, Report, analyse_blocks, run_settings
from hessiankit.report.figures import ReportFigure, figure_bytes, report_figures
from hessiankit.report.html import render_html, to_json, write_html
from hessiankit.report.markdown import render_markdown, write_markdown
from hessiankit.report.tables import summary_rows

__all__ = [
    "BlockAnalysis",
    "Report",
    "ReportFigure",
    "analyse_blocks",
    "figure_bytes",
    "render_html",
    "render_markdown",
    "report_figures",
    "run_settings",
    "summary_rows",
    "to_json",
    "write_html",
    "write_markdown",
]
