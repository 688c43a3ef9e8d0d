"""Every operator kind against an independent dense torch.func Hessian, in float64.

Cases (issue 2): a Linear+Tanh MLP (with biases), a Conv+BN+ReLU block in both batch-norm
modes, a residual block with batch norm; weights and input; Gauss-Newton, exact and loss; both
product backends.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import dense_reference

import hessiankit as hk

# (fixture, our block index, reference slice lo:hi, batch-norm modes)
CASES = [
    ("mlp_tanh", 1, 0, 2, ["eval"]),
    ("mlp_tanh", 2, 2, 4, ["eval"]),
    ("mlp_tanh", 3, 4, 5, ["eval"]),
    ("conv_bn", 1, 0, 4, ["eval", "train"]),
    ("conv_bn", 2, 4, 5, ["eval", "train"]),
    ("resnet_bn", 1, 0, 3, ["eval", "train"]),
    ("resnet_bn", 2, 3, 6, ["eval", "train"]),
    ("resnet_bn", 3, 6, 7, ["eval", "train"]),
]
# The convolution and ResNet cases take most of the suite's time (dense float64 references of
# a few hundred dimensions): slow, so `pytest -m "not slow"` keeps the MLP cases only.
PARAMS = [
    pytest.param(
        fx,
        b,
        lo,
        hi,
        bn,
        id=f"{fx}-b{b}-{bn}",
        marks=[pytest.mark.slow] if fx != "mlp_tanh" else [],
    )
    for fx, b, lo, hi, modes in CASES
    for bn in modes
]


@pytest.mark.parametrize("fixture,block,lo,hi,bn", PARAMS)
@pytest.mark.parametrize("kind", ["gauss-newton", "exact", "loss"])
@pytest.mark.parametrize("wrt", ["weights", "input"])
@pytest.mark.parametrize("backend", ["double-backprop", "forward-over-reverse"])
def test_operator_equals_dense_reference(request, fixture, block, lo, hi, bn, kind, wrt, backend):
    net, x, y = request.getfixturevalue(fixture)
    eta = 0.7
    split = hk.split_blocks(net)
    assert len(split) == len(CASES_BY_FIXTURE[fixture])
    cap = hk.capture(split, x, y, bn=bn)
    op = hk.hessian_operator(cap, block, wrt=wrt, kind=kind, eta=eta, backend=backend)
    H = op.to_dense()
    ref = dense_reference(net, lo, hi, x, y, bn=bn, wrt=wrt, kind=kind, eta=eta)
    assert H.shape == ref.shape
    scale = float(ref.abs().max())
    assert scale > 0
    assert float((H - ref).abs().max()) <= 1e-10 * scale
    ev = np.linalg.eigvalsh(0.5 * (H + H.T).numpy())
    ev_ref = np.linalg.eigvalsh(ref.numpy())
    assert np.abs(ev - ev_ref).max() <= 1e-8 * np.abs(ev_ref).max()


CASES_BY_FIXTURE = {"mlp_tanh": [1, 2, 3], "conv_bn": [1, 2], "resnet_bn": [1, 2, 3]}


@pytest.mark.slow  # the convolution dense reference (see conftest)
def test_lanczos_on_operator_matches_dense(conv_bn):
    net, x, y = conv_bn
    cap = hk.capture(net, x, y, bn="train")
    op = hk.LocalHessian(cap, 1, wrt="input")
    ref = np.linalg.eigvalsh(
        dense_reference(net, 0, 4, x, y, bn="train", wrt="input", kind="gauss-newton").numpy()
    )
    r = hk.spectrum(op, top=4, bottom=2, method="lanczos", tol=1e-10, seed=3)
    assert r.converged
    np.testing.assert_allclose(r.top.eigenvalues, ref[::-1][:4], rtol=1e-8)
    nonzero = ref[ref > r.condition.threshold]
    np.testing.assert_allclose(r.bottom.eigenvalues, nonzero[:2], rtol=1e-8)
    np.testing.assert_allclose(r.condition.kappa, nonzero[-1] / nonzero[0], rtol=1e-8)


def test_float32_model_analysed_in_float64(mlp_tanh):
    net, x, y = mlp_tanh
    net32 = net.float()
    cap = hk.capture(net32, x.float(), y, dtype=torch.float64)
    op = hk.LocalHessian(cap, 2, wrt="weights")
    assert op.dtype == torch.float64
    # Reference: the float32 weights, exactly representable in float64.
    ref = dense_reference(
        net32.double(), 2, 4, x.float().double(), y, bn="eval", wrt="weights", kind="gauss-newton"
    )
    assert float((op.to_dense() - ref).abs().max()) <= 1e-12 * float(ref.abs().max())


def test_to_scipy_eigsh_agrees(mlp_tanh):
    import scipy.sparse.linalg as spla

    net, x, y = mlp_tanh
    op = hk.LocalHessian(hk.capture(net, x, y), 1, wrt="weights")
    ref = np.linalg.eigvalsh(
        dense_reference(net, 0, 2, x, y, bn="eval", wrt="weights", kind="gauss-newton").numpy()
    )
    top = spla.eigsh(op.to_scipy(), k=3, which="LA", tol=1e-12, return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top)[::-1], ref[::-1][:3], rtol=1e-9)


def test_gauss_newton_does_not_depend_on_eta_or_labels(mlp_tanh):
    net, x, y = mlp_tanh
    a = hk.LocalHessian(hk.capture(net, x), 2, wrt="input").to_dense()
    b = hk.LocalHessian(hk.capture(net, x, y), 2, wrt="input", eta=5.0).to_dense()
    assert torch.equal(a, b)


def test_exact_tends_to_gauss_newton_linearly_in_eta(mlp_tanh):
    """Claim 3: ||H_exact - H_GN|| is proportional to eta."""
    net, x, y = mlp_tanh
    cap = hk.capture(net, x, y)
    gn = hk.LocalHessian(cap, 1, kind="gauss-newton").to_dense()
    diffs = [
        float((hk.LocalHessian(cap, 1, kind="exact", eta=e).to_dense() - gn).norm())
        for e in (0.1, 0.2, 0.4)
    ]
    assert diffs[0] > 0
    np.testing.assert_allclose([diffs[1] / diffs[0], diffs[2] / diffs[0]], [2.0, 4.0], rtol=1e-10)


def test_params_selects_a_principal_submatrix(mlp_tanh):
    """LocalHessian(params=[...]) is the rows and columns of those parameters in the full one."""
    net, x, y = mlp_tanh
    cap = hk.capture(net, x, y)
    full = hk.LocalHessian(cap, 2, kind="exact").to_dense()
    n_w = net[2].weight.numel()
    weight_only = hk.LocalHessian(cap, 2, kind="exact", params=["2.weight"]).to_dense()
    torch.testing.assert_close(weight_only, full[:n_w, :n_w], rtol=1e-12, atol=1e-14)
    bias_only = hk.LocalHessian(cap, 2, params=["2.bias"]).to_dense()
    gn = hk.LocalHessian(cap, 2).to_dense()
    torch.testing.assert_close(bias_only, gn[n_w:, n_w:], rtol=1e-12, atol=1e-14)
    with pytest.raises(hk.HessiankitError, match="not floating-point parameters of block 2"):
        hk.LocalHessian(cap, 2, params=["0.weight"])
