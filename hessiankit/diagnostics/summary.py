"""All the diagnostics of one batch at once, as one frozen record with tables for reports.

:func:`run_diagnostics` runs, on one capture with labels,
:func:`~hessiankit.diagnostics.ggn_vs_hessian.compare_ggn_hessian` (whole model),
:func:`~hessiankit.diagnostics.gradient_overlap.gradient_overlap` (on the loss Hessian's top-k
eigenvectors just computed, no second solve), :func:`~hessiankit.diagnostics.outliers.outlier_analysis`
(integer class labels only), :func:`~hessiankit.diagnostics.block_vs_global.compare_blocks`
and, given a learning rate, :func:`~hessiankit.diagnostics.stability.block_stability`.
:meth:`Diagnostics.tables` gives plain-text tables that
:class:`~hessiankit.report.analysis.Report` renders (HTML and Markdown).

Example:
    >>> from hessiankit.diagnostics import run_diagnostics
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    >>> x, y = torch.randn(24, 4, dtype=torch.float64), torch.arange(24) % 3
    >>> d = run_diagnostics(hk.capture(net, x, y), top=3, lr=0.1, density=False, seed=0)
    >>> [title for title, _, _ in d.tables()]  # doctest: +NORMALIZE_WHITESPACE
    ['Loss Hessian vs generalized Gauss-Newton (whole model)',
     'Outliers vs classes; gradient in the top eigenspace',
     'Local Hessian H_W vs the global GGN diagonal block G_bb',
     'Edge of stability: rate x lambda_max against 2']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hessiankit.blocks.capture import BlockCapture
from hessiankit.diagnostics.block_vs_global import BlockVsGlobal, compare_blocks
from hessiankit.diagnostics.ggn_vs_hessian import GGNvsHessian, compare_ggn_hessian
from hessiankit.diagnostics.gradient_overlap import GradientOverlap, gradient_overlap
from hessiankit.diagnostics.outliers import OutlierAnalysis, outlier_analysis
from hessiankit.diagnostics.stability import BlockStability, Rate, block_stability
from hessiankit.errors import DataError
from hessiankit.operators.loss import LossHessian

__all__ = ["Diagnostics", "Table", "run_diagnostics"]

#: (title, column labels, rows of cells), all text
Table = tuple[str, list[str], list[list[str]]]


def _g(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _flag(ok: bool) -> str:
    return "yes" if ok else "NO"


@dataclass(frozen=True, eq=False)
class Diagnostics:
    """The diagnostics of one batch (``None`` / empty where not run).

    Attributes:
        ggn_vs_hessian: whole-model loss Hessian vs GGN.
        gradient: the gradient's share in the loss Hessian's top-k eigenspace.
        outliers: outliers of the GGN vs the classes (``None`` without integer labels).
        blocks: per block, local ``H_W`` vs the GGN's diagonal block.
        stability: per block, rate x lambda_max (empty without a learning rate).
    """

    ggn_vs_hessian: GGNvsHessian
    gradient: GradientOverlap
    outliers: OutlierAnalysis | None
    blocks: tuple[BlockVsGlobal, ...]
    stability: tuple[BlockStability, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "ggn_vs_hessian": self.ggn_vs_hessian.to_dict(),
            "gradient_overlap": self.gradient.to_dict(),
            "outliers": None if self.outliers is None else self.outliers.to_dict(),
            "block_vs_global": [b.to_dict() for b in self.blocks],
            "stability": [s.to_dict() for s in self.stability],
        }

    def tables(self) -> list[Table]:
        """Plain-text tables for reports, one per diagnostic."""
        c = self.ggn_vs_hessian
        rows = [
            [
                str(i + 1),
                _g(float(c.hessian.top.eigenvalues[i]), 6),
                _g(float(c.ggn.top.eigenvalues[i]), 6),
                _g(float(c.ratios[i])),
                f"{_g(float(c.hessian.top.residuals[i]), 2)} / {_g(float(c.ggn.top.residuals[i]), 2)}",
                f"{_flag(bool(c.hessian.top.converged[i]))} / {_flag(bool(c.ggn.top.converged[i]))}",
            ]
            for i in range(len(c.hessian.top))
        ]
        rows.append(
            [
                "overlap",
                f"top-{len(c.hessian.top)} eigenspaces: {c.overlap:.4f} (chance {c.chance_overlap:.2g})",
                "",
                "",
                "",
                "",
            ]
        )
        if c.hessian_density is not None and c.ggn_density is not None:
            rows.append(
                [
                    "density",
                    f"negative mass {c.hessian_density.negative_mass:.3f}",
                    f"negative mass {c.ggn_density.negative_mass:.3f}",
                    "",
                    "",
                    "",
                ]
            )
        out: list[Table] = [
            (
                "Loss Hessian vs generalized Gauss-Newton (whole model)",
                ["#", "Hessian", "GGN", "ratio", "residuals", "converged"],
                rows,
            )
        ]
        g = self.gradient
        o = self.outliers
        orow = [
            [
                "gradient in top-k (loss Hessian)",
                f"{g.fraction:.4f}",
                f"k = {len(g.top)}, chance {g.chance:.2g}",
            ]
        ]
        if o is not None:
            orow += [
                ["classes C", str(o.num_classes), ""],
                ["outliers (largest gap, GGN)", str(o.count), f"gap ratio {_g(o.outliers.gap)}"],
                [
                    "class means in the top-C eigenspace",
                    f"{o.class_mean_energy_in_top:.4f}",
                    f"share of |delta_c|^2 in the top-{o.aligned} space; chance {o.chance:.2g}",
                ],
            ]
        out.append(
            (
                "Outliers vs classes; gradient in the top eigenspace",
                ["quantity", "value", "note"],
                orow,
            )
        )
        out.append(
            (
                "Local Hessian H_W vs the global GGN diagonal block G_bb",
                [
                    "block",
                    "dim",
                    "lambda_max H_W",
                    "lambda_max G_bb",
                    "tr ratio",
                    "rel. Frobenius",
                    "after best scale",
                    "overlap",
                    "converged",
                ],
                [
                    [
                        f"{b.index} {b.name}",
                        str(b.dimension),
                        _g(float(b.local.top.eigenvalues[0])),
                        _g(float(b.global_block.top.eigenvalues[0])),
                        _g(b.trace_ratio) + ("" if b.dense else f" ± {_g(b.trace_error, 2)}"),
                        _g(b.relative_frobenius),
                        _g(b.scaled_relative_frobenius),
                        f"{b.eigenspace_overlap:.3f}",
                        _flag(b.converged),
                    ]
                    for b in self.blocks
                ],
            )
        )
        if self.stability:
            out.append(
                (
                    "Edge of stability: rate x lambda_max against 2",
                    [
                        "block",
                        "rate",
                        "local (H_W)",
                        "global (loss Hessian block)",
                        "stable",
                        "converged",
                    ],
                    [
                        [
                            f"{s.index} {s.name}",
                            _g(s.rate_min)
                            if s.rate_min == s.rate_max
                            else f"{_g(s.rate_min)}..{_g(s.rate_max)}",
                            _g(s.local_sharpness),
                            _g(s.global_sharpness),
                            f"{_flag(s.local_stable)} / "
                            + ("n/a" if s.global_stable is None else _flag(s.global_stable)),
                            _flag(s.converged),
                        ]
                        for s in self.stability
                    ],
                )
            )
        return out


def run_diagnostics(
    capture: BlockCapture,
    *,
    top: int = 10,
    lr: float | Mapping[str, Rate] | None = None,
    density: bool = True,
    num_probes: int = 4,
    num_steps: int = 60,
    max_dense: int = 512,
    tol: float = 1e-6,
    seed: int = 0,
) -> Diagnostics:
    """Every diagnostic of this package on one batch (see the module docstring).

    Args:
        capture: the recorded batch, with labels.
        top: k for the top spectra (capped at each operator's dimension).
        lr: learning rate (or rates by parameter name) for the stability table; ``None``: none.
        density: SLQ densities of the loss Hessian and the GGN.
        num_probes, num_steps: SLQ probes and steps.
        max_dense: largest block materialised for the exact local-vs-global comparison
            (traces and Frobenius norms; Hutch++ traces above it).
        tol: relative tolerance of the eigensolvers.
        seed: seed of every random draw.

    Raises:
        DataError: the capture holds no labels.
    """
    if capture.targets is None:
        raise DataError("the diagnostics need labels (loss Hessian, GGN); give data with labels y")
    n = sum(b.num_params for b in capture.split)
    k = min(top, n)
    cmp = compare_ggn_hessian(
        capture,
        top=k,
        density=density,
        num_probes=num_probes,
        num_steps=num_steps,
        tol=tol,
        seed=seed,
    )
    # f_k on the loss Hessian's eigenvectors just computed: no second solve
    grad = gradient_overlap(LossHessian(capture, "model"), eigenpairs=cmp.hessian.top, seed=seed)
    y = capture.targets
    outl = None
    if y.ndim == 1 and not y.is_floating_point():
        c = int(np.unique(y.cpu().numpy()).size)
        # the class means against the top-C space, whatever the largest-gap count says
        outl = outlier_analysis(capture, top=min(2 * c, n), align=min(c, n), tol=tol, seed=seed)
    blocks = compare_blocks(capture, top=min(5, k), max_dense=max_dense, tol=tol, seed=seed)
    stab = () if lr is None else block_stability(capture, lr=lr, tol=tol, seed=seed)
    return Diagnostics(cmp, grad, outl, blocks, stab)
