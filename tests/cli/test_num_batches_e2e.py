"""``--num-batches K``: the data-set mean over batches weighted by their size (a ragged last one
included), against dense float64 references built per batch with torch.func (tests/references.py)
and averaged by batch size in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import randomise_bn
from references import dense_reference

from cli.conftest import Run, read_json


def _batched_mean(net, lo, hi, x, y, sizes, **kw) -> torch.Tensor:
    """``sum_k (m_k / N) H_k`` over consecutive batches of the given sizes."""
    H, start, n = 0, 0, sum(sizes)
    for m in sizes:
        H = H + (m / n) * dense_reference(
            net, lo, hi, x[start : start + m], y[start : start + m], **kw
        )
        start += m
    return H


def _check_spectrum(res: dict, H: torch.Tensor, top: int, bottom: int) -> None:
    ev = torch.linalg.eigvalsh(H).numpy()
    scale = float(np.abs(ev).max())
    assert res["dimension"] == H.shape[0]
    np.testing.assert_allclose(res["eigenvalues"], ev[::-1][:top], rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(res["smallest"], ev[:bottom], rtol=0, atol=1e-9 * scale)
    assert all(res["converged"]) and all(res["smallest_converged"])


def test_loss_hessian_is_the_size_weighted_mean_with_a_ragged_batch(
    hk: Run, tmp_path: Path, mlp_files
) -> None:
    net, x, y = mlp_files  # 7 samples: batches of 3, 3 and 1
    r = hk(
        "spectrum", "mlp.pt", "--data", "d.pt", "--kind", "loss", "--block", "model",
        "--batch-size", "3", "--num-batches", "3", "--top", "4", "--bottom", "2",
        "--json", "l.json", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = read_json(tmp_path / "l.json")
    assert res["batch_sizes"] == [3, 3, 1] and res["samples"] == 7
    kw = dict(bn="train", wrt="weights", kind="loss")
    H = _batched_mean(net, 0, 5, x, y, [3, 3, 1], **kw)
    # the unweighted mean of the three batches is a different matrix: the test can tell them apart
    plain = sum(dense_reference(net, 0, 5, x[i : i + 3], y[i : i + 3], **kw) for i in (0, 3, 6)) / 3
    assert float((plain - H).abs().max()) > 1e-3 * float(H.abs().max())
    _check_spectrum(res, H, 4, 2)


def test_weights_with_bn_eval_equal_one_batch_of_every_sample(
    hk: Run, tmp_path: Path, conv_bn
) -> None:
    net, _, _ = conv_bn
    g = torch.Generator().manual_seed(5)
    x = torch.randn((11, 2, 4, 4), generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (11,), generator=g)
    torch.save(net, tmp_path / "bn.pt")
    torch.save({"x": x, "y": y}, tmp_path / "b.pt")
    r = hk(
        "spectrum", "bn.pt", "--data", "b.pt", "--bn", "eval", "--kind", "exact", "--eta", "0.5",
        "--block", "1", "--batch-size", "4", "--num-batches", "3", "--top", "3", "--bottom", "1",
        "--json", "w.json", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = read_json(tmp_path / "w.json")
    assert res["batch_sizes"] == [4, 4, 3]
    kw = dict(bn="eval", wrt="weights", kind="exact", eta=0.5)
    H = _batched_mean(net, 0, 3, x, y, [4, 4, 3], **kw)
    # in eval mode the data-set mean is the Hessian of one batch of all samples
    whole = dense_reference(net, 0, 3, x, y, **kw)
    assert float((whole - H).abs().max()) <= 1e-10 * float(H.abs().max())
    _check_spectrum(res, H, 3, 1)


def test_data_file_without_batch_size_is_cut_into_near_equal_batches(
    hk: Run, tmp_path: Path, mlp_files
) -> None:
    net, x, y = mlp_files
    r = hk(
        "spectrum", "mlp.pt", "--data", "d.pt", "--block", "2", "--num-batches", "2",
        "--top", "3", "--bottom", "1", "--json", "g.json", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = read_json(tmp_path / "g.json")
    assert (res["samples"], res["batch_sizes"], res["batch_size"]) == (7, [4, 3], 4)
    H = _batched_mean(net, 2, 4, x, y, [4, 3], bn="train", wrt="weights", kind="gauss-newton")
    _check_spectrum(res, H, 3, 1)


def test_bn_train_over_several_batches_is_refused(hk: Run, tmp_path: Path, conv_bn) -> None:
    net, x, y = conv_bn
    torch.save(randomise_bn(net, 2), tmp_path / "bn.pt")
    torch.save({"x": x, "y": y}, tmp_path / "b.pt")
    r = hk(
        "spectrum", "bn.pt", "--data", "b.pt", "--num-batches", "2", "--json", "x.json",
    )  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "batch norm in train mode" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.json").exists()
