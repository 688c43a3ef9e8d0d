"""Option types shared by the Krylov solvers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["BasisDtype", "ProgressFn", "Start"]

#: Start of a Krylov run: random, ``A`` times random (the range of a PSD operator), or auto.
Start = Literal["auto", "random", "range"]
#: Storage of the Krylov basis.
BasisDtype = Literal["auto", "float64", "float32"]
#: ``progress(products_used, budget)``.
ProgressFn = Callable[[int, int], None]
