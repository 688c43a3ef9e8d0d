r"""The same operators under ``torch.distributed``: each rank a shard of the data, products all-reduced.

With N samples split over R ranks (rank r holds ``N_r``; its local operator is the mean over
its own samples, e.g. a :class:`~hessiankit.operators.dataset.DatasetOperator` over its shard),
the data-set operator is

.. math::

    A = \sum_r \frac{N_r}{N} A_r ,

one ``all_reduce`` (sum) of ``(N_r / N) A_r V`` per product. Every rank then holds the same
product, so a solver that runs the same code with the same ``seed`` on every rank takes the same
steps everywhere and every rank ends with the same eigenvalues; write outputs on rank 0 only.

Backends: ``gloo`` on CPU, ``nccl`` on GPU (products stay on the model's device; nothing is
copied to the host per product).

Under ``torchrun`` (a sketch of what the CLI does)::

    torch.distributed.init_process_group("gloo")  # "nccl" with CUDA
    shard = DataLoader(dataset, sampler=DistributedSampler(dataset, shuffle=False), ...)
    local = DatasetOperator(model, shard, lambda cap: LocalHessian(cap, 2))
    op = AllReduceOperator(local)
    result = spectrum(op, top=5, method="lanczos", seed=0)
    if torch.distributed.get_rank() == 0:
        write(result)

(``DistributedSampler`` pads the shards to equal length by repeating samples unless the data
set divides evenly; pass ``drop_last=False`` and an evenly divisible set, or a sampler that
does not pad, to count each sample once.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from hessiankit.errors import DataError, OperatorError
from hessiankit.operators.base import SymmetricOperator

__all__ = ["AllReduceOperator", "is_rank_zero"]


def is_rank_zero() -> bool:
    """Whether this process should write outputs (rank 0, or not distributed at all)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _num_samples(op: SymmetricOperator) -> int:
    n = op.num_samples
    if n is None:
        raise OperatorError(
            "the local operator does not say how many samples it averages; pass num_samples="
        )
    return int(n)


class AllReduceOperator(SymmetricOperator):
    """``sum_r (N_r / N) A_r`` over the ranks of a process group.

    Args:
        local: this rank's operator (a mean over its own samples).
        num_samples: ``N_r`` (default: ``local.num_samples``, a capture's batch size).
        group: process group (default: the world).

    Raises:
        OperatorError: ``torch.distributed`` is not initialised, or the ranks' operators
            differ in dimension.
        DataError: batch norm in train mode over several ranks (the result would depend on
            how the data was sharded), or no samples at all.
    """

    def __init__(
        self,
        local: SymmetricOperator,
        *,
        num_samples: int | None = None,
        group: Any = None,
    ) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise OperatorError(
                "torch.distributed is not initialised; run under torchrun and call "
                "torch.distributed.init_process_group first"
            )
        self.local = local
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if self.world_size > 1 and local.batch_dependent:
            raise DataError(
                "batch norm in train mode couples the samples of a batch, so a result over "
                "several ranks would depend on how the data was sharded; use bn='eval'"
            )
        n_local = _num_samples(local) if num_samples is None else int(num_samples)
        # One collective for both: the total count and a check that every rank has the same dim.
        info = torch.tensor(
            [n_local, local.dim, -local.dim], dtype=torch.float64, device=local.device
        )
        counts = info.clone()
        dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
        dims = info[1:].clone()
        dist.all_reduce(dims, op=dist.ReduceOp.MAX, group=group)
        if int(dims[0]) != local.dim or int(-dims[1]) != local.dim:
            raise OperatorError(
                "the ranks' operators differ in dimension; give every rank the same model and block"
            )
        self._num_samples = int(counts[0])
        self.local_samples = n_local
        if self._num_samples <= 0:
            raise DataError("no rank holds any sample; give every rank a shard of the data")
        self._weight = n_local / self._num_samples
        super().__init__(local.dim, local.dtype, local.device)
        self.is_psd = local.is_psd
        self.parts = local.parts

    @property
    def num_samples(self) -> int:
        """N, the samples of all ranks together."""
        return self._num_samples

    @property
    def batch_dependent(self) -> bool:
        return self.local.batch_dependent

    def describe_part(self, i: int) -> dict[str, object]:
        return self.local.describe_part(i)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.local.matmat(V) * self._weight
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def describe(self) -> dict[str, object]:
        info = dict(self.local.describe())
        info.update(batch_size=self.num_samples, world_size=self.world_size)
        return info
