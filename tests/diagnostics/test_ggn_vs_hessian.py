"""Loss Hessian vs GGN: top spectra, eigenspace overlap and densities against dense eigh."""

from __future__ import annotations

import pytest
import torch

import hessiankit as hk
from diagnostics.dense import cnn, ggn, loss_hessian, mlp, top_eigh
from hessiankit.diagnostics import compare_ggn_hessian


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", pytest.param("cnn", marks=pytest.mark.slow)])
def test_top_spectra_and_overlap_match_dense(kind: str) -> None:
    torch.manual_seed(5)
    if kind == "mlp":
        net, x = mlp(4, seed=5), torch.randn(16, 5, dtype=torch.float64)
    else:
        net, x = cnn(4, seed=5), torch.randn(16, 1, 6, 6, dtype=torch.float64)
    y = torch.arange(16) % 4
    k = 4
    r = compare_ggn_hessian(
        hk.capture(net, x, y), top=k, method="lanczos", tol=1e-10, num_steps=200, seed=0
    )
    H, G = loss_hessian(net, x, y, "cross-entropy"), ggn(net, x, y, "cross-entropy")
    wh, Vh, gap_h = top_eigh(H, k)
    wg, Vg, gap_g = top_eigh(G, k)
    # precondition: the top-k eigenspaces are well defined (else the overlap is not)
    assert gap_h > 1e-3 and gap_g > 1e-3
    assert r.converged
    scale = float(wh[0])
    assert abs(r.hessian.top.eigenvalues - wh.numpy()).max() < 1e-8 * scale
    assert abs(r.ggn.top.eigenvalues - wg.numpy()).max() < 1e-8 * scale
    ref_cos = torch.linalg.svdvals(Vh.T @ Vg).numpy()
    assert abs(r.principal_cosines - ref_cos).max() < 1e-6
    assert abs(r.overlap - float((ref_cos**2).sum() / k)) < 1e-6
    assert r.chance_overlap == k / H.shape[0]
    # SLQ with as many steps as the dimension sees the extreme eigenvalues of each operator
    eh, eg = torch.linalg.eigvalsh(H), torch.linalg.eigvalsh(G)
    assert r.hessian_density is not None and r.ggn_density is not None
    assert abs(r.hessian_density.lambda_max - float(eh[-1])) < 1e-8 * scale
    assert abs(r.hessian_density.lambda_min - float(eh[0])) < 1e-8 * scale
    assert abs(r.ggn_density.lambda_max - float(eg[-1])) < 1e-8 * scale
    # the GGN is PSD; this Hessian is not (its residual term has negative curvature)
    assert float(eh[0]) < -1e-6 * scale and r.hessian_density.negative_mass > 0
    assert r.ggn_density.lambda_min > -1e-10 * scale
