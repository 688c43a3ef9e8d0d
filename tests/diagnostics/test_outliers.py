"""Outliers vs the number of classes and their alignment with the class-mean gradients.

Two kinds of check. Against dense references: the class-mean gradients (plain autograd per
class), the top eigenvalues and the principal angles (dense eigh of J^T H_L J). Against a
closed form: a linear classifier ``z = W x + b`` at ``W = 0, b = 0`` has ``p_i = 1/C`` for
every sample, so ``H_L = (I - 11^T/C)/(C m)`` per sample and the GGN is exactly
``S kron A`` with ``S = X~^T X~ / m`` (``X~`` = inputs with a ones column for the bias) and
``A = (I - 11^T/C)/C`` (eigenvalues 1/C, C - 1 times, and 0). Its outliers are the products of
S's outliers with 1/C, C - 1 each:

* inputs with a large common mean and small noise: S has one outlier, so the GGN has exactly
  C - 1 outliers (the softmax's C - 1 directions), and every class-mean gradient
  ``delta_c = x_bar_c kron (1/C - e_c)`` lies in their span;
* C tight clusters at orthogonal means: S has C outliers, so the GGN has C (C - 1) (Papyan's
  cross-class level).

The count assertions fail if the largest-gap rule picks another gap (e.g. the noise were as large
as the means), or if the GGN operator or the solver got the spectrum wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hessiankit as hk
from diagnostics.dense import class_means, ggn, mlp, top_eigh
from hessiankit.diagnostics import class_mean_gradients, count_outliers, outlier_analysis
from hessiankit.errors import DataError, OperatorError


def _zero_linear(d: int, c: int) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(d, c)).double()
    nn.init.zeros_(net[0].weight)
    nn.init.zeros_(net[0].bias)
    return net


def _closed_form_top(x: torch.Tensor, c: int) -> float:
    """Largest GGN eigenvalue of the zero linear classifier: lambda_max(X~^T X~/m) / C."""
    xt = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    return float(torch.linalg.eigvalsh(xt.T @ xt / x.shape[0])[-1]) / c


def test_count_rule() -> None:
    assert count_outliers(np.array([10.0, 9.0, 8.0, 1.0, 0.9, 0.5])).count == 3
    assert count_outliers(np.array([1.0, 0.9, 0.8, 0.7])).count == 0  # no ratio reaches 2
    # the gap to the null space does not count; 8 / 1 does
    r = count_outliers(np.array([8.0, 7.0, 1.0, 0.9, 1e-17, 0.0, -1e-16]))
    assert r.count == 2 and r.gap == 7.0 and np.isnan(r.ratios[3:]).all()
    assert count_outliers(np.array([5.0, 4.0, 0.0])).count == 0  # outliers but no bulk
    with pytest.raises(OperatorError, match="descending"):
        count_outliers(np.array([1.0, 2.0]))
    with pytest.raises(OperatorError, match="two"):
        count_outliers(np.array([1.0]))


@pytest.mark.parametrize("c", [3, 4, 5])
def test_common_mean_gives_c_minus_1_outliers_spanned_by_class_means(c: int) -> None:
    g = torch.Generator().manual_seed(c)
    x = 5.0 + 0.1 * torch.randn(16 * c, 6, generator=g, dtype=torch.float64)
    y = torch.arange(16 * c) % c
    r = outlier_analysis(hk.capture(_zero_linear(6, c), x, y), tol=1e-10, seed=0)
    assert r.num_classes == c and r.converged
    assert r.count == c - 1
    top = _closed_form_top(x, c)
    assert abs(r.top.eigenvalues[: c - 1] - top).max() < 1e-8 * top
    # the class means differ from the common mean by noise of relative size ~0.1/(5 sqrt(16)),
    # so their share outside the outlier space is of order its square (1e-5), against chance
    # (C - 1)/dimension
    assert r.class_mean_energy_in_top > 1 - 1e-3
    assert r.top_in_class_means > 1 - 1e-3
    assert r.chance < 0.2


@pytest.mark.parametrize("c", [3, 4])
def test_orthogonal_clusters_give_c_times_c_minus_1_outliers(c: int) -> None:
    g = torch.Generator().manual_seed(10 + c)
    d = 6
    means = 4.0 * torch.eye(d, dtype=torch.float64)[:c]
    y = torch.arange(12 * c) % c
    x = means[y] + 0.05 * torch.randn(12 * c, d, generator=g, dtype=torch.float64)
    r = outlier_analysis(hk.capture(_zero_linear(d, c), x, y), top=2 * c * c, tol=1e-10, seed=0)
    assert r.count == c * (c - 1)
    assert r.class_mean_energy_in_top > 1 - 1e-3


def test_class_means_and_alignment_match_dense() -> None:
    torch.manual_seed(7)
    net = mlp(4, seed=7)
    means = 2.0 * torch.randn(4, 5, dtype=torch.float64)
    y = torch.arange(24) % 4
    x = means[y] + 0.3 * torch.randn(24, 5, dtype=torch.float64)
    cap = hk.capture(net, x, y)
    D, classes = class_mean_gradients(cap)
    ref = class_means(net, x, y)
    assert classes.tolist() == [0, 1, 2, 3]
    assert torch.allclose(D, ref, rtol=1e-10, atol=1e-14)
    # the class sizes are equal, so the class means average to the full-batch gradient
    full = torch.cat(
        [
            t.reshape(-1)
            for t in torch.autograd.grad(
                nn.functional.cross_entropy(net(x), y), list(net.parameters())
            )
        ]
    )
    assert torch.allclose(D.mean(dim=1), full, rtol=1e-10, atol=1e-14)

    # the top-C eigenspace (align=4): this small MLP has no clear gap, so the rule's count
    # (0 here, the same as on the dense eigenvalues) would leave nothing to align
    r = outlier_analysis(cap, top=8, align=4, method="lanczos", tol=1e-10, seed=0)
    G = ggn(net, x, y, "cross-entropy")
    w, V, _ = top_eigh(G, 8)
    assert abs(r.top.eigenvalues - w.numpy()).max() < 1e-8 * float(w[0])
    assert r.count == count_outliers(w.numpy()).count
    k = r.aligned
    _, Vk, gap = top_eigh(G, k)
    assert gap > 1e-3  # precondition: the top-k eigenspace is well defined
    Q = torch.linalg.svd(ref, full_matrices=False)[0]
    ref_cos = torch.linalg.svdvals(Vk.T @ Q).numpy()
    assert abs(r.principal_cosines - ref_cos).max() < 1e-6
    energy = float(((Vk.T @ ref) ** 2).sum() / (ref**2).sum())
    assert abs(r.class_mean_energy_in_top - energy) < 1e-6


def test_class_means_need_integer_labels() -> None:
    net = mlp(3, seed=0)
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(DataError, match="integer"):
        class_mean_gradients(hk.capture(net, x, y, loss_fn="mse"))
