"""Library error messages in the command line's words.

The library words its errors with parameter names (``trust_pickle=True``, ``arch=...``,
``max_input_bytes``, ``batch_size=``, ``kind='exact'``); :func:`to_flags` rewrites them as the
flags a command-line user types. Every rule has an example message in
``tests/cli/test_wording.py``, which checks that the library's wording holds no flag and the
command line's does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

__all__ = ["to_flags"]

Replacement = str | Callable[[re.Match[str]], str]


def _flag(match: re.Match[str]) -> str:
    """``name=`` -> ``--name`` (and ``name=value`` -> ``--name value``)."""
    flag = "--" + match.group(1).replace("_", "-")
    return flag + " " if match.group(2) else flag


def _choice(match: re.Match[str]) -> str:
    """``name='value'`` -> ``--name value``."""
    return f"--{match.group(1)} {match.group(2)}"


def _mib(match: re.Match[str]) -> str:
    """``max_basis_bytes to N`` -> ``--max-basis-mib to X``, X rounded *up* to 3 digits."""
    n = int(match.group(1))
    step = 10.0 ** (math.floor(math.log10(n / 2**20)) - 2) if n > 0 else 1.0
    k = math.ceil(n / 2**20 / step)
    while int(float(f"{k * step:.3g}") * 2**20) < n:  # the CLI truncates MiB * 2**20
        k += 1
    return f"--max-basis-mib to {k * step:.3g}"


# parameter wording -> flag wording; longest first so that no rule eats another's text
_RULES: tuple[tuple[str, Replacement], ...] = (
    (r"\btrust_pickle=True\b", "--trust-pickle"),
    (r"\btrust_torchscript=True\b", "--trust-pickle"),
    (r"\bmax_input_bytes\b", "--max-input-mib"),
    (r"\bmax_basis_bytes to (\d+)", _mib),
    (r"\barch=(?=\w)", "--arch "),
    (r"\barch=", "--arch"),
    (r"\binput_shape=(?=\w)", "--input-shape "),
    (r"\binput_shape=", "--input-shape"),
    (r"\b(batch_size|num_batches|rank_rtol|top|bottom|eta|tol)=(?=(\w))?", _flag),
    (r"\b(kind)='(gauss-newton|exact|loss)'", _choice),
    (r"\b(wrt)='(weights|input)'", _choice),
    (r"\b(bn)='(train|eval)'", _choice),
    (r"\b(device)='(auto|cpu|cuda)'", _choice),
    (r"\b(method)='(auto|lanczos|power|dense|separable)'", _choice),
    (r"\b(dataset)='([\w-]+)'", _choice),
    (r"\bdtype=torch\.(float32|float64)\b", r"--dtype \1"),
    (r"\bpass data of the right shape\b", "pass data of the right shape with --data"),
    (r"\bthe mnist or digits data set\b", "--dataset mnist|digits"),
    (r"\(eta\)", "(--eta)"),
    (r"\bcompute in float64\b", "use --dtype float64"),
)


def to_flags(message: str) -> str:
    """``message`` with library parameter names replaced by the CLI flags that set them.

    Example:
        >>> to_flags("pass trust_pickle=True, or arch=pkg.mod:factory")
        'pass --trust-pickle, or --arch pkg.mod:factory'
        >>> to_flags("use top= and bottom= at most 5, or kind='exact' with eta=0.5")
        'use --top and --bottom at most 5, or --kind exact with --eta 0.5'
    """
    for pattern, flag in _RULES:
        message = re.sub(pattern, flag, message)
    return message
