"""Tied weights: one tensor under several names is one variable of every block that uses it.

The network is ``x -> tanh(x W^T + b0) -> tanh(. W^T + b2) -> . V^T + c`` with the first two
Linear layers sharing ``W`` (``net[2].weight = net[0].weight``). Every reference below is a
hand-written function of ``(W, b0, b2, V, c)`` differentiated by
``torch.autograd.functional.hessian`` / ``jacobian`` in float64: nothing of hessiankit's
tracing, capture or product engines.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian, jacobian

import hessiankit as hk
from hessiankit.operators.all_blocks import AllBlocksLocalHessian
from hessiankit.pipeline import Progress, SolverOptions, block_operators, run_blocks

M, ETA = 6, 0.7


@pytest.fixture
def tied() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)
    ).double()
    net[2].weight = net[0].weight
    x = torch.randn(M, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (M,))
    return net, x, y


def _tensors(net: nn.Sequential) -> dict[str, torch.Tensor]:
    return {
        "W": net[0].weight.detach().clone(),
        "b0": net[0].bias.detach().clone(),
        "b2": net[2].bias.detach().clone(),
        "V": net[4].weight.detach().clone(),
        "c": net[4].bias.detach().clone(),
    }


# The three blocks as plain functions of (their tensors, their input).
def _f1(W: torch.Tensor, b0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.tanh(z @ W.T + b0)


def _f2(W: torch.Tensor, b2: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.tanh(z @ W.T + b2)


def _f3(V: torch.Tensor, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return z @ V.T + c


def _forward(t: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    z1 = _f1(t["W"], t["b0"], x)
    z2 = _f2(t["W"], t["b2"], z1)
    return [x, z1, z2, _f3(t["V"], t["c"], z2)]


def _per_sample_grads(t: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
    """``z_b`` and ``g_b = m dL/dz_b`` of the hand-written chain."""
    z0 = x
    z1 = _f1(t["W"], t["b0"], z0).detach().requires_grad_(True)
    z2 = _f2(t["W"], t["b2"], z1)
    z2d = z2.detach().requires_grad_(True)
    z3 = _f3(t["V"], t["c"], z2d)
    z3d = z3.detach().requires_grad_(True)
    (g3,) = torch.autograd.grad(F.cross_entropy(z3d, y), [z3d])
    (g2,) = torch.autograd.grad(z3, [z2d], g3)
    (g1,) = torch.autograd.grad(z2, [z1], g2)
    zs = [z0, z1.detach(), z2d.detach(), z3d.detach()]
    return zs, [M * g1, M * g2, M * g3]


def _flat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in parts])


def _split(v: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, k = [], 0
    for p in like:
        out.append(v[k : k + p.numel()].reshape(p.shape))
        k += p.numel()
    return out


def _matching(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (target - out).pow(2).sum() / out.shape[0]


def _local_reference(fn, point: list[torch.Tensor], target: torch.Tensor, kind: str, c: float):
    """``c d^2 l / dv^2`` (exact) or ``(c/m) J^T J`` (Gauss-Newton) of ``l = matching(fn(v))``."""
    v0 = _flat(point)

    def out(v: torch.Tensor) -> torch.Tensor:
        return fn(*_split(v, point))

    if kind == "exact":
        return c * hessian(lambda v: _matching(out(v), target), v0)
    J = jacobian(out, v0).reshape(-1, v0.numel())
    return c * J.T @ J / M


def _block_references(net, x, y, kind: str, wrt: str) -> list[torch.Tensor]:
    t = _tensors(net)
    zs, gs = _per_sample_grads(t, x, y)
    blocks = [(_f1, ("W", "b0")), (_f2, ("W", "b2")), (_f3, ("V", "c"))]
    refs = []
    for b, (fn, names) in enumerate(blocks, start=1):
        target = zs[b] - ETA * gs[b - 1]
        params = [t[n] for n in names]
        if wrt == "weights":
            point = params

            def of_weights(*ps, fn=fn, z=zs[b - 1]):
                return fn(*ps, z)

            refs.append(_local_reference(of_weights, point, target, kind, 1.0))
        else:

            def of_input(z, fn=fn, params=params):
                return fn(*params, z)

            refs.append(_local_reference(of_input, [zs[b - 1]], target, kind, float(M)))
    return refs


@pytest.mark.parametrize("kind", ["gauss-newton", "exact"])
@pytest.mark.parametrize("wrt", ["weights", "input"])
def test_each_block_takes_the_tied_tensor(tied, kind, wrt):
    net, x, y = tied
    cap = hk.capture(net, x, y)
    assert [b.param_names for b in cap.split] == [
        ("0.weight", "0.bias"),
        ("0.weight", "2.bias"),
        ("4.weight", "4.bias"),
    ]
    assert [b.num_params for b in cap.split] == [20, 20, 15]
    refs = _block_references(net, x, y, kind, wrt)
    for b, ref in enumerate(refs, start=1):
        H = hk.LocalHessian(cap, b, wrt=wrt, kind=kind, eta=ETA).to_dense()
        assert H.shape == ref.shape
        torch.testing.assert_close(H, ref, rtol=1e-10, atol=1e-12)
    # every block's local Hessian from one product: exactly their direct sum, the tied tensor
    # being a separate variable of each block (the pipeline's all_blocks route relies on it)
    H_all = AllBlocksLocalHessian(cap, wrt=wrt, kind=kind, eta=ETA).to_dense()
    torch.testing.assert_close(H_all, torch.block_diag(*refs), rtol=1e-10, atol=1e-12)


def test_whole_model_counts_the_tied_tensor_once(tied):
    net, x, y = tied
    cap = hk.capture(net, x, y)
    whole = cap.split.whole_model()
    names = [n for n, _ in net.named_parameters()]
    assert (
        list(whole.param_names) == names == ["0.weight", "0.bias", "2.bias", "4.weight", "4.bias"]
    )
    assert whole.num_params == sum(p.numel() for p in net.parameters()) == 16 + 4 + 4 + 12 + 3
    t = _tensors(net)
    point = [t[k] for k in ("W", "b0", "b2", "V", "c")]
    v0 = _flat(point)

    def network(v: torch.Tensor) -> torch.Tensor:
        W, b0, b2, V, c = _split(v, point)
        return _forward({"W": W, "b0": b0, "b2": b2, "V": V, "c": c}, x)[-1]

    # the training loss's Hessian: W's two uses add up in one variable
    loss_ref = hessian(lambda v: F.cross_entropy(network(v), y), v0)
    torch.testing.assert_close(
        hk.LossHessian(cap, "model").to_dense(), loss_ref, rtol=1e-10, atol=1e-12
    )
    # the whole network as one block: the back-matching loss of its output
    zs, gs = _per_sample_grads(t, x, y)
    target = zs[-1] - ETA * gs[-1]
    local_ref = hessian(lambda v: _matching(network(v), target), v0)
    H = hk.LocalHessian(cap, "model", kind="exact", eta=ETA).to_dense()
    torch.testing.assert_close(H, local_ref, rtol=1e-10, atol=1e-12)


def test_a_block_using_the_tensor_twice_counts_it_once(tied):
    net, x, y = tied
    split = hk.split_blocks(net, blocks=[["0", "2"], "4"])
    first = split.block(1)
    assert first.param_names == ("0.weight", "0.bias", "2.bias")
    assert first.num_params == 16 + 4 + 4
    cap = hk.capture(split, x, y)
    t = _tensors(net)
    zs, gs = _per_sample_grads(t, x, y)
    target = zs[2] - ETA * gs[1]

    def both(W: torch.Tensor, b0: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
        return _f2(W, b2, _f1(W, b0, x))

    point = [t["W"], t["b0"], t["b2"]]
    for kind in ("gauss-newton", "exact"):
        ref = _local_reference(both, point, target, kind, 1.0)
        H = hk.LocalHessian(cap, 1, kind=kind, eta=ETA).to_dense()
        torch.testing.assert_close(H, ref, rtol=1e-10, atol=1e-12)


def test_tied_batch_norm_stays_untouched_in_train_mode():
    """A batch norm whose affine weights and running statistics are tied to an earlier one's:
    train-mode passes update clones, so the model's shared buffers stay bit-identical."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 4), nn.BatchNorm1d(4)
    ).double()
    net[1].running_mean.uniform_(-1, 1)
    net[4].weight, net[4].bias = net[1].weight, net[1].bias
    net[4].running_mean, net[4].running_var = net[1].running_mean, net[1].running_var
    before = {n: b.clone() for n, b in net.named_buffers()}
    x = torch.randn(M, 3, dtype=torch.float64)
    cap = hk.capture(net, x, bn="train")
    assert cap.split.block(2).param_names == ("3.weight", "3.bias", "1.weight", "1.bias")
    assert cap.split.block(2).buffer_names == (
        "1.running_mean",
        "1.running_var",
        "4.num_batches_tracked",
    )
    z1 = cap.activations[1]
    W, b = net[3].weight.detach(), net[3].bias.detach()
    g, beta = net[1].weight.detach(), net[1].bias.detach()
    u = z1 @ W.T + b
    ref = (u - u.mean(0)) / torch.sqrt(u.var(0, unbiased=False) + 1e-5) * g + beta
    torch.testing.assert_close(cap.activations[2], ref, rtol=1e-12, atol=1e-12)
    H = hk.LocalHessian(cap, 2).to_dense()
    assert H.shape == (4 * 4 + 4 + 4 + 4,) * 2
    for n, b in net.named_buffers():
        assert torch.equal(b, before[n]), n


def test_pipeline_solves_tied_blocks_together_and_alone(tied):
    """``all_blocks="always"`` (one product of the summed losses) and one block at a time both
    give each block's spectrum of the hand-written reference."""
    net, x, y = tied
    ops = block_operators(hk.capture(net, x, y), kind="exact", eta=ETA)
    refs = _block_references(net, x, y, "exact", "weights")
    seen: list[str] = []

    class Log(Progress):
        def block_started(self, label: str, dim: int, total: int | None) -> None:
            seen.append(label)

    for route in ("always", "never"):
        seen.clear()
        opts = SolverOptions(top=2, bottom=1, method="lanczos", tol=1e-10, all_blocks=route)
        rows = run_blocks(ops, [1, 2], opts, progress=Log())
        assert (seen == ["blocks 1, 2 together"]) == (route == "always"), seen
        for r, H in zip(rows, refs):
            ev = torch.linalg.eigvalsh(H)
            scale = float(ev.abs().max())
            assert r.spectrum.dimension == 20
            torch.testing.assert_close(
                torch.tensor(r.spectrum.top.eigenvalues, dtype=torch.float64),
                ev.flip(0)[:2],
                rtol=0,
                atol=1e-8 * scale,
            )
            torch.testing.assert_close(
                torch.tensor(r.spectrum.bottom.eigenvalues, dtype=torch.float64),
                ev[:1],
                rtol=0,
                atol=1e-8 * scale,
            )
