"""Option objects: ``spectrum``, ``lanczos`` and ``blockwise_spectra`` given one options object
answer as with the keywords, and both agree with a dense float64 ``eigh``; ``from_keywords``
maps settings by field name; ``BlockSplit.select`` reads ``blocks=``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hessiankit as hk
from hessiankit.errors import BlockError
from hessiankit.operators import MatrixOperator
from hessiankit.solvers import blockwise_spectra, lanczos, spectrum
from hessiankit.solvers.options import (
    KrylovOptions,
    SpectrumOptions,
    default_block_size,
    from_keywords,
)
from solvers.spectra import distinct, with_spectrum


def test_from_keywords_maps_by_name_then_overrides_and_keeps_defaults() -> None:
    got = from_keywords(KrylovOptions, {"top": 4, "tol": 1e-9, "not_a_field": 1}, seed=3)
    assert got == KrylovOptions(top=4, tol=1e-9, seed=3)
    # from another dataclass: shared names carry over, the rest keep their defaults
    src = SpectrumOptions(top=2, bottom=3, tol=1e-7, max_products=40, max_iter=5)
    k = from_keywords(KrylovOptions, src, block_size=2)
    assert (k.top, k.bottom, k.tol, k.max_products, k.block_size) == (2, 3, 1e-7, 40, 2)
    assert k.start == KrylovOptions().start
    with pytest.raises(TypeError, match="mapping or a dataclass"):
        from_keywords(KrylovOptions, 3)


def test_default_block_size_rule() -> None:
    assert [default_block_size(t, b) for t, b in ((1, 0), (3, 7), (40, 1))] == [1, 7, 32]
    assert default_block_size(40, 1, 5) == 5


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_spectrum_with_options_equals_keywords_and_dense(method: str) -> None:
    ev = distinct(60)
    op = with_spectrum(ev, seed=1, psd=True)
    opts = SpectrumOptions(top=3, bottom=2, method=method, tol=1e-10)  # type: ignore[arg-type]
    by_options = spectrum(op, options=opts, top=1)  # the keyword is ignored, as documented
    by_keywords = spectrum(op, top=3, bottom=2, method=method, tol=1e-10)  # type: ignore[arg-type]
    ref = np.linalg.eigvalsh(op.matrix.numpy())
    for r in (by_options, by_keywords):
        assert r.method == method and r.converged
        np.testing.assert_allclose(r.top.eigenvalues, ref[::-1][:3], rtol=1e-8)
        np.testing.assert_allclose(r.bottom.eigenvalues, ref[:2], rtol=1e-8)
    np.testing.assert_allclose(by_options.condition.kappa, ref[-1] / ref[0], rtol=1e-8)


def test_lanczos_with_options_equals_keywords() -> None:
    op = with_spectrum(distinct(80), seed=2, psd=True)
    a = lanczos(op, options=KrylovOptions(top=2, bottom=1, block_size=2, tol=1e-10, seed=4))
    b = lanczos(op, top=2, bottom=1, block_size=2, tol=1e-10, seed=4)
    np.testing.assert_array_equal(a.top.eigenvalues, b.top.eigenvalues)
    ref = np.linalg.eigvalsh(op.matrix.numpy())
    np.testing.assert_allclose(a.top.eigenvalues, ref[::-1][:2], rtol=1e-8)


def test_blockwise_with_options_matches_dense_per_block() -> None:
    parts_ev = (np.geomspace(1e-2, 10.0, 30), np.linspace(1.0, 3.0, 20))
    mats = [with_spectrum(e, seed=s, psd=True).matrix for s, e in enumerate(parts_ev)]
    op = MatrixOperator(torch.block_diag(*mats), is_psd=True)
    parts = [slice(0, 30), slice(30, 50)]
    res = blockwise_spectra(
        op, parts=parts, options=KrylovOptions(top=2, bottom=1, block_size=2, tol=1e-10)
    )
    for r, e in zip(res, parts_ev):
        assert r.converged
        np.testing.assert_allclose(r.top.eigenvalues, np.sort(e)[::-1][:2], rtol=1e-8)
        np.testing.assert_allclose(r.bottom.eigenvalues, np.sort(e)[:1], rtol=1e-8)


def test_block_split_select() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    split = hk.split_blocks(net)
    assert [b.index for b in split.select("all")] == [b.index for b in split if b.num_params > 0]
    assert split.select("model") == [split.whole_model()]
    assert [b.index for b in split.select([2, "1"])] == [2, 1]
    with pytest.raises(BlockError, match="'all', 'model' or a list"):
        split.select("every")
    with pytest.raises(BlockError, match="no blocks"):
        split.select([])
