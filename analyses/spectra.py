"""Measured input local Hessian spectra against the random-matrix predictions (claims 6, 8, 9).

* Gaussian linear blocks ``N(0, 1/n_out)``: the eigenvalues of the measured input local Hessian
  (``W^T W``) against the Marchenko-Pastur density, aspect ratios ``n_in/n_out`` 1/4, 1/2, 1;
  kappa against width and aspect ratio (median and 10-90% quantiles over seeds) against the
  limit ``((1 + sqrt l)/(1 - sqrt l))^2`` and, for square layers, Edelman's ``~13.4 n^2``.
* Skip connections ``z + phi(z)``: the measured spectrum of the residual block against the
  limit support of ``(I + sX)^T (I + sX)`` (digest 4.5) and against the plain block ``phi``
  alone; kappa against width. Branches: linear ``s X`` (the assumption holds exactly), a
  2-layer ReLU branch with He init (s > 1, expected failure), the same scaled to s = 0.5, a
  Linear-BN-ReLU-Linear-BN branch (train mode) and the same with the last BN gamma = 0 (claim 9:
  ``H_z = I``). For a real branch, s is read off the measured plain block:
  ``s^2 = tr(A^T A)/n``.

Every spectrum is that of the core's operator (``LocalHessian(..., wrt="input")``, dense
float64); the predictions come from :mod:`hessiankit.analytic`.

Run: ``python analyses/spectra.py [--seeds 5] [--smoke]`` -> ``figures/spectra/``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from _common import parser, plt, quantiles, setup, write_json

import hessiankit as hk
from hessiankit.analytic import orthogonal as orth
from hessiankit.analytic import residual as res
from hessiankit.models import Residual


def eig_input(net: nn.Module, x: torch.Tensor, bn: str = "eval") -> np.ndarray:
    """Eigenvalues of the input local Hessian of ``net`` taken as ONE block."""
    net = net if isinstance(net, nn.Sequential) else nn.Sequential(net)
    cap = hk.capture(hk.split_blocks(net, blocks=["0"]), x, bn=bn, dtype=torch.float64)
    H = hk.LocalHessian(cap, 1, wrt="input").to_dense()
    return torch.linalg.eigvalsh(H).numpy()


def kappa_range(ev: np.ndarray) -> float:
    from _common import RANK_RTOL

    from hessiankit.solvers.condition import condition_from_eigenvalues

    c = condition_from_eigenvalues(ev, rtol=RANK_RTOL)
    return float(c.kappa) if c.kappa is not None else math.nan


def gaussian_linear(n_in: int, n_out: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    lay = nn.Linear(n_in, n_out, bias=False)
    nn.init.normal_(lay.weight, 0.0, 1.0 / math.sqrt(n_out))
    return nn.Sequential(lay).double()


def branch(kind: str, n: int, seed: int) -> nn.Module:
    """A residual branch of width n (see the module docstring)."""
    torch.manual_seed(seed)
    if kind.startswith("linear"):
        s = float(kind.split("-")[1])
        lay = nn.Linear(n, n, bias=False)
        nn.init.normal_(lay.weight, 0.0, s / math.sqrt(n))
        return lay.double()
    if kind.startswith("relu"):
        br = nn.Sequential(nn.Linear(n, n, bias=False), nn.ReLU(), nn.Linear(n, n, bias=False))
        for mod in br:
            if isinstance(mod, nn.Linear):
                nn.init.kaiming_normal_(mod.weight)
        if kind == "relu-scaled":
            with torch.no_grad():
                br[2].weight.mul_(0.5 / math.sqrt(2.0))  # s ~ sqrt(2) -> ~0.5
        return br.double()
    if kind.startswith("bn"):
        br = nn.Sequential(
            nn.Linear(n, n, bias=False),
            nn.BatchNorm1d(n),
            nn.ReLU(),
            nn.Linear(n, n, bias=False),
            nn.BatchNorm1d(n),
        )
        if kind == "bn-zero-gamma":
            nn.init.zeros_(br[4].weight)
        return br.double()
    raise ValueError(kind)


def main() -> None:
    p = parser("spectra", __doc__)
    p.add_argument("--n", type=int, default=256, help="width of the density overlays")
    p.add_argument("--widths", default="32,64,128,256")
    args = p.parse_args()
    out = setup(args, "spectra")
    started = time.time()
    if args.smoke:
        args.n, args.widths = 32, "16,32"
    widths = [int(w) for w in args.widths.split(",")]
    ratios = [0.25, 0.5, 0.75, 1.0]
    payload: dict[str, object] = {"analysis": "spectra", "args": vars(args)}

    # --- Marchenko-Pastur overlays and kappa vs width / aspect ratio (claim 6)
    overlay = {}
    for lam in (0.25, 0.5, 1.0):
        evs = [
            eig_input(
                gaussian_linear(int(args.n * lam), args.n, s),
                torch.randn(1, int(args.n * lam), dtype=torch.float64),
            )
            for s in range(args.seeds)
        ]
        overlay[str(lam)] = np.concatenate(evs)
    mp_kappa = []
    for lam in ratios:
        for n_out in widths:
            n_in = max(1, int(round(lam * n_out)))
            ks = [
                kappa_range(
                    eig_input(
                        gaussian_linear(n_in, n_out, 100 + s),
                        torch.randn(1, n_in, dtype=torch.float64),
                    )
                )
                for s in range(
                    max(args.seeds, 5 if not args.smoke else 1) * (4 if lam == 1.0 else 1)
                )
            ]
            pred = (
                orth.marchenko_pastur_condition(lam)
                if lam < 1
                else orth.square_gaussian_condition_quantile(n_out, 0.5)
            )
            mp_kappa.append(
                {
                    "ratio": lam,
                    "n_out": n_out,
                    "n_in": n_in,
                    "kappa": quantiles(ks),
                    "prediction": pred,
                    "prediction_kind": "MP limit" if lam < 1 else "Edelman median 4n^2/X",
                }
            )
        print(f"[spectra] MP ratio {lam} ({time.time() - started:.0f}s)", flush=True)
    payload["marchenko_pastur"] = mp_kappa

    # --- skip connections (claims 8, 9)
    kinds = [
        "linear-0.25",
        "linear-0.5",
        "linear-1.0",
        "relu-he",
        "relu-scaled",
        "bn",
        "bn-zero-gamma",
    ]
    resid = []
    res_overlay = {}
    m_bn = 4 if args.smoke else 8
    for kind in kinds:
        for n in widths:
            rows = []
            for s in range(args.seeds):
                br = branch(kind, n, s)
                bn = kind.startswith("bn")
                x = torch.randn(m_bn if bn else 1, n, dtype=torch.float64)
                mode = "train" if bn else "eval"
                ev_res = eig_input(Residual(br), x, mode)
                ev_plain = eig_input(nn.Sequential(br), x, mode)
                s_eff = math.sqrt(max(float(ev_plain.mean()), 0.0))
                rows.append(
                    {
                        "s": s_eff,
                        "lambda_min": float(ev_res.min()),
                        "lambda_max": float(ev_res.max()),
                        "kappa_res": kappa_range(ev_res),
                        "kappa_plain": kappa_range(ev_plain),
                        "max_abs_minus_1": float(np.abs(ev_res - 1).max()),
                    }
                )
                if n == widths[-1]:
                    res_overlay.setdefault(kind, {"res": [], "plain": []})
                    res_overlay[kind]["res"].append(ev_res)
                    res_overlay[kind]["plain"].append(ev_plain)
            s_med = float(np.median([r["s"] for r in rows]))
            lo, hi = res.residual_support(s_med)
            resid.append(
                {
                    "branch": kind,
                    "n": n,
                    "s": quantiles([r["s"] for r in rows]),
                    "predicted_support": [lo, hi],
                    "predicted_kappa": res.residual_condition_limit(s_med),
                    "lambda_min": quantiles([r["lambda_min"] for r in rows]),
                    "lambda_max": quantiles([r["lambda_max"] for r in rows]),
                    "kappa_res": quantiles([r["kappa_res"] for r in rows]),
                    "kappa_plain": quantiles([r["kappa_plain"] for r in rows]),
                    "max_abs_minus_1": quantiles([r["max_abs_minus_1"] for r in rows]),
                }
            )
        print(f"[spectra] residual {kind} ({time.time() - started:.0f}s)", flush=True)
    payload["residual"] = resid
    write_json(out, payload, started)
    figures(overlay, mp_kappa, res_overlay, resid, widths, out)


def figures(overlay, mp_kappa, res_overlay, resid, widths, out) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(11, 3.3))
    for ax, (lam, ev) in zip(axes, overlay.items()):
        lamf = float(lam)
        ev = ev[ev > 1e-12]
        ax.hist(ev, bins=50, density=True, alpha=0.5, label="measured (all seeds)")
        a, b = orth.marchenko_pastur_support(lamf)
        xs = np.linspace(max(a, 1e-4), b, 400)
        ax.plot(xs, orth.marchenko_pastur_density(xs, lamf), "k-", label="Marchenko-Pastur")
        ax.set_title(f"W^T W, Gaussian, n_in/n_out = {lamf}", fontsize=9)
        ax.set_xlabel("eigenvalue of the input local Hessian")
        ax.set_ylabel("spectral density")
        if lamf == 1.0:
            ax.set_ylim(0, 2.0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "mp_overlay.png", dpi=110)
    pyplot.close(fig)

    fig, ax = pyplot.subplots(figsize=(6.6, 3.6))
    for i, lam in enumerate(sorted({r["ratio"] for r in mp_kappa})):
        rs = [r for r in mp_kappa if r["ratio"] == lam]
        n = [r["n_out"] for r in rs]
        med = [r["kappa"]["median"] for r in rs]
        ax.errorbar(
            n,
            med,
            yerr=[
                np.array(med) - [r["kappa"]["q10"] for r in rs],
                np.array([r["kappa"]["q90"] for r in rs]) - med,
            ],
            fmt="o",
            color=f"C{i}",
            capsize=2,
            label=f"n_in/n_out = {lam}",
        )
        ax.plot(n, [r["prediction"] for r in rs], "-", color=f"C{i}", alpha=0.7)
    ax.plot([], [], "-", color="0.4", label="prediction: MP limit\n(square: Edelman median)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n_out")
    ax.set_ylabel("kappa(W^T W)  (median, 10-90%)")
    ax.set_title("Gaussian layers: measured kappa vs the random-matrix laws", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(out / "kappa_vs_width.png", dpi=110)
    pyplot.close(fig)

    # a grid, not a strip; y = fraction of eigenvalues per bin, so a point mass (the zero-gamma
    # branch: plain spectrum all 0, skip all 1) shows as one bar of height 1 like any other bin
    kinds = list(res_overlay)
    ncol = 4
    nrow = -(-(len(kinds) + 1) // ncol)  # one cell more for the legend
    fig, axes = pyplot.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.8 * nrow), squeeze=False)
    flat = list(axes.ravel())
    for k, (ax, kind) in enumerate(zip(flat, kinds)):
        er = np.concatenate(res_overlay[kind]["res"])
        ep = np.concatenate(res_overlay[kind]["plain"])
        top = max(er.max(), ep.max(), 1.0)
        bins = np.linspace(0, top * 1.02 + 1e-9, 60)
        ax.hist(ep, bins=bins, weights=np.full(ep.size, 1 / ep.size), alpha=0.45, color="C3")
        ax.hist(er, bins=bins, weights=np.full(er.size, 1 / er.size), alpha=0.5, color="C0")
        row = [r for r in resid if r["branch"] == kind and r["n"] == widths[-1]][0]
        lo, hi = row["predicted_support"]
        ax.axvline(lo, color="k", ls="--", lw=1)
        ax.axvline(hi, color="k", ls="--", lw=1)
        ax.set_title(f"branch {kind} (s = {row['s']['median']:.2f})", fontsize=9)
        ax.set_yscale("log")
        ax.set_ylim(top=1.5)
        if k % ncol == 0:
            ax.set_ylabel("fraction of eigenvalues\nper bin")
        if k + ncol >= len(kinds):
            ax.set_xlabel("eigenvalue")
        if np.ptp(er) < 1e-9 and np.ptp(ep) < 1e-9:
            ax.text(
                0.5,
                0.5,
                f"point masses: plain all {ep.mean():.0f},\nskip all {er.mean():.0f}",
                transform=ax.transAxes,
                ha="center",
                fontsize=8,
            )
    for ax in flat[len(kinds) :]:
        ax.axis("off")
    handles = [
        pyplot.Rectangle((0, 0), 1, 1, color="C3", alpha=0.45, label="plain branch: A^T A"),
        pyplot.Rectangle((0, 0), 1, 1, color="C0", alpha=0.5, label="skip: (I+A)^T (I+A)"),
        pyplot.Line2D(
            [], [], color="k", ls="--", lw=1, label="predicted support of\n(I+sX)^T (I+sX)"
        ),
    ]
    flat[-1].legend(handles=handles, loc="center", fontsize=9, frameon=False)
    fig.suptitle(
        f"input local Hessian spectra of a residual block, width {widths[-1]}, all seeds pooled",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out / "residual_overlay.png", dpi=110)
    pyplot.close(fig)

    fig, ax = pyplot.subplots(figsize=(7.2, 3.8))
    for i, kind in enumerate(kinds):
        rs = [r for r in resid if r["branch"] == kind]
        ax.plot(
            [r["n"] for r in rs],
            [r["kappa_res"]["median"] for r in rs],
            "o-",
            color=f"C{i}",
            label=kind,
        )
        ax.plot([r["n"] for r in rs], [r["kappa_plain"]["median"] for r in rs], "x:", color=f"C{i}")
    ax.plot([], [], "o-", color="0.4", label="skip z + A(z)")
    ax.plot([], [], "x:", color="0.4", label="plain branch A(z)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width n")
    ax.set_ylabel("kappa of H_z (median over seeds)")
    ax.set_title("skip connection vs the plain branch, by branch", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(out / "residual_kappa_vs_width.png", dpi=110)
    pyplot.close(fig)


if __name__ == "__main__":
    main()
