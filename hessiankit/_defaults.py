"""Defaults shared by the library and the command line, in a module that imports nothing.

The command line builds its parser (``hessiankit --help``) from these without importing torch;
:mod:`hessiankit.data`, :mod:`hessiankit.io.sniff` and :mod:`hessiankit.pipeline.options`
re-export them under the same names.
"""

from __future__ import annotations

__all__ = ["DATASETS", "DEFAULT_BATCH_SIZE", "DEFAULT_MAX_INPUT_BYTES"]

#: Names :func:`hessiankit.data.load_dataset` knows.
DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "digits", "synthetic")

#: Samples per batch when neither a batch size nor a data file says otherwise.
DEFAULT_BATCH_SIZE = 32

#: Default cap on the bytes an input file may declare (tensor storages in a ``torch.save``
#: archive, arrays in an ``.npz``): 2 GiB, above any model or data batch this tool is for and
#: below what a decompression or allocation bomb asks for. Raise it with ``max_input_bytes``.
DEFAULT_MAX_INPUT_BYTES = 2 * 2**30
