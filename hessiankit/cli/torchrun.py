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
from collections.abc import Iterator
from contextlib import contextmanager

from hessiankit.pipeline import world as _world
from hessiankit.pipeline.world import SINGLE, World, current, detect, device_for, is_primary

__all__ = ["SINGLE", "World", "current", "detect", "device_for", "is_primary", "session"]


@contextmanager
def session(args: argparse.Namespace) -> Iterator[World]:
    """Join the ``torchrun`` process group for the command (nothing without ``torchrun``).

    The group is destroyed when the command ends, whether it succeeds or raises.
    """
    with _world.session(getattr(args, "device", "auto")) as world:
        yield world
