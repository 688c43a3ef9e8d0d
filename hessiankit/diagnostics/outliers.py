r"""Outlier eigenvalues against the number of classes, and their alignment with class means.

With cross-entropy over C classes the spectrum of the loss Hessian (and of its GGN) is a bulk
near zero plus a few large outliers, about C of them (Sagun et al. 2017; Papyan 2018, 2019,
2020). Papyan explains them by the class structure of the GGN,
``G = (1/m) sum_i J_i^T (diag p_i - p_i p_i^T) J_i``: grouping the samples by class, the
outliers are carried by the **class-mean gradients**

.. math::

    \delta_c = \frac{1}{m_c} \sum_{i:\, y_i = c} \nabla_W \ell(f(W, x_i), y_i),
    \qquad c = 1..C,

(and, one level down, by C(C-1) cross-class terms: "mini-outliers"). Because the softmax is
invariant to a common shift of the logits, ``H_L`` has rank at most C - 1 per sample, so
depending on the model and data the count is C - 1 or C; a linear model on inputs with a large
common mean has exactly C - 1 (its GGN is ``(X X^T/m) kron H_L`` at ``W = 0``).

What this module computes:

* the top-k eigenvalues of an operator (default the model's GGN, k = 2C), with residuals and
  converged flags;
* the **outlier count** by the largest-gap rule: with ``lambda_1 >= ... >= lambda_k`` (those
  above the null threshold: the gap to the null space is not a gap to the bulk), the ratio
  ``lambda_j / lambda_{j+1}`` is largest at j = count, provided it is at least ``min_ratio``,
  else the count is 0. It is a rule, not a
  theorem: a single dominant eigenvalue (a large common input mean) makes j = 1 the largest gap,
  so every ratio is reported for the reader to judge;
* the alignment of the top-count eigenspace ``U`` with the span ``Q`` of the class-mean
  gradients (orthonormalised; its rank is at most C): the principal cosines, the share of the
  class-mean span inside the top eigenspace ``||U^T Q||_F^2 / rank Q`` and the share of the top
  eigenspace inside the class-mean span ``||U^T Q||_F^2 / count``.

Example:
    >>> from hessiankit.diagnostics import outlier_analysis
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(6, 4)).double()
    >>> nn.init.zeros_(net[0].weight); nn.init.zeros_(net[0].bias)  # doctest: +ELLIPSIS
    Parameter...
    >>> x = 5.0 + 0.1 * torch.randn(64, 6, dtype=torch.float64)    # a large common mean
    >>> y = torch.arange(64) % 4
    >>> r = outlier_analysis(hk.capture(net, x, y), seed=0)
    >>> r.num_classes, r.count, round(r.class_mean_energy_in_top, 4)
    (4, 3, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hessiankit._precision import full_precision
from hessiankit.blocks.capture import BlockCapture, run_block
from hessiankit.blocks.split import Block
from hessiankit.operators.ggn import GGNOperator
from hessiankit.diagnostics.subspace import orthonormal_basis, principal_cosines
from hessiankit.errors import DataError, OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.results import Eigenpairs
from hessiankit.solvers.spectrum import Method, spectrum

__all__ = [
    "OutlierAnalysis",
    "OutlierCount",
    "class_mean_gradients",
    "count_outliers",
    "outlier_analysis",
]


@dataclass(frozen=True, eq=False)
class OutlierCount:
    """The largest-gap rule applied to descending eigenvalues.

    Attributes:
        count: number of outliers (0 when no ratio reaches ``min_ratio``).
        ratios: ``lambda_j / lambda_{j+1}``, j = 1..k-1 (``nan`` where ``lambda_{j+1}`` is at
            or below the null threshold).
        min_ratio: the smallest ratio that counts as a gap.
    """

    count: int
    ratios: np.ndarray
    min_ratio: float

    @property
    def gap(self) -> float:
        """The ratio at the count (``nan`` for count 0)."""
        return float(self.ratios[self.count - 1]) if self.count > 0 else float("nan")


def count_outliers(
    eigenvalues: np.ndarray, *, min_ratio: float = 2.0, null_rtol: float = 1e-8
) -> OutlierCount:
    """Outliers of a descending list of top eigenvalues by the largest-gap rule (module docs).

    Only the head above the null threshold ``null_rtol * lambda_1`` takes part: the gap from
    the last nonzero eigenvalue to the null space (huge for a GGN, whose rank is at most
    ``m (C - 1)``) is not a gap between outliers and a bulk, so it never counts. A list whose
    nonzero head has no ratio of at least ``min_ratio`` has no outliers (count 0).

    Raises:
        OperatorError: fewer than two eigenvalues, an unordered list, or ``min_ratio`` not
            above 1.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or lam.size < 2:
        raise OperatorError("count_outliers needs at least two eigenvalues (top >= 2)")
    if not min_ratio > 1.0:
        raise OperatorError(f"min_ratio= must be above 1, got {min_ratio}")
    if np.any(np.diff(lam) > 1e-12 * max(abs(lam[0]), 1e-300)):
        raise OperatorError("count_outliers needs eigenvalues in descending order")
    ratios = np.full(lam.size - 1, np.nan)
    head = int(np.sum(lam > null_rtol * max(lam[0], 0.0))) if lam[0] > 0 else 0
    if head >= 2:
        ratios[: head - 1] = lam[: head - 1] / lam[1:head]
    if head < 2 or not np.nanmax(ratios) >= min_ratio:
        return OutlierCount(count=0, ratios=ratios, min_ratio=float(min_ratio))
    j = int(np.nanargmax(ratios))
    return OutlierCount(count=j + 1, ratios=ratios, min_ratio=float(min_ratio))


def class_mean_gradients(
    capture: BlockCapture, block: int | str | Block = "model"
) -> tuple[torch.Tensor, np.ndarray]:
    """``[delta_1 .. delta_C]``: per class, the mean gradient of its samples' losses.

    ``delta_c`` is the gradient of ``loss_fn(z[y == c], y[y == c])`` (the mean over that class's
    samples) w.r.t. the block's weights, with ``z`` the network output of the whole batch, so a
    batch-norm model in train mode keeps its batch statistics. ``sum_c (m_c/m) delta_c`` is the
    full-batch gradient.

    Returns:
        ``(D, classes)``: ``D`` is ``dim x C`` (float64), ``classes`` the labels present,
        ascending, in the order of D's columns.

    Raises:
        DataError: no labels, or labels that are not integer class indices.
    """
    if capture.targets is None or capture.loss_fn is None:
        raise DataError("class-mean gradients need labels; give data with labels y")
    y = capture.targets
    if y.ndim != 1 or y.is_floating_point() or y.is_complex():
        raise DataError("class-mean gradients need integer class labels (a 1-D tensor of classes)")
    blk = capture.split.block(block)
    state, bn = capture.state, capture.bn
    names = [n for n in blk.param_names if state.params[n].is_floating_point()]
    if not names:
        raise OperatorError(f"block {blk.index} ({blk.name}) has no parameters")
    primals = [state.params[n].detach().requires_grad_(True) for n in names]
    above = [] if blk.index == 0 else list(capture.split.blocks[blk.index :])
    classes = np.unique(y.cpu().numpy())
    cols = []
    with torch.enable_grad(), full_precision():
        out = run_block(blk, state, bn, capture.block_input(blk), dict(zip(names, primals)))
        for b in above:
            out = run_block(b, state, bn, out)
        for c in classes:
            idx = (y == int(c)).nonzero().reshape(-1)
            loss = capture.loss_fn(out[idx], y[idx])
            got = torch.autograd.grad(loss, primals, retain_graph=True, allow_unused=True)
            parts = [torch.zeros_like(p) if g is None else g for g, p in zip(got, primals)]
            cols.append(torch.cat([t.reshape(-1) for t in parts]).detach().to(torch.float64))
    return torch.stack(cols, dim=1), classes


@dataclass(frozen=True, eq=False)
class OutlierAnalysis:
    """Outliers of a curvature spectrum against the number of classes.

    Attributes:
        num_classes: C, the classes present in the batch.
        top: the top-k eigenpairs (eigenvalues, residuals, error bounds, converged; vectors).
        outliers: the largest-gap count (:class:`OutlierCount`).
        class_mean_rank: rank of the C class-mean gradients.
        aligned: dimension of the top eigenspace ``U`` compared (the count unless ``align=``).
        principal_cosines: between ``U`` and the class-mean span.
        class_means_in_top: ``||U^T Q||_F^2 / rank Q``.
        top_in_class_means: ``||U^T Q||_F^2 / aligned``.
        class_mean_energy_in_top: ``||U^T D||_F^2 / ||D||_F^2``.
        chance: ``aligned / n``, the expected energy share for a random subspace.
        operator: the operator's ``describe()``.
        seed: seed of the start vectors.
    """

    num_classes: int
    top: Eigenpairs
    outliers: OutlierCount
    class_mean_rank: int
    aligned: int
    principal_cosines: np.ndarray
    class_means_in_top: float
    top_in_class_means: float
    class_mean_energy_in_top: float
    chance: float
    operator: dict[str, object]
    seed: int

    @property
    def count(self) -> int:
        return self.outliers.count

    @property
    def converged(self) -> bool:
        return self.top.all_converged

    def to_dict(self) -> dict[str, object]:
        return {
            **self.operator,
            "num_classes": self.num_classes,
            "outliers": self.count,
            "gap_ratio": self.outliers.gap,
            "ratios": self.outliers.ratios.tolist(),
            "eigenvalues": self.top.eigenvalues.tolist(),
            "residuals": self.top.residuals.tolist(),
            "converged": self.top.converged.tolist(),
            "class_mean_rank": self.class_mean_rank,
            "aligned": self.aligned,
            "principal_cosines": self.principal_cosines.tolist(),
            "class_means_in_top": self.class_means_in_top,
            "top_in_class_means": self.top_in_class_means,
            "class_mean_energy_in_top": self.class_mean_energy_in_top,
            "chance": self.chance,
            "seed": self.seed,
        }


def outlier_analysis(
    capture: BlockCapture,
    op: SymmetricOperator | None = None,
    *,
    block: int | str | Block = "model",
    top: int | None = None,
    min_ratio: float = 2.0,
    null_rtol: float = 1e-8,
    align: int | None = None,
    method: Method = "auto",
    tol: float = 1e-8,
    seed: int = 0,
) -> OutlierAnalysis:
    """Count the outliers of ``op``'s spectrum and align them with the class-mean gradients.

    Args:
        capture: the recorded batch with integer class labels.
        op: the curvature operator over ``block``'s weights (default: the GGN,
            :class:`~hessiankit.operators.ggn.GGNOperator`; a
            :class:`~hessiankit.operators.loss.LossHessian` of the same block works too).
        block: whose weights (``"model"``: all of them); must match ``op``.
        top: k, eigenvalues computed (default ``2 C``, at most the dimension).
        min_ratio: the smallest eigenvalue ratio that counts as a gap.
        null_rtol: eigenvalues at most ``null_rtol * lambda_1`` count as zero.
        align: the dimension of the top eigenspace compared with the class means (default:
            the outlier count; e.g. ``C`` to look at the top-C space whatever the rule says).
        method, tol: eigensolver route and tolerance.
        seed: seed of the start vectors.

    Raises:
        DataError: no labels or non-integer labels.
        OperatorError: ``op``'s dimension does not match the block's weights.
    """
    D, classes = class_mean_gradients(capture, block)
    C = int(classes.size)
    A = GGNOperator(capture, block) if op is None else op
    if A.dim != D.shape[0]:
        raise OperatorError(
            f"op= has dimension {A.dim}, but block {block!r} has {D.shape[0]} weights"
        )
    k = min(2 * C if top is None else int(top), A.dim)
    res = spectrum(A, top=k, bottom=0, method=method, tol=tol, seed=seed, keep_vectors=True)
    found = count_outliers(res.top.eigenvalues, min_ratio=min_ratio, null_rtol=null_rtol)
    r_top = found.count if align is None else int(align)
    if not 0 <= r_top <= k:
        raise OperatorError(f"align= must be between 0 and top={k}, got {align}")
    vecs = res.top.eigenvectors
    assert vecs is not None  # keep_vectors=True
    U = orthonormal_basis(vecs[:, :r_top])
    Q = orthonormal_basis(D.to(U.device))
    cos = principal_cosines(U, Q)
    captured = float(np.sum(cos**2))
    r = Q.shape[1]
    Dd = D.to(U.device)
    total = float((Dd * Dd).sum())
    energy = float(((U.T @ Dd) ** 2).sum()) / total if total > 0 else float("nan")
    return OutlierAnalysis(
        num_classes=C,
        top=res.top,
        outliers=found,
        class_mean_rank=r,
        principal_cosines=cos,
        aligned=r_top,
        class_means_in_top=captured / r if r and r_top else float("nan"),
        top_in_class_means=captured / r_top if r_top else float("nan"),
        class_mean_energy_in_top=energy if r_top else float("nan"),
        chance=r_top / A.dim,
        operator=A.describe(),
        seed=seed,
    )
