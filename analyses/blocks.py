"""Single-block checks of the local-Hessian claims (claims 1, 2, 3, 4, 5, 7, 18).

* claim 1: one iteration of back-matching propagation (``hessiankit.optim.BackMatchingPropagation``,
  unit inner steps, Jacobi) against one SGD step of the same rate, on an MLP and a CNN, with and
  without BN (train mode), float64, Fashion-MNIST batch; and with inner step sizes ``a_W, a_z``
  against SGD with block rates ``eta a_{W,b} prod_{c>b} a_{z,c}``: max abs weight difference.
* claim 2: how much of a linear block's weight matching problem one gradient step solves, against
  the block's kappa (blocks of deep linear MLPs on Fashion-MNIST, raw and centred inputs). The
  matching loss is quadratic in W, so with the measured ``H_W`` and gradient ``G = eta dL/dW``:
  the optimum removes ``1/2 G^T H^+ G``; a unit step (BP) removes ``|G|^2 - 1/2 G^T H G``; the
  best single step removes ``|G|^4 / (2 G^T H G)``; reported as fractions of the optimum.
* claim 3: ``||H_exact - H_GN|| / ||H_GN||`` against eta (tanh and linear blocks).
* claim 4: kappa of the measured linear weight local Hessian against kappa of the input
  second-moment matrix, for raw / centred / whitened inputs, and for two different W.
* claim 5: ``max |eig(H_z) - 1|`` of orthogonal linear blocks (square and widening).
* claim 7: rank of the per-sample input local Hessian of an orthogonal square ReLU block against
  its number of active units.
* claim 18: per block, ``||g_{b-1}||^2 / ||g_b||^2`` against ``[lambda_min^+, lambda_max]`` of the
  measured input local Hessian (per sample).

Run: ``python analyses/blocks.py [--seeds 5] [--smoke]`` -> ``figures/blocks/``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from _common import load_images, mean_ci, parser, plt, setup, write_json

import hessiankit as hk
from hessiankit.analytic import linear as lin
from hessiankit.analytic import nonlinear as nl


def mlp(widths: list[int], act: type[nn.Module] | None, init: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        lay = nn.Linear(a, b)
        if init == "orthogonal":
            nn.init.orthogonal_(lay.weight)
        else:
            nn.init.normal_(lay.weight, 0.0, 1.0 / math.sqrt(a))
        nn.init.zeros_(lay.bias)
        layers.append(lay)
        if act is not None and i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers).double()


def dense(
    cap: hk.BlockCapture, b: int, wrt: str, kind: str = "gauss-newton", eta: float = 1.0
) -> torch.Tensor:
    return hk.LocalHessian(cap, b, wrt=wrt, kind=kind, eta=eta).to_dense()  # type: ignore[arg-type]


def kappa(H: torch.Tensor) -> float:
    ev = torch.linalg.eigvalsh(H)
    pos = ev[ev > 1e-10 * ev[-1]]
    return float(pos[-1] / pos[0])


def claim1(x: torch.Tensor, y: torch.Tensor, seeds: int) -> list[dict]:
    import copy

    from hessiankit.optim.backmatching import BackMatchingPropagation

    rows = []
    side = int(round(math.sqrt(x.shape[1])))
    for arch in ("mlp", "cnn"):
        for bn in (False, True):
            for scaled in (False, True):
                for seed in range(seeds):
                    torch.manual_seed(seed)
                    norm1 = (
                        (nn.BatchNorm1d(16) if arch == "mlp" else nn.BatchNorm2d(4))
                        if bn
                        else nn.Identity()
                    )
                    if arch == "mlp":
                        net = nn.Sequential(
                            nn.Linear(x.shape[1], 16),
                            norm1,
                            nn.Tanh(),
                            nn.Linear(16, 16),
                            nn.ReLU(),
                            nn.Linear(16, 10),
                        )
                        xx = x
                    else:
                        net = nn.Sequential(
                            nn.Conv2d(1, 4, 3, padding=1),
                            norm1,
                            nn.ReLU(),
                            nn.Conv2d(4, 4, 3, padding=1),
                            nn.ReLU(),
                            nn.Flatten(),
                            nn.Linear(4 * side * side, 10),
                        )
                        xx = x.reshape(-1, 1, side, side)
                    net = net.double().train()
                    ref = copy.deepcopy(net)
                    eta = 0.1
                    nb = 3
                    a_w = [0.5, 2.0, 1.5] if scaled else [1.0] * nb
                    a_z = [3.0, 0.25, 0.7] if scaled else [1.0] * nb
                    bm = BackMatchingPropagation(net, lr=eta, step_w=a_w, step_z=a_z)
                    bm.step(xx, y)
                    groups = []
                    for b in bm.split:
                        rate = eta * a_w[b.index - 1]
                        for c in range(b.index + 1, nb + 1):
                            rate *= a_z[c - 1]
                        names = set(b.param_names)
                        groups.append(
                            {
                                "params": [p for n, p in ref.named_parameters() if n in names],
                                "lr": rate,
                            }
                        )
                    opt = torch.optim.SGD(groups, lr=eta)
                    opt.zero_grad()
                    nn.functional.cross_entropy(ref(xx), y).backward()
                    opt.step()
                    diff = max(
                        float((p - q).detach().abs().max())
                        for p, q in zip(net.parameters(), ref.parameters())
                    )
                    scale = max(float(p.detach().abs().max()) for p in ref.parameters())
                    rows.append(
                        {
                            "arch": arch,
                            "bn": bn,
                            "step_sizes": scaled,
                            "seed": seed,
                            "max_abs_diff": diff,
                            "max_abs_weight": scale,
                        }
                    )
    return rows


def claim2(x: torch.Tensor, y: torch.Tensor, seeds: int, width: int, depth: int) -> list[dict]:
    rows = []
    for centred in (False, True):
        xx = x - x.mean(0) if centred else x
        for init in ("gaussian", "orthogonal"):
            for seed in range(seeds):
                net = mlp([xx.shape[1]] + [width] * depth + [10], None, init, seed)
                cap = hk.capture(net, xx, y, dtype=torch.float64)
                eta = 0.1
                for b in range(1, depth + 2):
                    blk = cap.split.block(b)
                    H = dense(cap, b, "weights")
                    # G = eta dL/dW (weight then bias, the operator's order) from the core's capture
                    zin = cap.block_input(blk)
                    g = cap.grad_outputs[b - 1]  # dL/dz_b (mean loss)
                    G = eta * torch.cat([(g.T @ zin).reshape(-1), g.sum(0)])
                    gHg = float(G @ H @ G)
                    opt = 0.5 * float(G @ torch.linalg.pinv(H, hermitian=True, rtol=1e-10) @ G)
                    g2 = float(G @ G)
                    rows.append(
                        {
                            "centred": centred,
                            "init": init,
                            "seed": seed,
                            "block": b,
                            "kappa": kappa(H),
                            "lambda_max": float(torch.linalg.eigvalsh(H)[-1]),
                            "frac_unit_step": (g2 - 0.5 * gHg) / opt,
                            "frac_best_step": g2 * g2 / (2 * gHg) / opt,
                        }
                    )
    return rows


def claim3(x: torch.Tensor, y: torch.Tensor, seeds: int) -> list[dict]:
    rows = []
    for seed in range(seeds):
        net = mlp([x.shape[1], 16, 16, 10], nn.Tanh, "gaussian", seed)
        cap = hk.capture(net, x, y, dtype=torch.float64)
        for b, wrt in ((1, "weights"), (2, "input"), (3, "weights")):
            G = dense(cap, b, wrt)
            for eta in (1.0, 0.1, 0.01, 0.001):
                E = dense(cap, b, wrt, "exact", eta)
                rows.append(
                    {
                        "seed": seed,
                        "block": b,
                        "wrt": wrt,
                        "linear_block": b == 3,
                        "eta": eta,
                        "rel_diff": float(
                            torch.linalg.matrix_norm(E - G) / torch.linalg.matrix_norm(G)
                        ),
                    }
                )
    return rows


def claim4(x: torch.Tensor, seeds: int) -> list[dict]:
    rows = []
    xc = x - x.mean(0)
    U, S, Vh = torch.linalg.svd(xc, full_matrices=False)
    keep = 1e-8 * S[0] < S
    xw = U[:, keep] * math.sqrt(x.shape[0])  # whitened: Z^T Z / m = I on the range
    for name, z in (("raw", x), ("centred", xc), ("whitened", xw)):
        for seed in range(seeds):
            net = mlp([z.shape[1], 8], None, "gaussian", seed)
            net[0].bias = None
            cap = hk.capture(net, z, dtype=torch.float64)
            Hm = dense(cap, 1, "weights")
            pred = lin.linear_weight_hessian(z, 8)
            rows.append(
                {
                    "input": name,
                    "seed": seed,
                    "kappa_measured": kappa(Hm),
                    "kappa_second_moment": kappa(lin.second_moment(z)),
                    "rel_error": float(
                        torch.linalg.matrix_norm(Hm - pred) / torch.linalg.matrix_norm(pred)
                    ),
                }
            )
    return rows


def claim5(seeds: int, widths: list[int]) -> list[dict]:
    rows = []
    for n in widths:
        for factor in (1, 2):
            for seed in range(seeds):
                torch.manual_seed(seed)
                lay = nn.Linear(n, factor * n, bias=False).double()
                nn.init.orthogonal_(lay.weight)
                cap = hk.capture(nn.Sequential(lay), torch.randn(2, n, dtype=torch.float64))
                ev = torch.linalg.eigvalsh(dense(cap, 1, "input"))
                rows.append(
                    {
                        "n_in": n,
                        "n_out": factor * n,
                        "seed": seed,
                        "max_abs_eig_minus_1": float((ev - 1).abs().max()),
                    }
                )
    return rows


def claim7(x: torch.Tensor, seeds: int, width: int) -> list[dict]:
    rows = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        pre = nn.Linear(x.shape[1], width).double()  # features feeding the ReLU block
        lay = nn.Linear(width, width).double()
        nn.init.orthogonal_(lay.weight)
        nn.init.zeros_(lay.bias)
        z = pre(x[:8]).detach()
        cap = hk.capture(nn.Sequential(lay, nn.ReLU()), z)
        H = dense(cap, 1, "input")
        active = nl.relu_active_units(lay.weight, lay.bias, z)
        for i in range(z.shape[0]):
            blk = H[i * width : (i + 1) * width, i * width : (i + 1) * width]
            ev = torch.linalg.eigvalsh(blk)
            rank = int((ev > 1e-10 * max(float(ev[-1]), 1e-300)).sum())
            rows.append(
                {
                    "seed": seed,
                    "sample": i,
                    "width": width,
                    "rank": rank,
                    "active": int(active[i]),
                    "kappa_on_range": float(ev[ev > 1e-10].max() / ev[ev > 1e-10].min())
                    if rank
                    else None,
                }
            )
    return rows


def claim18(x: torch.Tensor, y: torch.Tensor, seeds: int, width: int, depth: int) -> list[dict]:
    rows = []
    for act_name, act in (("tanh", nn.Tanh), ("relu", nn.ReLU), ("linear", None)):
        for seed in range(seeds):
            net = mlp([x.shape[1]] + [width] * depth + [10], act, "gaussian", seed)
            cap = hk.capture(net, x, y, dtype=torch.float64)
            split = cap.split
            for b in range(2, len(split) + 1):
                H = dense(cap, b, "input")
                n = cap.block_input(split.block(b)).shape[1]
                g_out = cap.per_sample_grad(split.block(b))
                g_in = cap.per_sample_grad(split.block(b - 1))
                n_out = cap.block_output(split.block(b)).shape[1]
                for i in range(x.shape[0]):
                    Hi = H[i * n : (i + 1) * n, i * n : (i + 1) * n]
                    ev = torch.linalg.eigvalsh(Hi)
                    pos = ev[ev > 1e-10 * max(float(ev[-1]), 1e-300)]
                    ratio = float(g_in[i].pow(2).sum() / g_out[i].pow(2).sum())
                    if (
                        pos.numel() == 0
                    ):  # every ReLU unit dead for this sample: H_z = 0, g_{b-1} = 0
                        pos = torch.zeros(1, dtype=ev.dtype)
                    full_row_rank = n_out <= n and int(pos.numel()) == n_out
                    rows.append(
                        {
                            "act": act_name,
                            "seed": seed,
                            "block": b,
                            "sample": i,
                            "ratio": ratio,
                            "lambda_max": float(ev[-1]),
                            "lambda_min_nonzero": float(pos[0]) or None,
                            "lower_bound_applies": bool(full_row_rank),
                            "within_upper": ratio <= float(ev[-1]) * (1 + 1e-9),
                            "within_lower": (ratio >= float(pos[0]) * (1 - 1e-9))
                            if full_row_rank
                            else None,
                        }
                    )
    return rows


def main() -> None:
    p = parser("blocks", __doc__)
    args = p.parse_args()
    out = setup(args, "blocks")
    started = time.time()
    m, width, depth = (32, 6, 2) if args.smoke else (256, 16, 6)
    x, y = load_images(args.data, m, 7, 0, flat=True)
    x = x.double()
    res: dict[str, object] = {"analysis": "blocks", "args": vars(args)}
    res["claim1"] = claim1(x[:32], y[:32], args.seeds)
    res["claim2"] = claim2(x, y, args.seeds, width, depth)
    print(f"[blocks] claim 2 ({time.time() - started:.0f}s)", flush=True)
    res["claim3"] = claim3(x[:32], y[:32], args.seeds)
    res["claim4"] = claim4(x, args.seeds)
    res["claim5"] = claim5(args.seeds, [16, 64] if args.smoke else [16, 64, 256])
    res["claim7"] = claim7(x, args.seeds, 32)
    print(f"[blocks] claims 3-7 ({time.time() - started:.0f}s)", flush=True)
    res["claim18"] = claim18(x[:16], y[:16], args.seeds, width, depth)
    res["summary"] = summarise(res)
    write_json(out, res, started)
    figures(res, out)


def summarise(res: dict) -> dict:
    from scipy import stats

    c1 = res["claim1"]
    c2 = res["claim2"]
    lk = np.log10([r["kappa"] for r in c2])
    rho = stats.spearmanr(lk, [1 - r["frac_best_step"] for r in c2])
    rho_unit = stats.spearmanr(lk, [1 - r["frac_unit_step"] for r in c2])
    c3 = res["claim3"]
    slopes = {}
    for wrt_key in ("tanh-weights", "tanh-input", "linear-weights"):
        sel = [
            r
            for r in c3
            if (
                r["linear_block"]
                if wrt_key == "linear-weights"
                else (not r["linear_block"] and r["wrt"] == wrt_key.split("-")[1])
            )
        ]
        d = np.array([r["rel_diff"] for r in sel])
        e = np.array([r["eta"] for r in sel])
        if wrt_key == "linear-weights":
            slopes[wrt_key] = {"max_rel_diff": float(d.max())}
        else:
            slopes[wrt_key] = {
                "slope_loglog": float(np.polyfit(np.log10(e), np.log10(d), 1)[0]),
                "rel_diff_at_eta_1": mean_ci([r["rel_diff"] for r in sel if r["eta"] == 1.0]),
                "rel_diff_at_eta_0.01": mean_ci([r["rel_diff"] for r in sel if r["eta"] == 0.01]),
            }
    c4 = {}
    for name in ("raw", "centred", "whitened"):
        sel = [r for r in res["claim4"] if r["input"] == name]
        c4[name] = {
            "log10_kappa_measured": mean_ci([math.log10(r["kappa_measured"]) for r in sel]),
            "log10_kappa_second_moment": float(
                np.mean([math.log10(r["kappa_second_moment"]) for r in sel])
            ),
            "max_rel_error": float(max(r["rel_error"] for r in sel)),
        }
    c5 = float(max(r["max_abs_eig_minus_1"] for r in res["claim5"]))
    c7 = res["claim7"]
    c18 = res["claim18"]
    low = [r for r in c18 if r["lower_bound_applies"]]
    return {
        "claim1": {
            "runs": len(c1),
            "max_abs_diff": float(max(r["max_abs_diff"] for r in c1)),
            "max_abs_weight": float(max(r["max_abs_weight"] for r in c1)),
        },
        "claim2": {
            "n_blocks": len(c2),
            "spearman_logkappa_vs_unsolved_best_step": float(rho.statistic),
            "p_value": float(rho.pvalue),
            "spearman_logkappa_vs_unsolved_unit_step": float(rho_unit.statistic),
            "frac_best_step_by_kappa_tercile": _terciles(c2, "frac_best_step"),
            "frac_unit_step_by_kappa_tercile": _terciles(c2, "frac_unit_step"),
            "bound_violations": int(
                sum(
                    1 - r["frac_best_step"] > ((r["kappa"] - 1) / (r["kappa"] + 1)) ** 2 + 1e-9
                    for r in c2
                )
            ),
        },
        "claim3": slopes,
        "claim4": c4,
        "claim5": {"max_abs_eig_minus_1": c5},
        "claim7": {
            "samples": len(c7),
            "rank_equals_active": int(sum(r["rank"] == r["active"] for r in c7)),
            "mean_rank_fraction": mean_ci([r["rank"] / r["width"] for r in c7]),
            "max_kappa_on_range": float(max(r["kappa_on_range"] or 1 for r in c7)),
        },
        "claim18": {
            "pairs": len(c18),
            "within_upper": int(sum(r["within_upper"] for r in c18)),
            "lower_bound_pairs": len(low),
            "within_lower": int(sum(bool(r["within_lower"]) for r in low)),
        },
    }


def _terciles(rows: list[dict], key: str) -> list[dict]:
    k = np.array([r["kappa"] for r in rows])
    edges = np.quantile(k, [0, 1 / 3, 2 / 3, 1])
    out = []
    for lo, hi in zip(edges, edges[1:]):
        sel = [r[key] for r in rows if lo <= r["kappa"] <= hi]
        out.append({"kappa_lo": float(lo), "kappa_hi": float(hi), key: mean_ci(sel)})
    return out


def figures(res: dict, out) -> None:
    pyplot = plt()
    c2 = res["claim2"]
    fig, axes = pyplot.subplots(1, 3, figsize=(12, 3.4))
    k = np.array([r["kappa"] for r in c2])
    axes[0].scatter(k, [r["frac_best_step"] for r in c2], s=8, label="best single step")
    kk = np.logspace(0, math.log10(k.max()) + 0.1, 100)
    axes[0].plot(
        kk, 1 - ((kk - 1) / (kk + 1)) ** 2, "k--", lw=1, label="worst case 1-((k-1)/(k+1))^2"
    )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("kappa(H_W) of the block")
    axes[0].set_ylabel("fraction of the optimal reduction")
    axes[0].set_title("claim 2: one step vs exact matching", fontsize=9)
    axes[0].legend(fontsize=7)
    c3 = res["claim3"]
    for lab, sel in (
        ("tanh block, weights", [r for r in c3 if not r["linear_block"] and r["wrt"] == "weights"]),
        ("tanh block, input", [r for r in c3 if r["wrt"] == "input"]),
        ("linear block, weights", [r for r in c3 if r["linear_block"]]),
    ):
        etas = sorted({r["eta"] for r in sel})
        med = [np.median([r["rel_diff"] for r in sel if r["eta"] == e]) + 1e-18 for e in etas]
        axes[1].plot(etas, med, "o-", label=lab)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("eta")
    axes[1].set_ylabel("||H_exact - H_GN|| / ||H_GN||")
    axes[1].set_title("claim 3: exact vs Gauss-Newton", fontsize=9)
    axes[1].legend(fontsize=7)
    c18 = res["claim18"]
    for i, act in enumerate(("tanh", "relu", "linear")):
        sel = [r for r in c18 if r["act"] == act]
        sel = [r for r in sel if r["ratio"] > 0]
        axes[2].scatter(
            [r["lambda_max"] for r in sel], [r["ratio"] for r in sel], s=6, color=f"C{i}", label=act
        )
    pos = [r for r in c18 if r["ratio"] > 0]
    lim = [min(r["ratio"] for r in pos) * 0.8, max(r["lambda_max"] for r in pos) * 1.2]
    axes[2].plot(lim, lim, "k--", lw=1, label="ratio = lambda_max")
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("lambda_max(H_z) per sample")
    axes[2].set_ylabel("||g_{b-1}||^2 / ||g_b||^2")
    axes[2].set_title("claim 18: gradient norm ratio below lambda_max", fontsize=9)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "blocks.png", dpi=110)
    pyplot.close(fig)


if __name__ == "__main__":
    main()
