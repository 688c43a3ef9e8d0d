"""Exact spectra of separable local Hessians, against dense float64 eigendecompositions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hessiankit as hk
from hessiankit.errors import OperatorError
from hessiankit.operators import MatrixOperator
from hessiankit.operators.dataset import DatasetOperator
from hessiankit.solvers.separable import estimate_cost, separable_spectrum
from hessiankit.solvers.separable_structure import (
    _probe,
    find_separable_structure,
    separability,
)

from conftest import randomise_bn

ROUTES = ["primal", "dual", "jacobian"]


def conv_net(bn: bool, act: type[nn.Module], pool: nn.Module | None, bias: bool) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(2, 3, 3, padding=1, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(3))
    layers.append(act())
    if pool is not None:
        layers.append(pool)
    layers += [nn.Flatten(), nn.Linear(3 * (4 if pool is not None else 16), 3)]
    torch.manual_seed(0)
    return randomise_bn(nn.Sequential(*layers).double(), 1)


def data(m: int = 5, shape: tuple[int, ...] = (2, 4, 4)) -> torch.Tensor:
    return torch.randn(m, *shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def check_against_dense(op: hk.LocalHessian, r: object, rtol: float = 1e-8) -> None:
    from hessiankit.solvers.results import SpectrumResult

    assert isinstance(r, SpectrumResult)
    dense = np.sort(torch.linalg.eigvalsh(op.to_dense()).numpy())
    amax = np.abs(dense).max()
    assert r.eigenvalues is not None and r.eigenvalues.shape == dense.shape
    np.testing.assert_allclose(r.eigenvalues, dense, rtol=0, atol=rtol * amax)
    c = r.condition
    thr = c.threshold
    # The threshold sits in a clear gap of the dense spectrum, so rank is well defined.
    assert not np.any(np.abs(np.abs(dense) - thr) < 1e-3 * thr)
    rank = int((np.abs(dense) > thr).sum())
    assert (c.rank, c.nullity) == (rank, dense.size - rank)
    small = np.abs(dense)[np.abs(dense) > thr].min()
    # kappa to 1e-8, or within its own stated error when lambda_min is near the floor.
    assert c.kappa is not None and c.kappa_error is not None
    assert c.kappa == pytest.approx(amax / small, rel=max(rtol, c.kappa_error))
    k = len(r.top)
    np.testing.assert_allclose(r.top.eigenvalues, dense[::-1][:k], rtol=0, atol=rtol * amax)
    assert r.top.all_converged and r.bottom.all_converged and c.converged
    assert np.all(r.top.residuals <= 1e-10 * amax)
    assert np.all(r.top.error_bounds >= r.precision)
    assert r.exhausted


CONV_CASES = [
    ("train", True, nn.ReLU, nn.MaxPool2d(2), False),
    ("train", True, nn.Tanh, nn.AvgPool2d(2), True),
    ("eval", True, nn.ReLU, nn.MaxPool2d(2), True),
    ("eval", True, nn.Tanh, None, False),
    ("eval", False, nn.Tanh, nn.AvgPool2d(2), True),
    ("eval", False, nn.ReLU, None, True),
]


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bn_mode,bn,act,pool,bias", CONV_CASES)
def test_conv_block_weights_match_dense(
    route: str, bn_mode: str, bn: bool, act: type[nn.Module], pool: nn.Module | None, bias: bool
) -> None:
    net = conv_net(bn, act, pool, bias)
    cap = hk.capture(net, data(), bn=bn_mode)
    op = hk.LocalHessian(cap, 1)
    r = separable_spectrum(op, top=3, bottom=2, route=route)  # type: ignore[arg-type]
    assert r.method == f"separable-{route}"
    check_against_dense(op, r)
    dense = np.sort(torch.linalg.eigvalsh(op.to_dense()).numpy())
    on_range = dense[np.abs(dense) > r.condition.threshold]
    np.testing.assert_allclose(r.bottom.eigenvalues, on_range[:2], rtol=1e-8)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_block_with_bn_matches_dense(route: str, bn_mode: str, bias: bool) -> None:
    torch.manual_seed(1)
    net = randomise_bn(
        nn.Sequential(nn.Linear(6, 4, bias=bias), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)),
        2,
    ).double()
    cap = hk.capture(net, data(7, (6,)), bn=bn_mode)
    op = hk.LocalHessian(cap, 1)
    s = find_separable_structure(op)
    assert s is not None and (s.num_parts, s.part_size, s.out_part_size) == (4, 6 + bias + 2, 7)
    check_against_dense(op, separable_spectrum(op, top=2, route=route))  # type: ignore[arg-type]


@pytest.mark.parametrize("route", ROUTES)
def test_last_linear_block_and_bn_without_affine(route: str) -> None:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4, affine=False), nn.ReLU(), nn.AdaptiveAvgPool1d(2)
    )
    net = nn.Sequential(net, nn.Flatten(), nn.Linear(8, 3)).double()
    cap = hk.capture(net, data(6, (3, 7)), bn="train")
    for b in (1, 2):
        op = hk.LocalHessian(cap, b)
        check_against_dense(op, separable_spectrum(op, top=2, route=route))  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("route", ["primal", "dual"])
@pytest.mark.parametrize("with_bn", [True, False])
def test_input_local_hessian_is_a_sum_over_samples(route: str, with_bn: bool) -> None:
    net = conv_net(with_bn, nn.ReLU, nn.MaxPool2d(2), True)
    cap = hk.capture(net, data(4), bn="eval")
    for b in (1, 2):
        op = hk.LocalHessian(cap, b, wrt="input")
        s = find_separable_structure(op)
        assert s is not None and s.axis == "samples" and s.num_parts == 4
        check_against_dense(op, separable_spectrum(op, top=2, route=route))  # type: ignore[arg-type]


def test_input_with_bn_in_train_mode_is_not_separable() -> None:
    net = conv_net(True, nn.ReLU, None, True)
    op = hk.LocalHessian(hk.capture(net, data(4), bn="train"), 1, wrt="input")
    s, why = separability(op)
    assert s is None and "batch statistics" in why
    with pytest.raises(OperatorError, match="not separable"):
        separable_spectrum(op)


def test_multi_layer_block_and_whole_model_are_not_separable() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.Tanh()).double()
    split = hk.split_blocks(net, blocks=[["0", "1", "2", "3"]])
    cap = hk.capture(split, data(3, (2, 6, 6)))
    assert find_separable_structure(hk.LocalHessian(cap, 1)) is None
    assert find_separable_structure(hk.LocalHessian(cap, "model")) is None
    with pytest.raises(OperatorError, match="not separable"):
        separable_spectrum(hk.LocalHessian(cap, 1))


def test_channel_mixing_step_is_refused() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Softmax(dim=1), nn.Flatten()).double()
    op = hk.LocalHessian(hk.capture(net, data(3, (2, 5, 5))), 1)
    s, why = separability(op)
    assert s is None and "Softmax" in why


def test_probe_rejects_an_operator_that_couples_parts() -> None:
    g = torch.Generator().manual_seed(0)
    B = torch.randn(6, 6, generator=g, dtype=torch.float64)
    block_diag = torch.block_diag(B[:3, :3] @ B[:3, :3].T, B[3:, 3:] @ B[3:, 3:].T)
    parts = torch.arange(6).reshape(2, 3)
    assert not isinstance(_probe(MatrixOperator(block_diag), parts, 0), str)
    coupled = block_diag + 1e-6 * (B @ B.T)
    assert "leaks" in str(_probe(MatrixOperator(coupled), parts, 0))


@pytest.mark.slow
def test_exact_kind_is_separable_through_the_primal_route() -> None:
    net = conv_net(True, nn.Tanh, nn.AvgPool2d(2), True)
    x = data(5)
    y = torch.tensor([0, 1, 2, 1, 0])
    cap = hk.capture(net, x, y, bn="train")
    op = hk.LocalHessian(cap, 1, kind="exact", eta=0.5)
    s = find_separable_structure(op)
    assert s is not None and s.out_parts is None and s.factored is None
    costs = estimate_cost(op, s)
    assert not costs["dual"].available and not costs["jacobian"].available
    r = separable_spectrum(op, top=2, bottom=2)
    assert r.method == "separable-primal"
    check_against_dense(op, r)
    dense = np.sort(torch.linalg.eigvalsh(op.to_dense()).numpy())
    assert dense[0] < -1e-6 * np.abs(dense).max()  # indefinite: bottom is algebraic
    np.testing.assert_allclose(r.bottom.eigenvalues, dense[:2], rtol=1e-8)


@pytest.mark.slow
def test_dataset_operator_over_batches() -> None:
    net = conv_net(True, nn.ReLU, nn.MaxPool2d(2), False)
    x = data(7)
    op = DatasetOperator(net, [x[:3], x[3:6], x[6:]], lambda c: hk.LocalHessian(c, 1), bn="eval")
    s = find_separable_structure(op)
    assert s is not None and s.out_parts is None
    r = separable_spectrum(op, top=3, structure=s)
    assert r.method == "separable-primal" and r.num_products == s.part_size
    check_against_dense(op, r)  # type: ignore[arg-type]


@pytest.mark.slow
def test_small_memory_budget_forms_the_blocks_in_several_passes() -> None:
    net = conv_net(True, nn.ReLU, nn.MaxPool2d(2), True)
    op = hk.LocalHessian(hk.capture(net, data(), bn="train"), 1)
    s = find_separable_structure(op)
    assert s is not None
    budget = 3 * op.dim * 8 * 3 + 3 * s.part_size**2 * 8  # one part at a time
    costs = estimate_cost(op, s, max_bytes=budget)
    assert costs["primal"].passes == s.num_parts
    r = separable_spectrum(op, top=2, structure=s, route="primal", max_bytes=budget)
    assert r.num_products == s.part_size * s.num_parts == costs["primal"].products
    check_against_dense(op, r)


def test_output_gram_matches_the_explicit_jacobian() -> None:
    from torch.autograd.functional import jacobian

    from hessiankit.operators.output_gram import OutputGram

    net = conv_net(True, nn.Tanh, nn.MaxPool2d(2), True)
    cap = hk.capture(net, data(4), bn="train")
    op = hk.LocalHessian(cap, 1)
    f, point, scale = op.block_function()
    J = jacobian(lambda *ps: f(*ps).reshape(-1), tuple(point))
    Jm = torch.cat([j.reshape(j.shape[0], -1) for j in J], dim=1)
    G = OutputGram.of(op).to_dense()
    torch.testing.assert_close(G, scale * Jm @ Jm.T, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.to_dense(), scale * Jm.T @ Jm, rtol=1e-10, atol=1e-12)


def test_auto_route_and_costs() -> None:
    net = conv_net(True, nn.ReLU, nn.MaxPool2d(2), False)
    op = hk.LocalHessian(hk.capture(net, data(), bn="train"), 1)
    s = find_separable_structure(op)
    assert s is not None
    costs = estimate_cost(op, s)
    assert costs["primal"].products == s.part_size and costs["dual"].products == s.out_part_size
    assert costs["jacobian"].products == 0 and costs["jacobian"].jvp_columns == s.part_size
    assert separable_spectrum(op, structure=s).method == "separable-jacobian"
    with pytest.raises(OperatorError, match="route"):
        separable_spectrum(op, structure=s, route="bogus")  # type: ignore[arg-type]
    with pytest.raises(OperatorError, match="top"):
        separable_spectrum(op, structure=s, top=op.dim + 1)


@pytest.mark.slow  # every block of the small VGG
def test_vgg_small_every_block() -> None:
    net = hk.vgg("small", in_channels=1, num_classes=4, seed=0, dtype=torch.float64)
    cap = hk.capture(net, data(6, (1, 16, 16)), bn="train")
    for b in range(1, len(cap.split) + 1):
        op = hk.LocalHessian(cap, b)
        r = separable_spectrum(op, top=2)
        check_against_dense(op, r)


@pytest.mark.slow
def test_grouped_conv_is_separable_without_the_factored_route() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    cap = hk.capture(randomise_bn(net.double(), 5), data(3, (4, 5, 5)), bn="train")
    op = hk.LocalHessian(cap, 1)
    s = find_separable_structure(op)
    assert s is not None and s.factored is None and s.part_size == 2 * 9 + 1 + 2
    r = separable_spectrum(op, top=2, structure=s)
    assert r.method in ("separable-primal", "separable-dual")
    check_against_dense(op, r)


def test_progress_counts_parts_and_linear_on_sequences_is_refused() -> None:
    net = conv_net(True, nn.ReLU, nn.MaxPool2d(2), True)
    op = hk.LocalHessian(hk.capture(net, data(), bn="train"), 1)
    seen: list[tuple[int, int]] = []
    separable_spectrum(op, top=1, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (3, 3)
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 3), nn.Tanh()).double()
    s, why = separability(hk.LocalHessian(hk.capture(seq, data(2, (5, 4))), 1))
    assert s is None and "3-d input" in why


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
def test_blocks_of_the_reported_pairs_are_formed_again_when_not_kept(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hessiankit.solvers import separable as sep

    add = sep._Accumulator.add

    def forgetful(self: sep._Accumulator, idx: torch.Tensor, M: torch.Tensor) -> None:
        add(self, idx, M)
        self.cache.clear()

    monkeypatch.setattr(sep._Accumulator, "add", forgetful)
    net = conv_net(True, nn.Tanh, nn.MaxPool2d(2), True)
    op = hk.LocalHessian(hk.capture(net, data(), bn="train"), 1)
    r = separable_spectrum(op, top=3, bottom=2, route=route)  # type: ignore[arg-type]
    check_against_dense(op, r)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_float32_jacobian_route_is_exact_at_the_float32_point(bn_mode: str) -> None:
    # A float32 model: the Jacobian route works in float64 at the stored weights and input, so
    # its spectrum is the float64 dense one of the same point (the float32 values cast up),
    # to float64 accuracy, with a converged kappa and rank (float32 products could not resolve
    # eigenvalues near 1e-5 lambda_max).
    net32 = conv_net(True, nn.ReLU, nn.MaxPool2d(2), True).float()
    x32 = data(8).float()
    r = separable_spectrum(hk.LocalHessian(hk.capture(net32, x32, bn=bn_mode), 1), top=3, bottom=2)
    assert r.method == "separable-jacobian" and r.dtype == "float32"
    H = hk.LocalHessian(hk.capture(net32.double(), x32.double(), bn=bn_mode), 1).to_dense()
    ev = torch.linalg.eigvalsh(H).numpy()
    scale = float(ev.max())
    nonzero = ev[ev > 10 * np.sqrt(ev.size) * np.finfo(np.float64).eps * scale]
    np.testing.assert_allclose(r.top.eigenvalues, ev[::-1][:3], rtol=1e-10)
    np.testing.assert_allclose(r.bottom.eigenvalues, nonzero[:2], rtol=1e-8)
    c = r.condition
    assert c.converged and c.rank == nonzero.size
    assert c.kappa == pytest.approx(scale / nonzero[0], rel=1e-8)
    assert c.kappa_error < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize(("n_in", "m", "separable"), [(40, 8, True), (80, 100, False)])
def test_top_only_takes_the_separable_route_when_its_parts_are_small(
    n_in: int, m: int, separable: bool
) -> None:
    # Parts of side min(d, r) = min(n_in + 1, m): 8 <= 64 goes the exact way for a top-only
    # request (3 probe products); 81 > 64 does not (Lanczos or dense). Either way the top
    # eigenvalues are the dense float64 ones.
    from hessiankit.solvers import spectrum

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(n_in, 30), nn.ReLU(), nn.Linear(30, 3)).double()
    x = torch.randn(m, n_in, dtype=torch.float64)
    op = hk.LocalHessian(hk.capture(net, x), 1)
    r = spectrum(op, top=5, bottom=0, tol=1e-10, seed=0)
    assert r.method.startswith("separable") is separable
    if separable:
        assert r.num_products == 3 and "separable" in r.method_reason
    ev = torch.linalg.eigvalsh(op.to_dense()).numpy()
    np.testing.assert_allclose(r.top.eigenvalues, ev[::-1][:5], rtol=1e-8)
    assert r.top.all_converged


def test_jacobian_route_through_max_pool_to_a_1x1_map_and_global_pool() -> None:
    # The last conv unit of a narrow VGG13 without BN (conv -> ReLU -> max-pool to 1x1 ->
    # global average pool -> flatten): the tiled primal and tangent of the pooling steps shared
    # memory unless copied, which forward-mode AD refuses.
    net = hk.vgg("vgg13", in_channels=1, width=1 / 32, batch_norm=False, seed=0).double()
    x = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = hk.LocalHessian(hk.capture(net, x), 10)
    r = separable_spectrum(op, top=1, route="jacobian")
    dense = np.linalg.eigvalsh(op.to_dense().numpy())
    np.testing.assert_allclose(np.sort(r.eigenvalues), dense, rtol=0, atol=1e-12 * dense[-1])


@pytest.mark.slow  # a 512-image capture at 32x32 (about 20 s)
def test_jacobian_route_output_check_scales_with_the_values_per_channel() -> None:
    # 512 padded-looking 32x32 images (524k values per batch-norm statistic, a constant
    # border): the factored block's output differs from the capture's by thousands of eps
    # (another summation order); the route must accept it, and its top eigenvalue agree with
    # Lanczos on the operator's own products.
    net = hk.vgg([8, 8], in_channels=1, num_classes=2, seed=0).double()
    x = torch.randn(512, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for edge in (slice(0, 2), slice(-2, None)):
        x[:, :, edge] = -0.81
        x[:, :, :, edge] = -0.81
    op = hk.LocalHessian(hk.capture(net, x, bn="train"), 1)
    r = separable_spectrum(op, top=1, bottom=1, route="jacobian")
    ref = hk.spectrum(op, top=1, bottom=0, method="lanczos", tol=1e-10)
    assert r.condition.converged and ref.top.all_converged
    assert float(r.top.eigenvalues[0]) == pytest.approx(float(ref.top.eigenvalues[0]), rel=1e-8)


def residual_mlp(bn: bool, act: type[nn.Module]) -> nn.Module:
    def unit() -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(5, 5, bias=not bn), nn.BatchNorm1d(5) if bn else nn.Identity(), act()
        )

    torch.manual_seed(4)
    net = nn.Sequential(unit(), hk.models.Residual(unit()), nn.Linear(5, 3))
    return randomise_bn(net.double(), 5)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("bn", "bn_mode", "act"),
    [(False, "eval", nn.Tanh), (True, "train", nn.ReLU), (True, "eval", nn.Tanh)],
)
def test_residual_unit_weights_are_separable_and_match_dense(
    route: str, bn: bool, bn_mode: str, act: type[nn.Module]
) -> None:
    # z + branch(z): the identity path is constant in the weights, so the unit's weight local
    # Hessian is the branch's, a direct sum over output units; the output check adds z back.
    cap = hk.capture(residual_mlp(bn, act), data(9, (5,)), bn=bn_mode)
    op = hk.LocalHessian(cap, 2)
    s = find_separable_structure(op)
    assert s is not None and s.axis == "channels" and s.reason.startswith("Residual(")
    assert s.num_parts == 5 and s.factored is not None and s.factored.skip is not None
    check_against_dense(op, separable_spectrum(op, top=2, bottom=1, route=route))  # type: ignore[arg-type]


@pytest.mark.parametrize("route", ["primal", "dual"])
def test_residual_unit_input_is_a_sum_over_samples(route: str) -> None:
    cap = hk.capture(residual_mlp(False, nn.Tanh), data(6, (5,)))
    op = hk.LocalHessian(cap, 2, wrt="input")
    s = find_separable_structure(op)
    assert s is not None and s.axis == "samples" and s.num_parts == 6
    check_against_dense(op, separable_spectrum(op, top=2, route=route))  # type: ignore[arg-type]


def test_residual_unit_with_train_mode_bn_couples_the_samples() -> None:
    cap = hk.capture(residual_mlp(True, nn.ReLU), data(6, (5,)), bn="train")
    structure, why = separability(hk.LocalHessian(cap, 2, wrt="input"))
    assert structure is None and why.startswith("1.branch.1 normalises with batch statistics")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_conv_residual_unit_followed_by_flatten_matches_dense(route: str, bn_mode: str) -> None:
    # The unit's block also holds the flatten before the classifier: the skip is added before it.
    torch.manual_seed(6)
    branch = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2), nn.Tanh())
    net = nn.Sequential(hk.models.Residual(branch), nn.Flatten(), nn.Linear(2 * 16, 3))
    net = randomise_bn(net.double(), 7)
    cap = hk.capture(net, data(5), bn=bn_mode)
    op = hk.LocalHessian(cap, 1)
    s = find_separable_structure(op)
    assert s is not None and s.reason.startswith("Residual(") and "-> flatten" in s.reason
    check_against_dense(op, separable_spectrum(op, top=2, bottom=1, route=route))  # type: ignore[arg-type]
