"""Frozen result objects: every eigenvalue comes with its residual, its error bound, whether it
converged, and the precision the operator's arithmetic allows.

Meaning of the numbers, for a Ritz pair ``(theta, y)`` with ``||y|| = 1`` of a symmetric A:

``residual``
    ``||A y - theta y||``. Some eigenvalue of A lies within this distance of theta (a rigorous
    bound for symmetric matrices, up to the operator's own rounding).
``error_bound``
    ``min(residual, residual^2 / gap)`` with gap the distance to the nearest other Ritz value
    (Parlett's refined bound; an estimate once the neighbours have converged), never below
    ``precision``.
``precision``
    the floor set by the operator's arithmetic: about ``100 eps(dtype) ||A||`` for iterative
    methods; for dense ones the asymmetry of the materialised matrix plus rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
import torch

__all__ = [
    "ConditionNumber",
    "DenseResult",
    "DensityCurve",
    "Eigenpairs",
    "KrylovResult",
    "PowerResult",
    "SpectralDensity",
    "SpectrumResult",
    "TraceResult",
]


def _frozen(a: np.ndarray | list[float] | list[bool], dtype: type) -> np.ndarray:
    arr: np.ndarray = np.array(a, dtype=dtype)
    arr.setflags(write=False)
    return arr


def plain_dict(obj: object, **renames: str) -> dict[str, object]:
    """Every field of the dataclass ``obj`` for JSON, arrays as lists, under its own name or
    the one ``renames`` gives (``plain_dict(scale, index="block")``).

    Example:
        >>> plain_dict(DensityCurve("linear", np.zeros(2), np.ones(2), 0.1, 1.0))["density"]
        [1.0, 1.0]
    """
    out: dict[str, object] = {}
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        out[renames.get(f.name, f.name)] = (
            value.tolist() if isinstance(value, np.ndarray) else value
        )
    return out


#: How a spectrum was run, as its JSON reports it.
_RUN_KEYS = ("method", "method_reason", "dimension", "dtype", "seed", "tol")


@dataclass(frozen=True, eq=False)
class Eigenpairs:
    """Eigenvalue estimates at one end of the spectrum.

    Attributes:
        which: ``"top"`` (descending order) or ``"bottom"`` (ascending order).
        eigenvalues: estimates, float64.
        residuals: ``||A y - theta y||`` per estimate.
        error_bounds: bound on ``|lambda - theta|`` per estimate (see module docstring).
        converged: whether each estimate met the tolerance (or the precision floor).
        eigenvectors: ``dim x k`` float64 Ritz vectors, when asked for.
    """

    which: Literal["top", "bottom"]
    eigenvalues: np.ndarray
    residuals: np.ndarray
    error_bounds: np.ndarray
    converged: np.ndarray
    eigenvectors: torch.Tensor | None = None

    @classmethod
    def build(
        cls,
        which: Literal["top", "bottom"],
        eigenvalues: np.ndarray | list[float],
        residuals: np.ndarray | list[float],
        error_bounds: np.ndarray | list[float],
        converged: np.ndarray | list[bool],
        eigenvectors: torch.Tensor | None = None,
    ) -> Eigenpairs:
        return cls(
            which=which,
            eigenvalues=_frozen(eigenvalues, np.float64),
            residuals=_frozen(residuals, np.float64),
            error_bounds=_frozen(error_bounds, np.float64),
            converged=_frozen(converged, np.bool_),
            eigenvectors=eigenvectors,
        )

    @classmethod
    def empty(cls, which: Literal["top", "bottom"]) -> Eigenpairs:
        return cls.build(which, [], [], [], [])

    def __len__(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())


@dataclass(frozen=True)
class ConditionNumber:
    """Condition number on the range space (paper digest, section 3).

    Local Hessians are often singular (batch-norm scale direction, dead ReLUs, more weights
    than samples), so the ratio is taken over the eigenvalues above ``threshold``.

    Attributes:
        lambda_max: largest eigenvalue (algebraic).
        lambda_min: smallest eigenvalue (algebraic), ``None`` when not computed.
        lambda_min_nonzero: smallest eigenvalue with ``|lambda| > threshold`` (for PSD
            operators; for indefinite ones the smallest magnitude above threshold), ``None``
            when it could not be determined.
        rank: number of eigenvalues above threshold in magnitude, ``None`` when unknown
            (iterative methods do not see the whole spectrum).
        nullity: ``dimension - rank``, ``None`` when unknown.
        threshold: ``rtol * max |lambda|``.
        rtol: relative tolerance that defines "nonzero".
        kappa: ``max|lambda| / lambda_min_nonzero`` (on the range), ``None`` when unknown.
        kappa_plain: ``max|lambda| / min|lambda|`` when the smallest magnitude is not zero
            (a nonsingular operator), else ``None``.
        converged: whether both numbers behind ``kappa`` converged and ``kappa_error`` is
            at most 10%.
        note: why a number is missing or uncertain, empty when nothing is.
        kappa_error: first-order bound on the relative error of ``kappa`` from the error
            bounds of its two eigenvalues, ``None`` when ``kappa`` is.
    """

    lambda_max: float
    lambda_min: float | None
    lambda_min_nonzero: float | None
    rank: int | None
    nullity: int | None
    threshold: float
    rtol: float
    kappa: float | None
    kappa_plain: float | None
    converged: bool
    note: str = ""
    kappa_error: float | None = None


@dataclass(frozen=True, eq=False)
class SpectrumResult:
    """The spectrum of one operator: extreme eigenvalues and the condition number.

    Attributes:
        method: ``"dense"``, ``"lanczos"`` or ``"power"``.
        dimension: operator dimension n.
        dtype: dtype of the operator's products (the solver state is float64 regardless).
        seed: seed of the random start vectors (``None`` for dense).
        tol: requested relative tolerance.
        top: largest eigenvalues, descending.
        bottom: smallest eigenvalues, ascending (for PSD operators solved by Lanczos from the
            range: the smallest *nonzero* ones).
        condition: condition number on the range.
        num_products: operator products (columns) used.
        seconds: wall time.
        precision: absolute accuracy floor set by the operator's arithmetic.
        breakdowns: invariant subspaces met (Krylov restarts).
        exhausted: the Krylov basis spans the whole space, so every eigenvalue is known.
        eigenvalues: the whole spectrum ascending, when known (dense or exhausted).
        operator: the operator's own description (block, wrt, kind, ...).
        bottom_on_range: ``bottom`` holds the smallest eigenvalues above the null threshold
            (PSD operators) rather than the algebraically smallest.
        basis_dtype: storage of the Lanczos basis at the end (``"float32"`` after a spill),
            ``None`` for other methods.
        basis_bytes: peak bytes of the Lanczos basis (0 for other methods).
        max_basis_bytes: the Lanczos basis budget, ``None`` when unlimited.
        restarts: thick restarts the Lanczos basis budget forced.
        block_size: the Lanczos block size p, ``None`` for other methods.
        method_reason: why this method ran (``method="auto"``'s choice, see
            :func:`~hessiankit.solvers.policy.choose_method`), or that it was asked for.
    """

    method: str
    dimension: int
    dtype: str
    seed: int | None
    tol: float
    top: Eigenpairs
    bottom: Eigenpairs
    condition: ConditionNumber
    num_products: int
    seconds: float
    precision: float
    breakdowns: int = 0
    exhausted: bool = False
    eigenvalues: np.ndarray | None = None
    operator: dict[str, object] = field(default_factory=dict)
    bottom_on_range: bool = False
    basis_dtype: str | None = None
    basis_bytes: int = 0
    max_basis_bytes: int | None = None
    restarts: int = 0
    method_reason: str = ""
    block_size: int | None = None

    @property
    def converged(self) -> bool:
        """Whether every reported eigenvalue converged."""
        return self.top.all_converged and self.bottom.all_converged

    def to_dict(self) -> dict[str, object]:
        """Plain numbers for JSON (no tensors)."""
        c = self.condition
        return {
            **self.operator,
            **{k: getattr(self, k) for k in _RUN_KEYS},
            "eigenvalues": self.top.eigenvalues.tolist(),
            "residuals": self.top.residuals.tolist(),
            "error_bounds": self.top.error_bounds.tolist(),
            "converged": self.top.converged.tolist(),
            "smallest": self.bottom.eigenvalues.tolist(),
            "smallest_residuals": self.bottom.residuals.tolist(),
            "smallest_error_bounds": self.bottom.error_bounds.tolist(),
            "smallest_converged": self.bottom.converged.tolist(),
            "smallest_on_range": self.bottom_on_range,
            "lambda_max": c.lambda_max,
            "lambda_min": c.lambda_min,
            "lambda_min_nonzero": c.lambda_min_nonzero,
            "rank": c.rank,
            "nullity": c.nullity,
            "rank_threshold": c.threshold,
            "rank_rtol": c.rtol,
            "condition_number": c.kappa,
            "condition_number_plain": c.kappa_plain,
            "condition_number_error": c.kappa_error,
            "condition_converged": c.converged,
            "condition_note": c.note,
            "precision": self.precision,
            "num_products": self.num_products,
            "block_size": self.block_size,
            "breakdowns": self.breakdowns,
            "exhausted": self.exhausted,
            "basis_dtype": self.basis_dtype,
            "basis_bytes": self.basis_bytes,
            "max_basis_bytes": self.max_basis_bytes,
            "restarts": self.restarts,
            "seconds": self.seconds,
        }


@dataclass(frozen=True, eq=False)
class KrylovResult:
    """What a Lanczos run found.

    Attributes:
        top: largest Ritz values (descending) with residuals, bounds and flags.
        bottom: smallest Ritz values (ascending); from a range start on a PSD operator, the
            smallest ones above the null threshold.
        ritz_values: every Ritz value of the final basis, ascending.
        num_products: operator products used.
        basis_size: Krylov basis dimension reached.
        breakdowns: directions replaced after an invariant subspace was found.
        exhausted: the basis spans the whole space; ``ritz_values`` is the exact spectrum.
        anorm: estimate of ``||A||`` (largest |Ritz value|).
        precision: accuracy floor from the operator's dtype and the basis storage's
            (``100 eps ||A||`` with the coarser eps of the two).
        null_threshold: eigenvalues at most this large in magnitude count as zero.
        rank_rtol: the relative null threshold, ``null_threshold / anorm``.
        range_start: whether the run started in the operator's range.
        restarts: thick restarts made to stay within ``max_basis_bytes``.
        basis_bytes: peak bytes the Krylov basis took.
        max_basis_bytes: the basis budget (``None``: unlimited).
        basis_dtype: storage of the basis at the end (``"float32"`` after a spill).
        rank_rtol: the relative null threshold used.
        budget: the product budget of the run.
        block_size: p, vectors per block.
    """

    top: Eigenpairs
    bottom: Eigenpairs
    ritz_values: np.ndarray
    num_products: int
    basis_size: int
    breakdowns: int
    exhausted: bool
    anorm: float
    precision: float
    null_threshold: float
    range_start: bool
    restarts: int = 0
    basis_bytes: int = 0
    max_basis_bytes: int | None = None
    basis_dtype: str = "float64"
    rank_rtol: float = 0.0
    budget: int = 0
    block_size: int = 1


@dataclass(frozen=True, eq=False)
class DenseResult:
    """Every eigenvalue (ascending), eigenvectors, residuals and the precision floor."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residuals: torch.Tensor
    precision: float
    asymmetry: float
    num_products: int


@dataclass(frozen=True, eq=False)
class PowerResult:
    """Eigenpairs found by power iteration, the products used and the shift applied."""

    pairs: Eigenpairs
    num_products: int
    shift: float
    anorm: float
    precision: float


@dataclass(frozen=True, eq=False)
class DensityCurve:
    """A smoothed density on a grid.

    Attributes:
        scale: ``"linear"`` (x is lambda) or ``"log"`` (x is ``log10 |lambda|``).
        grid: equally spaced x values.
        density: the smoothed density at each grid point.
        sigma: Gaussian kernel width, in the units of ``grid``.
        mass: total weight of the nodes smoothed onto this curve (1 for ``linear``,
            ``1 - zero_mass`` for ``log``); the curve integrates to it.
    """

    scale: Literal["linear", "log"]
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    mass: float

    def to_dict(self) -> dict[str, object]:
        return plain_dict(self)


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """Result of :func:`slq`.

    Attributes:
        nodes: per probe, the Ritz values (quadrature nodes), ascending.
        weights: per probe, the quadrature weights (sum to one).
        linear: density of lambda.
        log: density of ``log10 |lambda|`` over the nonzero nodes.
        zero_threshold: nodes with ``|theta|`` at most this count as zero.
        zero_mass: average weight of zero nodes (estimates ``nullity / n``).
        negative_mass: average weight of negative nodes.
        dimension: n.
        num_steps: Lanczos steps asked for (capped at n).
        steps: Lanczos steps each probe ran (fewer after an invariant subspace).
        reorthogonalized: whether full reorthogonalisation was used.
        seed: seed of the Rademacher probes.
        dtype: dtype of the operator's products.
        num_products: operator products used.
        seconds: wall time.
        operator: the operator's own description (block, wrt, kind, ...).
    """

    nodes: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]
    linear: DensityCurve
    log: DensityCurve
    zero_threshold: float
    zero_mass: float
    negative_mass: float
    dimension: int
    num_steps: int
    steps: tuple[int, ...]
    reorthogonalized: bool
    seed: int
    dtype: str
    num_products: int
    seconds: float
    operator: dict[str, object] = field(default_factory=dict)

    @property
    def num_probes(self) -> int:
        return len(self.nodes)

    @property
    def lambda_min(self) -> float:
        """Smallest Ritz value over probes (an upper bound on the smallest eigenvalue)."""
        return float(min(t[0] for t in self.nodes))

    @property
    def lambda_max(self) -> float:
        """Largest Ritz value over probes (a lower bound on the largest eigenvalue)."""
        return float(max(t[-1] for t in self.nodes))

    def moment(self, k: int) -> tuple[float, float]:
        """Estimate of ``tr(A^k) / n`` and its standard error over probes.

        Exact per probe (``v^T A^k v``) when ``k <= 2 * steps - 1`` (or the probe's Krylov space
        is invariant); the standard error is ``sd / sqrt(p)`` (0 with one probe).
        """
        per = np.array([float(np.sum(w * t**k)) for t, w in zip(self.nodes, self.weights)])
        se = float(per.std(ddof=1) / math.sqrt(per.size)) if per.size > 1 else 0.0
        return float(per.mean()), se

    @property
    def trace(self) -> float:
        """SLQ estimate of ``tr(A)`` (n times the first moment)."""
        return self.dimension * self.moment(1)[0]

    def to_dict(self) -> dict[str, object]:
        """Plain numbers for JSON."""
        m1, s1 = self.moment(1)
        m2, s2 = self.moment(2)
        return {
            **self.operator,
            "method": "slq",
            "dimension": self.dimension,
            "num_probes": self.num_probes,
            "num_steps": self.num_steps,
            "steps": list(self.steps),
            "reorthogonalized": self.reorthogonalized,
            "seed": self.seed,
            "dtype": self.dtype,
            "num_products": self.num_products,
            "seconds": self.seconds,
            "mean_eigenvalue": m1,
            "mean_eigenvalue_std_error": s1,
            "mean_squared_eigenvalue": m2,
            "mean_squared_eigenvalue_std_error": s2,
            "zero_threshold": self.zero_threshold,
            "zero_mass": self.zero_mass,
            "negative_mass": self.negative_mass,
            "nodes": [t.tolist() for t in self.nodes],
            "weights": [w.tolist() for w in self.weights],
            "linear": self.linear.to_dict(),
            "log": self.log.to_dict(),
        }


@dataclass(frozen=True)
class TraceResult:
    """A trace estimate with its standard error.

    Attributes:
        trace: the estimate.
        std_error: standard error of the estimate (0 when it is exact).
        method: ``"hutchinson"`` or ``"hutch++"``.
        num_products: operator products used.
        num_probes: random probe vectors drawn.
        dimension: operator dimension n.
        seed: seed of the probes.
        seconds: wall time.
    """

    trace: float
    std_error: float
    method: str
    num_products: int
    num_probes: int
    dimension: int
    seed: int
    seconds: float

    @property
    def mean_eigenvalue(self) -> float:
        """``trace / n``, the scalar that best replaces the operator by a multiple of I."""
        return self.trace / self.dimension

    def to_dict(self) -> dict[str, object]:
        return {
            "trace": self.trace,
            "trace_std_error": self.std_error,
            "trace_method": self.method,
            "trace_products": self.num_products,
            "trace_probes": self.num_probes,
        }
