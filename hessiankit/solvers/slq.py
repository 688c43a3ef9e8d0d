r"""Spectral density by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017; Papyan 2019).

The spectral density of a symmetric ``n x n`` operator A is
``phi(t) = (1/n) sum_i delta(t - lambda_i)``. For a probe ``v = z / sqrt(n)`` with Rademacher
``z``, ``E[v^T f(A) v] = (1/n) tr f(A)``. Lanczos started at ``v`` for ``m`` steps gives a
tridiagonal ``T_m = U diag(theta) U^T``; the Gauss quadrature with nodes ``theta_k`` and
weights ``w_k = U_{1k}^2`` satisfies ``v^T A^j v = sum_k w_k theta_k^j`` exactly for every
``j <= 2m - 1``. Averaging over ``p`` probes,

.. math::

    \phi(t) \approx \frac1p \sum_{l=1}^p \sum_{k=1}^m w^{(l)}_k\, g_\sigma(t - \theta^{(l)}_k),
    \qquad g_\sigma(x) = \frac{e^{-x^2 / 2\sigma^2}}{\sigma\sqrt{2\pi}} .

Each probe's weights sum to one, so the smoothed density integrates to one; its mean is the
estimate of ``tr(A)/n`` and its second moment that of ``tr(A^2)/n`` plus ``sigma^2``. The probe
average of ``v^T A^j v`` has the Hutchinson variance ``2 (||A^j||_F^2 - sum_i (A^j)_ii^2) / (p n^2)``;
:meth:`SpectralDensity.moment` reports the sample standard error.

Two curves come from the same nodes (no extra products):

``linear``
    density of ``lambda`` on a grid covering the Ritz values plus 8 sigma either side.
    **Default width**: ``sigma = (theta_max - theta_min) / m``. An m-node quadrature resolves
    the spectrum to about ``1/m`` of its spread; a narrower kernel would show the individual
    nodes rather than the density, a wider one blurs real structure. Where the nodes are sparse
    (the ends of the spectrum, and the small end of the log curve) each node still shows as its
    own peak; its area is the quadrature weight, the mass of the eigenvalues around it.
``log``
    density of ``u = log10 |lambda|`` over the nodes with ``|theta| > zero_threshold``, the
    same rule for the width in decades. The mass of the nodes at or below the threshold (the
    null space, large in local Hessians) is ``zero_mass``; the log curve integrates to
    ``1 - zero_mass``. ``negative_mass`` is the weight of negative nodes (folded onto ``|lambda|``).

Lanczos runs for all probes at once (one ``matmat`` with p columns per step) in float64, with
full reorthogonalisation when the basis fits in ``max_basis_bytes`` (else the plain three-term
recurrence, whose lost orthogonality duplicates converged nodes but keeps the low moments).
A probe whose Krylov space is invariant (``beta_j <= sqrt(eps) ||A||``) stops early: what the
rest of T would add changes the moments by ``O(beta_j^2)``, below the arithmetic's precision.

Example:
    >>> from hessiankit.operators import MatrixOperator
    >>> from hessiankit.solvers.slq import slq
    >>> A = MatrixOperator(torch.diag(torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64)))
    >>> d = slq(A, num_probes=3, num_steps=10, seed=0)
    >>> round(d.moment(1)[0], 12), round(d.moment(2)[0], 12)  # Rademacher: exact for diagonal A
    (2.0, 5.5)
    >>> sorted(round(float(t), 8) for t in d.nodes[0])  # the Krylov space is invariant after 3 steps
    [1.0, 2.0, 4.0]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from hessiankit.errors import NumericalError, OperatorError
from hessiankit.operators.base import SymmetricOperator
from hessiankit.solvers.condition import default_rank_rtol
from hessiankit.solvers.results import DensityCurve, SpectralDensity

__all__ = ["DensityCurve", "SpectralDensity", "gaussian_smoothing", "slq"]

Reorth = Literal["auto", "full", "none"]

#: A reorthogonalisation pass that keeps at least this fraction of the vector's norm leaves it
#: orthogonal to working precision; below it, one more pass (DGKS criterion).
_DGKS = 1.0 / math.sqrt(2.0)


def _frozen(a: np.ndarray) -> np.ndarray:
    arr = np.array(a, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def gaussian_smoothing(
    nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float
) -> np.ndarray:
    """``sum_k weights_k g_sigma(grid - nodes_k)`` (weights already divided by the probe count)."""
    out = np.zeros_like(grid, dtype=np.float64)
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    for s in range(0, nodes.size, 256):  # bounded memory: grid x 256 at a time
        d = (grid[:, None] - nodes[None, s : s + 256]) / sigma
        out += np.exp(-0.5 * d * d) @ weights[s : s + 256]
    return out * norm


def _curve(
    scale: Literal["linear", "log"],
    x: np.ndarray,
    w: np.ndarray,
    num_steps: int,
    sigma: float | None,
    grid_size: int,
) -> DensityCurve:
    if x.size == 0:
        return DensityCurve(scale, _frozen(np.zeros(0)), _frozen(np.zeros(0)), float("nan"), 0.0)
    lo, hi = float(x.min()), float(x.max())
    spread = hi - lo
    if sigma is None:
        size = max(abs(lo), abs(hi))
        if spread > 1e-12 * size:
            sigma = spread / max(num_steps, 1)
        elif scale == "log":  # one distinct node: 0.05 decades
            sigma = 0.05
        else:  # one distinct node: 1% of its size (1 for the zero operator)
            sigma = 0.01 * size if size > 0 else 1.0
    if not (sigma > 0 and math.isfinite(sigma)):
        raise OperatorError(f"the density's kernel width must be positive and finite, got {sigma}")
    a, b = lo - 8.0 * sigma, hi + 8.0 * sigma
    # at least 4 points per sigma so that the trapezoid rule integrates each kernel exactly enough
    size = int(min(max(grid_size, math.ceil(4.0 * (b - a) / sigma) + 1), 200_001))
    grid = np.linspace(a, b, size)
    return DensityCurve(
        scale,
        _frozen(grid),
        _frozen(gaussian_smoothing(x, w, grid, sigma)),
        float(sigma),
        float(w.sum()),
    )


def _rademacher(n: int, p: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(0, 2, (n, p), generator=gen, dtype=torch.int8).to(torch.float64)
    return (2.0 * z - 1.0) / math.sqrt(n)


def _lanczos_batch(
    op: SymmetricOperator,
    V: torch.Tensor,
    m: int,
    reorth: bool,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent Lanczos runs from the columns of V; returns alphas, betas (m x p), steps."""
    n, p = V.shape
    alpha = np.zeros((m, p))
    beta = np.zeros((m, p))
    steps = np.full(p, m)
    active = np.ones(p, dtype=bool)
    eps = torch.finfo(op.dtype).eps
    # preallocated float64 basis, one (m, n) block per probe: reorthogonalisation is two
    # batched matrix products on views, never a copy of the basis
    basis = torch.empty((p, m if reorth else 0, n), dtype=torch.float64, device=V.device)
    if reorth:
        basis[:, 0] = V.T
    q_prev = torch.zeros_like(V)
    q = V
    b_prev = torch.zeros(p, dtype=torch.float64, device=V.device)
    anorm = 0.0
    products = 0
    for j in range(m):
        if active.all():  # no gather and scatter while every probe runs
            W = op.matmat(q).to(torch.float64)
            products += p
        else:
            cols = torch.as_tensor(np.flatnonzero(active), device=V.device)
            W = torch.zeros_like(V)
            W[:, cols] = op.matmat(q[:, cols]).to(torch.float64)
            products += int(cols.numel())
        a = (q * W).sum(dim=0)
        W = W - (q * a + q_prev * b_prev)  # out of place: W may be what the operator returned
        if reorth:  # classical Gram-Schmidt, per probe; a second pass only where needed
            B = basis[:, : j + 1]
            Wt = W.T.contiguous()
            norm = Wt.norm(dim=1)
            for _ in range(2):
                Wt -= torch.bmm(B.transpose(1, 2), torch.bmm(B, Wt[:, :, None]))[:, :, 0]
                # "Twice is enough", and once is when the pass kept most of the norm
                # (Daniel-Gragg-Kaufman-Stewart 1976: ||w'|| >= ||w|| / sqrt(2) leaves w'
                # orthogonal to working precision). After the three-term recurrence it
                # usually does: this halves the reorthogonalisation, SLQ's cost beyond products.
                kept = Wt.norm(dim=1)
                if bool((kept >= _DGKS * norm).all()):
                    break
                norm = kept
            W = Wt.T
        b = W.norm(dim=0)
        a_np, b_np = a.cpu().numpy(), b.cpu().numpy()
        if not (np.isfinite(a_np[active]).all() and np.isfinite(b_np[active]).all()):
            raise NumericalError(
                f"operator products became NaN or Inf at Lanczos step {j + 1}; check the model's "
                "weights and data for non-finite values, or use dtype=torch.float64"
            )
        alpha[j, active] = a_np[active]
        beta[j, active] = b_np[active]
        anorm = max(
            anorm, float(np.max(np.abs(a_np[active]) + b_np[active] + b_prev.cpu().numpy()[active]))
        )
        if progress is not None:
            progress(products, m * p)
        # beta below sqrt(eps) ||A||: the rest of T changes the moments by O(beta^2) = O(eps ||A||^2)
        stop = active & (b_np <= math.sqrt(eps) * max(anorm, 1e-300))
        steps[stop] = j + 1
        active &= ~stop
        if j == m - 1 or not active.any():
            break
        mask = torch.as_tensor(active, device=V.device)
        safe = torch.where(mask, b, torch.ones_like(b))
        q_prev, q = q, torch.where(mask, W / safe, torch.zeros_like(W))
        b_prev = torch.where(mask, b, torch.zeros_like(b))
        if reorth:
            basis[:, j + 1] = q.T
    return alpha, beta, steps


def slq(
    op: SymmetricOperator,
    *,
    num_probes: int = 8,
    num_steps: int = 80,
    seed: int = 0,
    sigma: float | None = None,
    log_sigma: float | None = None,
    grid_size: int = 512,
    reorthogonalize: Reorth = "auto",
    max_basis_bytes: int = 2 * 2**30,
    zero_rtol: float | None = None,
    zero_threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SpectralDensity:
    """Spectral density of ``op`` by stochastic Lanczos quadrature.

    Args:
        op: symmetric operator (only ``matmat`` is used; p columns per call).
        num_probes: Rademacher probes p (the density's statistical error falls like
            ``1/sqrt(p)``).
        num_steps: Lanczos steps m per probe (capped at n; moments up to ``2m - 1`` are exact
            per probe). Products used: at most ``p m``.
        seed: seed of the probes (drawn on the CPU).
        sigma: Gaussian width of the linear curve (default ``spread of the nodes / m``).
        log_sigma: width of the log curve in decades (default ``spread in decades / m``).
        grid_size: minimum number of grid points per curve (raised to 4 per sigma).
        reorthogonalize: ``"full"``, ``"none"`` or ``"auto"`` (full when the float64 basis
            ``m n p`` fits in ``max_basis_bytes``).
        max_basis_bytes: memory limit of the basis for ``"auto"``.
        zero_rtol: nodes with ``|theta| <= zero_rtol max|theta|`` count as zero (default
            ``10 sqrt(n) eps(dtype)``).
        zero_threshold: an absolute threshold instead of ``zero_rtol``. With fewer steps than
            distinct eigenvalues, the null space's mass sits on the smallest node (its weight
            is at least the null mass, by the Chebyshev-Markov-Stieltjes inequalities), which
            is not a rounding-level zero: it moves towards 0 as the steps grow. For a PSD
            operator whose smallest nonzero eigenvalue is known, half of it is a threshold
            that counts this node once Lanczos has separated it.
        progress: called as ``progress(products_used, budget)`` after every step.

    Raises:
        OperatorError: fewer than one probe or step, or an unknown option.
    """
    n = op.dim
    if num_probes < 1 or num_steps < 1:
        raise OperatorError(
            f"SLQ needs at least one probe and one step, got {num_probes} and {num_steps}"
        )
    if reorthogonalize not in ("auto", "full", "none"):
        raise OperatorError(f"unknown reorthogonalize {reorthogonalize!r}; use auto, full or none")
    if n < 1:
        raise OperatorError("the operator has dimension 0")
    m = min(int(num_steps), n)
    need = m * n * num_probes * 8
    if reorthogonalize == "full" and need > max_basis_bytes:
        raise OperatorError(
            f"full reorthogonalisation needs a {need / 2**30:.1f} GiB basis, over max_basis_bytes "
            f"{max_basis_bytes / 2**30:.1f} GiB; use fewer probes or steps, or reorthogonalize='none'"
        )
    reorth = reorthogonalize == "full" or (reorthogonalize == "auto" and need <= max_basis_bytes)
    start, before = time.perf_counter(), op.num_products
    V = _rademacher(n, num_probes, seed).to(op.device)
    alpha, beta, steps = _lanczos_batch(op, V, m, reorth, progress)
    nodes, weights = [], []
    for j in range(num_probes):
        s = int(steps[j])
        theta, U = _tridiagonal_eigh(alpha[:s, j], beta[: s - 1, j])
        nodes.append(_frozen(theta))
        weights.append(_frozen(U[0] ** 2 / np.sum(U[0] ** 2)))
    all_t = np.concatenate(nodes)
    all_w = np.concatenate(weights) / num_probes
    rtol = default_rank_rtol(n, op.dtype) if zero_rtol is None else float(zero_rtol)
    thr = rtol * float(np.abs(all_t).max()) if zero_threshold is None else float(zero_threshold)
    nonzero = np.abs(all_t) > thr
    linear = _curve("linear", all_t, all_w, m, sigma, grid_size)
    log = _curve("log", np.log10(np.abs(all_t[nonzero])), all_w[nonzero], m, log_sigma, grid_size)
    return SpectralDensity(
        nodes=tuple(nodes),
        weights=tuple(weights),
        linear=linear,
        log=log,
        zero_threshold=thr,
        zero_mass=float(all_w[~nonzero].sum()),
        negative_mass=float(all_w[all_t < -thr].sum()),
        dimension=n,
        num_steps=m,
        steps=tuple(int(s) for s in steps),
        reorthogonalized=reorth,
        seed=seed,
        dtype=str(op.dtype).replace("torch.", ""),
        num_products=op.num_products - before,
        seconds=time.perf_counter() - start,
        operator=op.describe(),
    )


def _tridiagonal_eigh(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    T = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
    return np.linalg.eigh(T)
