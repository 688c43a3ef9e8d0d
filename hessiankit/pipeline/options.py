"""The pipeline's options: plain keyword values, frozen, one dataclass per concern.

Every entry point (the CLI, :func:`hessiankit.report.analyse_blocks`, the analyses and the
benchmark) states what it wants with these and calls :func:`hessiankit.pipeline.prepare` and
:func:`hessiankit.pipeline.run_blocks`.

Example:
    >>> from hessiankit.pipeline import DataOptions, OperatorOptions, SolverOptions
    >>> DataOptions(dataset="synthetic", batch_size=8).num_batches
    1
    >>> OperatorOptions(kind="loss").wrt, SolverOptions(top=3).method
    ('weights', 'auto')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hessiankit._defaults import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from hessiankit._defaults import DEFAULT_MAX_INPUT_BYTES
from hessiankit.operators.local import Kind, Wrt
from hessiankit.solvers.options import SpectrumRequest

__all__ = [
    "DataOptions",
    "ModelSource",
    "OperatorOptions",
    "SolverOptions",
]


@dataclass(frozen=True)
class ModelSource:
    """Where the network comes from.

    Attributes:
        path: a model file (``torch.save(model)``, a TorchScript archive, or a state dict
            with ``arch``); ``None`` with ``arch=None``: the built-in small VGG with BN.
        arch: ``"pkg.mod:factory"``, called to build the model (runs that package's code).
        trust_pickle: unpickle ``path`` with ``weights_only=False``, or load a TorchScript
            archive with ``torch.jit.load`` (both run code from the file).
        max_input_bytes: refuse a file that declares more contents than this (checked
            before reading).
    """

    path: str | None = None
    arch: str | None = None
    trust_pickle: bool = False
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES


@dataclass(frozen=True)
class DataOptions:
    """Which samples, in which batches.

    Attributes:
        data: a ``.pt`` file with ``{"x", "y"}`` or an ``.npz`` with arrays ``x``, ``y``.
        dataset: a named data set (``hessiankit.data.DATASETS``); with neither, Fashion-MNIST
            falling back to mnist, digits, synthetic when not installed.
        split: ``"train"`` or ``"test"``.
        input_shape: the model's input shape without the batch dimension (default: from
            the model's first layer).
        batch_size: samples per batch (default 32; with ``data``, the whole file in
            ``num_batches`` near-equal batches).
        num_batches: batches: weight and loss Hessians are their size-weighted mean, input
            Hessians their direct sum.
        seed: seed of the data subset (and of synthetic data).
        loss: ``"auto"`` (cross-entropy for integer labels, mse for float targets),
            ``"cross-entropy"`` or ``"mse"``.
        max_input_bytes: refuse a data file that declares more contents than this (checked
            before reading).
    """

    data: str | None = None
    dataset: str | None = None
    split: str = "train"
    input_shape: tuple[int, ...] | None = None
    batch_size: int | None = None
    num_batches: int = 1
    seed: int = 0
    loss: Literal["auto", "cross-entropy", "mse"] = "auto"
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES


@dataclass(frozen=True)
class OperatorOptions:
    """Which local Hessian, in which arithmetic, where.

    Attributes:
        wrt: ``"weights"`` or ``"input"``.
        kind: ``"gauss-newton"``, ``"exact"`` or ``"loss"``.
        eta: back-matching step size (``kind="exact"`` only).
        bn: batch norm with batch (``"train"``) or running (``"eval"``) statistics.
        dtype: ``"float64"`` or ``"float32"``.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    wrt: Wrt = "weights"
    kind: Kind = "gauss-newton"
    eta: float = 1.0
    bn: Literal["train", "eval"] = "train"
    dtype: Literal["float32", "float64"] = "float64"
    device: str = "auto"


@dataclass(frozen=True)
class SolverOptions(SpectrumRequest):
    """How to solve each block (see :func:`hessiankit.spectrum`).

    Attributes:
        top, bottom: largest / smallest eigenvalues per block (capped at its dimension).
        method: ``"auto"``, ``"dense"``, ``"lanczos"``, ``"power"`` or ``"separable"`` (see
            :func:`hessiankit.spectrum`).
        tol: relative tolerance of iterative methods.
        seed: seed of random start vectors.
        rank_rtol: relative null threshold (default per operator).
        dense_threshold: override of ``method="auto"``'s cost rule: materialise operators up
            to this dimension, Lanczos above (``None``: the cost rule).
        block_size: Lanczos block size (default ``max(top, bottom)``, at most 32; 1 for a
            loss Hessian's top-only request from the gradient start).
        max_products: Lanczos product budget per block (default: the solver's).
        max_dense_bytes: what dense ``eigh`` may materialise (``None``: half the memory
            available, at most 4 GiB, :func:`hessiankit.resources.dense_budget_bytes`).
        max_basis_bytes: Lanczos basis budget: an int, ``None`` for no limit, or ``"auto"``
            (a quarter of the device's memory, :func:`hessiankit.resources.basis_budget_bytes`).
        gradient_start: start Lanczos from the loss gradient for ``kind="loss"`` top-k (it lies
            mostly in the top eigenspace, so fewer products).
        all_blocks: ``"auto"`` solves several Lanczos blocks from one product of the summed
            back-matching losses when that is faster, ``"never"`` one block at a time,
            ``"always"`` whenever it applies.
        clip: clip ``top``/``bottom`` to each block's dimension (else asking for more is an
            error).
    """

    max_dense_bytes: int | None = None
    max_basis_bytes: int | None | Literal["auto"] = "auto"
    gradient_start: bool = True
    all_blocks: Literal["auto", "always", "never"] = "auto"
    clip: bool = False
