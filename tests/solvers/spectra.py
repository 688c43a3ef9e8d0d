"""Random symmetric test matrices with chosen spectra (float64)."""

from __future__ import annotations

import numpy as np
import torch

from hessiankit.operators import MatrixOperator


def with_spectrum(eigenvalues: np.ndarray, seed: int, *, psd: bool | None = None) -> MatrixOperator:
    """``Q diag(eigenvalues) Q^T`` for a random orthogonal Q."""
    rng = np.random.default_rng(seed)
    n = len(eigenvalues)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * eigenvalues) @ Q.T
    return MatrixOperator(torch.as_tensor(0.5 * (A + A.T)), is_psd=psd)


def distinct(n: int = 300) -> np.ndarray:
    return np.geomspace(1e-3, 1e2, n)


def clustered(n: int = 300) -> np.ndarray:
    ev = np.linspace(0.1, 1.0, n)
    ev[-4:] = 5.0 + np.array([0.0, 1e-3, 2e-3, 3e-3])  # a tight cluster at the top
    ev[:3] = 1e-2 + np.array([0.0, 1e-5, 2e-5])  # and one at the bottom
    return ev


def repeated(n: int = 200) -> np.ndarray:
    ev = np.linspace(0.5, 2.0, n)
    ev[-4:] = 3.0  # the largest eigenvalue four times
    ev[:3] = 0.1  # the smallest three times
    return ev


def with_zeros(n: int = 200, nullity: int = 60) -> np.ndarray:
    ev = np.concatenate([np.zeros(nullity), np.geomspace(1e-2, 10.0, n - nullity)])
    return ev


def indefinite(n: int = 250) -> np.ndarray:
    return np.concatenate([np.linspace(-3.0, -0.01, n // 2), np.linspace(0.02, 4.0, n - n // 2)])


class Interrupt(Exception):
    """Raised by :func:`stop_after` to simulate an interrupted run."""


def stop_after(steps: int):
    """A Lanczos ``progress`` callback that raises :class:`Interrupt` at the given step."""
    calls = {"n": 0}

    def progress(used: int, budget: int) -> None:
        calls["n"] += 1
        if calls["n"] == steps:
            raise Interrupt

    return progress


def gapped(n: int = 300) -> np.ndarray:
    # Both ends separated from the bulk, so a restarted run converges in a few cycles.
    return np.concatenate([[0.05, 0.1], np.linspace(0.5, 2.0, n - 5), [4.0, 5.0, 6.0]])
