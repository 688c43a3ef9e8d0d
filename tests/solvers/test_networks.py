"""Local Hessians of small networks through spectrum(), against dense float64 eigh (1e-8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from solvers import networks

from hessiankit.solvers import spectrum


def _reference(op):
    ev = torch.linalg.eigvalsh(op.to_dense()).numpy()
    return ev


def _kappa(ev: np.ndarray, rtol: float) -> float:
    nz = ev[np.abs(ev) > rtol * np.abs(ev).max()]
    return float(np.abs(nz).max() / np.abs(nz).min())


def _agrees(r, ev: np.ndarray) -> None:
    top = np.sort(ev)[::-1][: len(r.top)]
    np.testing.assert_allclose(r.top.eigenvalues, top, rtol=1e-8)
    assert r.condition.converged and r.top.all_converged and r.bottom.all_converged
    assert r.condition.kappa == pytest.approx(_kappa(ev, r.condition.rtol), rel=1e-8)


@pytest.mark.parametrize("method", ["lanczos", "auto"])
def test_24_dim_weight_block_with_top_5_is_exact(method):
    # Linear(5, 4) + Tanh: block size 5 from a range start spent 5 of the old 29-product
    # budget on the start, so the Krylov space was one block short of exhausted.
    op = networks.linear_tanh_24()
    ev = _reference(op)
    r = spectrum(op, top=5, bottom=1, method=method, seed=0)
    _agrees(r, ev)
    assert r.exhausted and r.condition.rank == 24
    np.testing.assert_allclose(np.sort(r.eigenvalues), np.sort(ev), rtol=1e-8, atol=1e-14)
