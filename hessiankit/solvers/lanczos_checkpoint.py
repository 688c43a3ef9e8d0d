"""Checkpoints of a block Lanczos iteration: the whole Krylov state as tensors, written
atomically and read back with ``weights_only=True``, so an interrupted run resumes to a
bit-identical result."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from hessiankit.errors import OperatorError
from hessiankit.solvers.krylov_basis import KrylovBasis

__all__ = ["CHECKPOINT_VERSION", "Checkpointing"]

#: Bumped whenever the state's layout changes (3: the Rayleigh-Ritz schedule).
CHECKPOINT_VERSION = 3


class Checkpointing:
    """Save and restore for :class:`~hessiankit.solvers.lanczos_iteration.LanczosIteration`
    (a mixin: the attributes below are the iteration's)."""

    n: int
    dtype: torch.dtype
    device: torch.device
    top: int
    bottom: int
    p: int
    tol: float
    seed: int
    range_start: bool
    budget: int
    max_basis_bytes: int | None
    basis_option: str
    products: int
    breakdowns: int
    restarts: int
    peak_bytes: int
    exhausted: bool
    finished: bool
    anorm: float
    _start_key: list[object] | None
    _rank_rtol: float | None
    _basis: KrylovBasis
    _T: np.ndarray
    _G: np.ndarray
    _X: torch.Tensor
    _gen: torch.Generator
    _s0: int
    _phase: str
    _next_check: int
    _last_check: tuple[int, float]
    _cache: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None

    def _config(self) -> dict[str, object]:
        return {
            "n": self.n,
            "dtype": str(self.dtype),
            "top": self.top,
            "bottom": self.bottom,
            "p": self.p,
            "tol": self.tol,
            "seed": self.seed,
            "range_start": self.range_start,
            "start": self._start_key,
            "budget": self.budget,
            "rtol": self._rank_rtol,
            "max_basis_bytes": self.max_basis_bytes,
            "basis_dtype": self.basis_option,
        }

    def state_dict(self) -> dict[str, object]:
        """The whole Krylov state as tensors and plain numbers (loads with ``weights_only``)."""
        s = self._basis.size
        return {
            "version": CHECKPOINT_VERSION,
            "config": json.dumps(self._config(), sort_keys=True),
            "Q": self._basis.Q.detach().cpu().clone(),
            "T": torch.from_numpy(self._T[:s, :s].copy()),
            "G": torch.from_numpy(self._G.copy()),
            "X": self._X.detach().cpu().clone(),
            "generator": self._gen.get_state(),
            "counters": torch.tensor(
                [
                    self.products,
                    self.breakdowns,
                    self.restarts,
                    self._s0,
                    self.peak_bytes,
                    int(self.exhausted),
                    int(self.finished),
                    int(self._phase == "start"),
                ],
                dtype=torch.int64,
            ),
            "anorm": self.anorm,
            "schedule": torch.tensor([self._next_check, *self._last_check], dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a :meth:`state_dict` written by an iteration with the same settings.

        Raises:
            OperatorError: the state was written by a run with other settings.
        """
        if state.get("version") != CHECKPOINT_VERSION or state.get("config") != json.dumps(
            self._config(), sort_keys=True
        ):
            raise OperatorError(
                "the Krylov checkpoint was written by a run with other settings (operator "
                "dimension, dtype, top/bottom, block size, tol, seed or basis budget); delete it "
                "or use another path"
            )

        def tensor(key: str) -> torch.Tensor:
            value = state.get(key)
            if not isinstance(value, torch.Tensor):
                raise OperatorError(
                    f"the Krylov checkpoint is damaged (no tensor {key!r}); delete it or use "
                    "another path"
                )
            return value

        Q, T, G, X = tensor("Q"), tensor("T"), tensor("G"), tensor("X")
        if (
            Q.dtype not in (torch.float32, torch.float64)
            or Q.dim() != 2
            or Q.shape[0] != self.n
            or Q.shape[1] > self._basis.limit_for(Q.dtype)
        ):
            raise OperatorError(
                "the Krylov checkpoint is damaged (its basis does not fit this run); delete it "
                "or use another path"
            )
        gen_state, counters = tensor("generator"), tensor("counters")
        schedule = [float(v) for v in tensor("schedule").tolist()]
        self._basis.reset(Q.to(self.device))
        s = Q.shape[1]
        self._T = np.zeros((max(16, 2 * s), max(16, 2 * s)))
        self._T[:s, :s] = T.numpy()
        self._G = G.numpy()
        self._X = X.to(self.device)
        self._gen.set_state(gen_state)
        c = [int(v) for v in counters.tolist()]
        self.products, self.breakdowns, self.restarts, self._s0, self.peak_bytes = c[:5]
        self.exhausted, self.finished = bool(c[5]), bool(c[6])
        self._phase = "start" if c[7] else "iterate"
        self.anorm = float(state["anorm"])  # type: ignore[arg-type]
        self._next_check, self._last_check = int(schedule[0]), (int(schedule[1]), schedule[2])
        self._cache = None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Resume from a file written by :meth:`save` (tensors only: ``weights_only=True``)."""
        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            raise OperatorError(
                f"cannot read the Krylov checkpoint {str(path)!r} ({type(exc).__name__}); "
                "delete it to start afresh"
            ) from None
        if not isinstance(state, dict):
            raise OperatorError(
                f"{str(path)!r} is not a Krylov checkpoint; delete it or use another path"
            )
        self.load_state_dict(state)
