"""Option types shared by the Krylov solvers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal, TypeVar, cast

import torch

from hessiankit.errors import OperatorError

__all__ = [
    "BasisDtype",
    "KrylovOptions",
    "Method",
    "ProgressFn",
    "SpectrumOptions",
    "SpectrumRequest",
    "Start",
    "check_request",
    "default_block_size",
    "from_keywords",
]

#: Start of a Krylov run: random, ``A`` times random (the range of a PSD operator), or auto.
Start = Literal["auto", "random", "range"]
#: Storage of the Krylov basis.
BasisDtype = Literal["auto", "float64", "float32"]
#: ``progress(products_used, budget)``.
ProgressFn = Callable[[int, int], None]
#: Route of :func:`~hessiankit.solvers.spectrum.spectrum`.
Method = Literal["auto", "lanczos", "power", "dense", "separable"]

_D = TypeVar("_D")


@dataclass(frozen=True)
class KrylovOptions:
    """What a block Lanczos run is asked for, passed down as one object (from
    :func:`~hessiankit.solvers.spectrum.spectrum` to :func:`~hessiankit.solvers.lanczos.lanczos`
    to :class:`~hessiankit.solvers.lanczos_iteration.LanczosIteration`). The fields are the
    keywords of :func:`~hessiankit.solvers.lanczos.lanczos`, with the same defaults and meaning.

    Example:
        >>> from dataclasses import replace
        >>> replace(KrylovOptions(top=3, tol=1e-8), seed=2).seed
        2
    """

    top: int = 1
    bottom: int = 0
    block_size: int = 1
    tol: float = 1e-6
    max_products: int | None = None
    seed: int = 0
    start: Start | torch.Tensor = "auto"
    rank_rtol: float | None = None
    max_basis_bytes: int | None = None
    basis_dtype: BasisDtype = "auto"


@dataclass(frozen=True)
class SpectrumRequest:
    """The settings every extreme-spectrum entry point shares: which eigenvalues, by which
    route, to what tolerance. :class:`SpectrumOptions` (one solve) and the pipeline's
    ``SolverOptions`` (every block) extend it."""

    top: int = 10
    bottom: int = 1
    method: Method = "auto"
    tol: float = 1e-6
    seed: int = 0
    rank_rtol: float | None = None
    dense_threshold: int | None = None
    block_size: int | None = None
    max_products: int | None = None


@dataclass(frozen=True)
class SpectrumOptions(SpectrumRequest):
    """What :func:`~hessiankit.solvers.spectrum.spectrum` is asked for, as one object. The
    fields are its keywords, with the same defaults and meaning; an entry point that holds
    its settings in a dataclass of its own converts them with :func:`from_keywords`.

    Example:
        >>> SpectrumOptions(top=3).method, SpectrumOptions().bottom
        ('auto', 1)
    """

    max_dense_bytes: int = 4 * 2**30
    max_iter: int = 1000
    max_basis_bytes: int | None = None
    basis_dtype: BasisDtype = "auto"


def from_keywords(cls: type[_D], source: object, **overrides: Any) -> _D:
    """An options dataclass ``cls`` from the like-named entries of ``source`` (a mapping such
    as a function's ``locals()``, or another dataclass), then ``overrides``; names ``cls``
    lacks are skipped and missing ones keep their defaults. One place maps one set of
    settings onto another, so no call site lists the fields again.

    Example:
        >>> from_keywords(KrylovOptions, SpectrumOptions(top=3, tol=1e-8), block_size=2)
        KrylovOptions(top=3, bottom=1, block_size=2, tol=1e-08, max_products=None, seed=0, \
start='auto', rank_rtol=None, max_basis_bytes=None, basis_dtype='auto')
    """
    if isinstance(source, Mapping):
        values: dict[str, Any] = dict(source)
    elif is_dataclass(source) and not isinstance(source, type):
        values = {f.name: getattr(source, f.name) for f in fields(source)}
    else:
        raise TypeError(f"from_keywords reads a mapping or a dataclass, not {type(source)!r}")
    values.update(overrides)
    names = {f.name for f in fields(cast(Any, cls))}
    return cls(**{k: v for k, v in values.items() if k in names})


def default_block_size(top: int, bottom: int, block_size: int | None = None) -> int:
    """``block_size``, or by default ``max(top, bottom)`` capped at 32: a block that size
    finds every copy of an eigenvalue repeated up to that many times.

    Example:
        >>> default_block_size(5, 1), default_block_size(50, 1), default_block_size(5, 1, 2)
        (5, 32, 2)
    """
    return block_size if block_size is not None else min(max(top, bottom), 32)


def check_request(top: int, bottom: int, n: int) -> None:
    """Refuse a request for no eigenvalue, or for more than the dimension ``n``.

    Example:
        >>> check_request(2, 1, 5)
        >>> check_request(0, 0, 5)
        Traceback (most recent call last):
        ...
        hessiankit.errors.OperatorError: ask for at least one eigenvalue (top >= 1 or bottom >= 1)
    """
    if top < 0 or bottom < 0 or top + bottom < 1:
        raise OperatorError("ask for at least one eigenvalue (top >= 1 or bottom >= 1)")
    if top > n or bottom > n:
        raise OperatorError(
            f"asked for {max(top, bottom)} eigenvalues but the operator has dimension {n}; "
            f"use top= and bottom= at most {n}"
        )
