r"""The processes of a run: one, or the ranks ``torchrun`` started, each holding a shard of the samples.

``torchrun --nproc_per_node R ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each
process's environment; :func:`detect` reads them and :func:`session` joins the process group
(``gloo`` on CPU, ``nccl`` with CUDA on device ``cuda:LOCAL_RANK``) and leaves it at the end,
on errors too. Inside a session :func:`current` is this process's :class:`World`, which
:func:`hessiankit.pipeline.prepare` uses to shard the samples (rank r keeps ``r, r + R, ...``)
and all-reduce every product (:class:`~hessiankit.operators.distributed.AllReduceOperator`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hessiankit.errors import OperatorError

if TYPE_CHECKING:
    import torch

__all__ = ["SINGLE", "World", "current", "detect", "device_for", "is_primary", "session"]


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
    """The device ``name`` (``auto``/``cpu``/``cuda``) means for this rank: ``cuda:LOCAL_RANK``
    under ``torchrun`` with CUDA.

    Raises:
        OperatorError: no CUDA, or fewer CUDA devices than processes on this node (the same
            answer on every rank).
    """
    import torch  # here: detect() and the parser of the command line need no torch

    if name == "cuda" and not torch.cuda.is_available():
        raise OperatorError("device='cuda' but no CUDA device is available; use device='cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cuda" or world is SINGLE:
        return torch.device(name)
    if torch.cuda.device_count() < world.local_size:
        raise OperatorError(
            f"torchrun starts {world.local_size} processes on this node but it has "
            f"{torch.cuda.device_count()} CUDA device(s); start at most that many, or use "
            "device='cpu'"
        )
    return torch.device("cuda", world.local_rank)


@contextmanager
def session(device_name: str = "auto") -> Iterator[World]:
    """Join the ``torchrun`` process group (nothing without ``torchrun``) for the duration.

    ``device_name`` is ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`device_for`). The group
    is destroyed at the end, whether the body succeeds or raises.
    """
    global _current
    world = detect()
    if world is None:
        yield SINGLE
        return
    import torch
    import torch.distributed as dist

    device = device_for(device_name, world)
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
