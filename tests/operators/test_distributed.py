"""Two CPU processes with gloo: all-reduced products give the single-process eigenvalues."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import hessiankit as hk
from hessiankit.errors import OperatorError
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.operators.dataset import DatasetOperator
from hessiankit.operators.distributed import AllReduceOperator, is_rank_zero
from hessiankit.solvers import lanczos
from hessiankit.solvers.blockwise import blockwise_spectra

N = 13  # shards of 7 and 6 samples, batches of 4: ragged everywhere


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3)
    ).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn((N, 2, 4, 4), generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N,), generator=g)
    return net, x, y


def _solve(op) -> dict[str, np.ndarray]:
    loss = lanczos(op["loss"], top=3, bottom=1, block_size=2, tol=1e-10, seed=0)
    blocks = blockwise_spectra(op["blocks"], top=2, bottom=1, tol=1e-10, seed=0)
    return {
        "loss_top": loss.top.eigenvalues,
        "loss_bottom": loss.bottom.eigenvalues,
        **{
            f"block{i}": np.concatenate([r.top.eigenvalues, r.bottom.eigenvalues])
            for i, r in enumerate(blocks)
        },
    }


def _worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        net, x, y = _problem()
        xs, ys = x[rank::world], y[rank::world]
        batches = [(xs[i : i + 4], ys[i : i + 4]) for i in range(0, len(xs), 4)]
        op = {
            "loss": AllReduceOperator(
                DatasetOperator(net, batches, lambda c: hk.LossHessian(c, 1))
            ),
            "blocks": AllReduceOperator(DatasetOperator(net, batches, AllBlocksLocalHessian)),
        }
        assert op["loss"].num_samples == N
        result = _solve(op)
        if is_rank_zero():
            np.savez(out, **result)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns two processes
def test_two_gloo_ranks_equal_one_process(tmp_path):
    out = str(tmp_path / "rank0.npz")
    init = "file://" + str(tmp_path / "rendezvous")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.start_processes(_worker, args=(2, init, out), nprocs=2, join=True, start_method="spawn")
    net, x, y = _problem()
    cap = hk.capture(net, x, y)
    single = _solve({"loss": hk.LossHessian(cap, 1), "blocks": AllBlocksLocalHessian(cap)})
    got = np.load(out)
    assert set(got.files) == set(single)
    for key, ref in single.items():
        np.testing.assert_allclose(got[key], ref, rtol=0, atol=1e-6 * max(1.0, np.abs(ref).max()))
        np.testing.assert_allclose(got[key], ref, rtol=1e-9)


def test_all_reduce_needs_an_initialised_group(mlp_tanh):
    net, x, y = mlp_tanh
    with pytest.raises(OperatorError, match="init_process_group"):
        AllReduceOperator(hk.LocalHessian(hk.capture(net, x), 1))
