"""What the machine offers: memory available now, and the budgets derived from it.

Solvers take explicit budgets (``max_dense_bytes``, ``max_basis_bytes``); the pipeline derives
its defaults here, so a default run fits the machine it runs on:

* dense ``eigh`` may materialise a matrix of at most half the memory available, and at most
  4 GiB (:func:`dense_budget_bytes`);
* the Lanczos basis may take at most a quarter of the device's memory
  (:func:`basis_budget_bytes`): past that it is stored in float32, then thick-restarted (a
  2M-weight block holds 16 MB per float64 vector, so 300 vectors would already take 4.8 GB).

Example:
    >>> from hessiankit.resources import available_memory_bytes, dense_budget_bytes
    >>> avail = available_memory_bytes()
    >>> avail is None or dense_budget_bytes() <= max(avail // 2, 1)
    True
"""

from __future__ import annotations

import os

import torch

__all__ = [
    "DENSE_CAP_BYTES",
    "available_memory_bytes",
    "basis_budget_bytes",
    "dense_budget_bytes",
    "total_memory_bytes",
]

#: the most a dense matrix may take, whatever the machine (its eigh costs n^3 too).
DENSE_CAP_BYTES = 4 * 2**30


def available_memory_bytes(device: torch.device | str | None = None) -> int | None:
    """Memory available now on ``device``: free GPU memory for CUDA, else the host's
    ``MemAvailable`` (``/proc/meminfo``; free physical pages elsewhere); ``None`` when unknown."""
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def dense_budget_bytes(device: torch.device | str | None = None) -> int:
    """Half the memory available now, at most :data:`DENSE_CAP_BYTES`: what dense ``eigh``
    may materialise (the float64 matrix, its eigenvectors and workspace take about 3x)."""
    avail = available_memory_bytes(device)
    return DENSE_CAP_BYTES if avail is None else min(DENSE_CAP_BYTES, avail // 2)


def total_memory_bytes(device: torch.device | str | None = None) -> int | None:
    """The device's whole memory: the GPU's for CUDA, else the host's physical memory
    (``None`` when unknown)."""
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(dev).total_memory)
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def basis_budget_bytes(device: torch.device | str | None = None) -> int | None:
    """A quarter of the device's memory, rounded down to whole MiB: the default Lanczos
    basis budget (``None``: unknown, no limit). From the total rather than what is free now,
    so the same run on the same machine gives the same result."""
    total = total_memory_bytes(device)
    return None if total is None else max(total // 4 // 2**20, 1) * 2**20
