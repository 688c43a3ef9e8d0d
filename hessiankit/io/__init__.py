"""Input and output that must be safe with a file a stranger sent: model loading, JSON writing.

* :func:`read_torch_file` - ``torch.load`` that never runs a pickle's code unless asked;
* :func:`load_model` - a model from ``torch.save(model)``, a TorchScript archive, or a state
  dict plus an architecture factory (``package.module:factory``);
* :func:`write_json_atomic` / :func:`check_writable` - JSON that appears whole or not at all;
* :func:`write_atomic` / :func:`atomic_file` - any output file, whole or not at all;
* :func:`check_output` - an output path checked before computing: writable, a file name,
  never one of the inputs.
"""

from __future__ import annotations

from hessiankit.io.atomic import atomic_file, clean_stale_temps, write_atomic
from hessiankit.io.jsonio import (
    OutputError,
    check_writable,
    to_jsonable,
    write_json_atomic,
)
from hessiankit.io.model import (
    LoadedModel,
    is_torchscript,
    load_arch,
    load_model,
    unscript,
)
from hessiankit.io.paths import check_output, same_file
from hessiankit.io.sniff import DEFAULT_MAX_INPUT_BYTES
from hessiankit.io.torchfile import (
    TORCH_NN_CLASSES,
    blocked_globals,
    is_payload,
    read_torch_file,
)

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "TORCH_NN_CLASSES",
    "LoadedModel",
    "OutputError",
    "atomic_file",
    "blocked_globals",
    "check_output",
    "check_writable",
    "clean_stale_temps",
    "is_payload",
    "is_torchscript",
    "load_arch",
    "load_model",
    "read_torch_file",
    "same_file",
    "to_jsonable",
    "unscript",
    "write_atomic",
    "write_json_atomic",
]
