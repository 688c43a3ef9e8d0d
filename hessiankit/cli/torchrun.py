r"""The commands under ``torchrun``: one process per rank, each holding a shard of the samples.

``torchrun --nproc_per_node R -m hessiankit spectrum ...`` starts the command R times and sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each process's environment. :func:`session` then
joins the process group (``gloo`` on CPU, ``nccl`` with CUDA on device ``cuda:LOCAL_RANK``) and
leaves it at the end, on errors too. Every rank loads the same model and selects the same N
samples (same options, same ``--seed``); rank r keeps the samples ``r, r + R, r + 2R, ...``
(no padding: the shards partition the data), cut into batches of at most ``--batch-size``.
Its operator is the data-set mean over its shard,
:class:`~hessiankit.operators.dataset.DatasetOperator`, and
:class:`~hessiankit.operators.distributed.AllReduceOperator` all-reduces the products with the
weights ``N_r / N``, so every product is that of the mean over all N samples:

.. math::

    \sum_r \frac{N_r}{N} \sum_k \frac{m_{rk}}{N_r} A_{rk} = \frac{1}{N} \sum_{\text{batches}} m A .

Every rank then runs the same solver with the same seed on the same products and reaches the
same numbers; only rank 0 prints and writes files.

Every check that can fail runs on every rank on identical inputs, before any collective, so all
ranks stop together (exit status 2; rank 0 prints the one-line error). What cannot be exact over
shards is refused: batch norm in train mode (batch statistics of a shard are not those of the
data) and ``--wrt input`` (its variables are the samples themselves).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hessiankit.errors import OperatorError

__all__ = ["SINGLE", "World", "current", "detect", "is_primary", "session"]


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int
    size: int
    local_rank: int
    local_size: int

    @property
    def primary(self) -> bool:
        """Rank 0: the one that prints and writes."""
        return self.rank == 0


#: One process, no ``torchrun``.
SINGLE = World(0, 1, 0, 1)

_current: World = SINGLE


def detect(environ: Mapping[str, str] | None = None) -> World | None:
    """The ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or ``None``.

    >>> detect({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    World(rank=1, size=2, local_rank=1, local_size=2)
    >>> detect({}) is None
    True
    """
    env = os.environ if environ is None else environ
    if not all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return None
    try:
        rank, size, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
        local_size = int(env.get("LOCAL_WORLD_SIZE", size))
    except ValueError:
        raise OperatorError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers; start the command with torchrun"
        ) from None
    if not (0 <= rank < size and 0 <= local < local_size):
        raise OperatorError(
            f"RANK={rank}, LOCAL_RANK={local} do not fit WORLD_SIZE={size}; start the command "
            "with torchrun"
        )
    return World(rank, size, local, local_size)


def current() -> World:
    """The world of the running command (:data:`SINGLE` outside :func:`session`)."""
    return _current


def is_primary() -> bool:
    """Whether this process prints and writes (rank 0, or no ``torchrun``)."""
    return _current.primary


def device_for(name: str, world: World) -> torch.device:
    """``--device`` for this rank: ``cuda:LOCAL_RANK`` under ``torchrun`` with CUDA.

    Raises:
        OperatorError: no CUDA, or fewer CUDA devices than processes on this node (the same
            answer on every rank).
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise OperatorError("--device cuda but no CUDA device is available; use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cuda" or world is SINGLE:
        return torch.device(name)
    if torch.cuda.device_count() < world.local_size:
        raise OperatorError(
            f"torchrun starts {world.local_size} processes on this node but it has "
            f"{torch.cuda.device_count()} CUDA device(s); start at most that many, or use --device cpu"
        )
    return torch.device("cuda", world.local_rank)


@contextmanager
def session(args: argparse.Namespace) -> Iterator[World]:
    """Join the ``torchrun`` process group for the command (nothing without ``torchrun``).

    The group is destroyed when the command ends, whether it succeeds or raises.
    """
    global _current
    world = detect()
    if world is None:
        yield SINGLE
        return
    device = device_for(getattr(args, "device", "auto"), world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=world.rank, world_size=world.size)
    _current = world
    try:
        yield world
    finally:
        _current = SINGLE
        dist.destroy_process_group()
