"""Option types shared by the Krylov solvers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from hessiankit.errors import OperatorError

__all__ = ["BasisDtype", "KrylovOptions", "ProgressFn", "Start", "check_request"]

#: Start of a Krylov run: random, ``A`` times random (the range of a PSD operator), or auto.
Start = Literal["auto", "random", "range"]
#: Storage of the Krylov basis.
BasisDtype = Literal["auto", "float64", "float32"]
#: ``progress(products_used, budget)``.
ProgressFn = Callable[[int, int], None]


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
