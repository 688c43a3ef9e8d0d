r"""The loss Hessian against its generalized Gauss-Newton part, on the same batch.

``nabla^2 L = G + R`` with ``G = J^T H_L J`` (:class:`~hessiankit.operators.ggn.GGNOperator`)
and the residual ``R = sum_j (dL/dz_j) nabla^2 z_j``, which weights the network's own
curvature by the output gradient. ``R`` vanishes for a network linear in the weights and shrinks
as the fit improves (``dL/dz -> 0``); it is what makes the loss Hessian indefinite. This module
puts the two side by side:

* the top-k eigenvalues of each (with residuals and converged flags from
  :func:`~hessiankit.solvers.spectrum.spectrum`), and their ratio index by index;
* the principal cosines between the two top-k eigenspaces and their overlap
  ``||U_H^T U_G||_F^2 / k`` (1: the same subspace; ``k/n``: chance), see
  :mod:`~hessiankit.diagnostics.subspace`;
* optionally both SLQ densities (:func:`~hessiankit.solvers.slq.slq`), same probes and steps:
  the negative mass of the Hessian is the part of the spectrum ``G`` cannot have.

An eigenvector is accurate to ``residual / gap`` in angle, so the overlap is meaningful when the
k-th eigenvalue is separated from the (k+1)-th; the results carry the residuals to judge that.

Example:
    >>> from hessiankit.diagnostics import compare_ggn_hessian
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 3)).double()   # linear in W: Hessian == GGN
    >>> x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    >>> r = compare_ggn_hessian(hk.capture(net, x, y), top=2, density=False, seed=0)
    >>> bool(abs(r.hessian.top.eigenvalues[0] - r.ggn.top.eigenvalues[0]) < 1e-10)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hessiankit.blocks.capture import BlockCapture
from hessiankit.blocks.split import Block
from hessiankit.operators.ggn import GGNOperator
from hessiankit.diagnostics.subspace import orthonormal_basis, overlap, principal_cosines
from hessiankit.operators.loss import LossHessian
from hessiankit.solvers.results import SpectralDensity, SpectrumResult
from hessiankit.solvers.slq import slq
from hessiankit.solvers.spectrum import Method, spectrum

__all__ = ["GGNvsHessian", "compare_ggn_hessian"]


@dataclass(frozen=True, eq=False)
class GGNvsHessian:
    """The loss Hessian and its GGN on one batch, for one block's weights or the whole model.

    Attributes:
        hessian: top-k of the loss Hessian (eigenvalues, residuals, converged; vectors kept).
        ggn: top-k of ``J^T H_L J`` (the same).
        hessian_density: SLQ density of the loss Hessian (``None`` when not asked for).
        ggn_density: SLQ density of the GGN with the same probes and steps.
        principal_cosines: cosines of the principal angles between the two top-k
            eigenspaces, descending.
        overlap: ``||U_H^T U_G||_F^2 / k``.
        chance_overlap: ``k / n``, the expected overlap of random k-dimensional subspaces.
    """

    hessian: SpectrumResult
    ggn: SpectrumResult
    hessian_density: SpectralDensity | None
    ggn_density: SpectralDensity | None
    principal_cosines: np.ndarray
    overlap: float
    chance_overlap: float

    @property
    def ratios(self) -> np.ndarray:
        """``lambda_i(Hessian) / lambda_i(GGN)`` for i = 1..k (nan where the GGN's is 0)."""
        h, g = self.hessian.top.eigenvalues, self.ggn.top.eigenvalues
        with np.errstate(divide="ignore", invalid="ignore"):
            out: np.ndarray = np.where(g != 0, h / np.where(g != 0, g, 1.0), np.nan)
        return out

    @property
    def converged(self) -> bool:
        """Whether every top eigenvalue of both operators converged."""
        return self.hessian.top.all_converged and self.ggn.top.all_converged

    def to_dict(self) -> dict[str, object]:
        """Plain numbers for JSON (no vectors; densities as their own ``to_dict``)."""
        return {
            "block": self.hessian.operator.get("block"),
            "hessian_eigenvalues": self.hessian.top.eigenvalues.tolist(),
            "hessian_residuals": self.hessian.top.residuals.tolist(),
            "hessian_converged": self.hessian.top.converged.tolist(),
            "ggn_eigenvalues": self.ggn.top.eigenvalues.tolist(),
            "ggn_residuals": self.ggn.top.residuals.tolist(),
            "ggn_converged": self.ggn.top.converged.tolist(),
            "ratios": self.ratios.tolist(),
            "principal_cosines": self.principal_cosines.tolist(),
            "overlap": self.overlap,
            "chance_overlap": self.chance_overlap,
            "hessian_density": None
            if self.hessian_density is None
            else self.hessian_density.to_dict(),
            "ggn_density": None if self.ggn_density is None else self.ggn_density.to_dict(),
        }


def _vectors(res: SpectrumResult) -> torch.Tensor:
    vecs = res.top.eigenvectors
    assert vecs is not None  # spectrum(..., keep_vectors=True) always returns them
    return orthonormal_basis(vecs)


def compare_ggn_hessian(
    capture: BlockCapture,
    block: int | str | Block = "model",
    *,
    top: int = 10,
    density: bool = True,
    num_probes: int = 4,
    num_steps: int = 60,
    method: Method = "auto",
    tol: float = 1e-6,
    seed: int = 0,
) -> GGNvsHessian:
    """Top-k spectra (and densities) of the loss Hessian and of its GGN, and their eigenspaces.

    Args:
        capture: the recorded batch, with labels.
        block: ``"model"`` (every weight, default), or a block: both operators are then the
            diagonal blocks for its weights.
        top: k, the number of largest eigenvalues of each.
        density: also compute both SLQ densities.
        num_probes, num_steps: SLQ probes and Lanczos steps per probe.
        method: the eigensolver route of :func:`~hessiankit.solvers.spectrum.spectrum`.
        tol: relative tolerance of the iterative routes.
        seed: seed of the start vectors and of the SLQ probes (the same for both operators).

    Raises:
        DataError: the capture holds no labels.
        OperatorError: ``top`` larger than the dimension, or a block without weights.
    """
    H = LossHessian(capture, block)
    G = GGNOperator(capture, block)
    res_h = spectrum(H, top=top, bottom=0, method=method, tol=tol, seed=seed, keep_vectors=True)
    res_g = spectrum(G, top=top, bottom=0, method=method, tol=tol, seed=seed, keep_vectors=True)
    Uh, Ug = _vectors(res_h), _vectors(res_g)
    dens_h = dens_g = None
    if density:
        dens_h = slq(H, num_probes=num_probes, num_steps=num_steps, seed=seed)
        dens_g = slq(G, num_probes=num_probes, num_steps=num_steps, seed=seed)
    return GGNvsHessian(
        hessian=res_h,
        ggn=res_g,
        hessian_density=dens_h,
        ggn_density=dens_g,
        principal_cosines=principal_cosines(Uh, Ug),
        overlap=overlap(Uh, Ug),
        chance_overlap=top / H.dim,
    )
