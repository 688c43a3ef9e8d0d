"""Share of the gradient in the top eigenspace against dense eigenvectors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hessiankit as hk
from diagnostics.dense import gradient, loss_hessian, mlp, top_eigh
from hessiankit.diagnostics import GGNOperator, gradient_overlap
from hessiankit.errors import OperatorError
from hessiankit.operators import MatrixOperator


def _point() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(6)
    return mlp(3, seed=6), torch.randn(20, 5, dtype=torch.float64), torch.arange(20) % 3


@pytest.mark.parametrize("k", [1, 3, 6])
def test_fraction_matches_dense_eigenvectors(k: int) -> None:
    net, x, y = _point()
    op = hk.LossHessian(hk.capture(net, x, y), "model")
    r = gradient_overlap(op, top=k, method="lanczos", tol=1e-10, seed=0)
    H, g = loss_hessian(net, x, y, "cross-entropy"), gradient(net, x, y, "cross-entropy")
    w, V, gap = top_eigh(H, k)
    assert gap > 1e-3  # precondition: the top-k eigenspace is well defined
    comps = (V.T @ g) ** 2 / g.dot(g)
    assert r.converged
    # an eigenvector is off by an angle of at most residual / gap (Davis-Kahan), and a squared
    # projection moves by at most twice the angle
    bound = 2 * float(r.top.residuals.max()) / (gap * float(w[0].abs())) + 1e-12
    assert abs(r.components - comps.numpy()).max() < bound
    assert abs(r.fraction - float(comps.sum())) < k * bound
    assert r.cumulative[-1] == r.fraction and (r.cumulative[1:] >= r.cumulative[:-1]).all()
    assert r.chance == k / op.dim


def test_whole_basis_holds_the_whole_gradient() -> None:
    net, x, y = _point()
    op = GGNOperator(hk.capture(net, x, y), 3)  # the last block: 27 weights
    r = gradient_overlap(op, top=op.dim, method="dense", seed=0)
    assert abs(r.fraction - 1.0) < 1e-10


def test_given_gradient_and_errors() -> None:
    A = MatrixOperator(torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)))
    r = gradient_overlap(A, top=1, gradient=torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    assert abs(r.fraction - 0.5) < 1e-12
    with pytest.raises(OperatorError, match="gradient"):
        gradient_overlap(A, top=1)
    with pytest.raises(OperatorError, match="zero"):
        gradient_overlap(A, top=1, gradient=torch.zeros(3, dtype=torch.float64))
