"""The example report of the README and the condition-number-against-depth figure.

Three 5-block MLPs (64-32-32-32-32-10; tanh, ReLU, ReLU with batch norm) are trained for 300
full-batch Adam steps on scikit-learn's 8x8 digits (1,797 real images, bundled with the
package: nothing is downloaded), seed 0. Then, on 256 training images:

* the tanh network's report (weight local Hessians, Gauss-Newton, every block) is written as
  Markdown with its PNGs and JSON to ``figures/report-example/`` and as one HTML file to
  ``OUT/report-example.html`` (not committed: 1.5 MB);
* the condition number of every block's weight local Hessian against depth, for the three
  networks, goes to ``figures/report-example/condition-vs-depth.{png,svg}``.

Run (about 3 minutes on one shared core):  OMP_NUM_THREADS=1 python analyses/report_example.py [OUT]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import hessiankit as hk
from hessiankit.pipeline import SolverOptions, block_operators, run_blocks
from hessiankit.plots import plot_condition_vs_depth, save_figure
from hessiankit.report import Report, analyse_blocks, run_settings, write_html, write_markdown

ROOT = Path(__file__).resolve().parents[1]
FIGS = ROOT / "figures" / "report-example"


def mlp(act: type[nn.Module], bn: bool) -> nn.Sequential:
    widths = [64, 32, 32, 32, 32]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b)] + ([nn.BatchNorm1d(b)] if bn else []) + [act()]
    return nn.Sequential(*layers, nn.Linear(32, 10)).double()


def train(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> nn.Sequential:
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def main(out: Path) -> None:
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-3)
    y = torch.tensor(digits.target)
    models = {}
    for label, act, bn in (
        ("tanh", nn.Tanh, False),
        ("ReLU", nn.ReLU, False),
        ("ReLU + BN", nn.ReLU, True),
    ):
        torch.manual_seed(0)
        models[label] = train(mlp(act, bn), x, y)
    xs, ys = x[:256], y[:256]

    net = models["tanh"]
    cap = hk.capture(net, xs, ys, bn="eval")
    blocks = analyse_blocks(
        cap,
        "all",
        wrt="weights",
        kind="gauss-newton",
        top=10,
        bottom=1,
        seed=0,
        options={"dense_threshold": 4096},  # every block dense: exact rank
        progress=lambda s: print(s, flush=True),
    )
    settings = run_settings(
        cap,
        data="scikit-learn digits, first 256 training images, standardised",
        model="MLP 64-32-32-32-32-10, tanh, 300 Adam steps (seed 0)",
        wrt="weights",
        kind="gauss-newton",
        seed=0,
    )
    report = Report("Local Hessians of a tanh MLP on digits", settings, blocks)
    write_markdown(report, FIGS / "report.md")
    write_html(report, out / "report-example.html")

    per_model = {}
    for label, model in models.items():
        c = hk.capture(model, xs, ys, bn="eval")
        rows = run_blocks(block_operators(c), "all", SolverOptions(top=1, bottom=1, seed=0))
        per_model[label] = [r.spectrum for r in rows]
    save_figure(
        plot_condition_vs_depth(per_model, title="weight local Hessian (Gauss-Newton), digits"),
        FIGS / "condition-vs-depth",
    )
    print("wrote", FIGS, "and", out / "report-example.html")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp"))
