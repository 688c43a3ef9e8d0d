"""Library error messages in the command line's words.

The library words its errors with parameter names (``trust_pickle=True``, ``arch=...``,
``max_input_bytes``); :func:`to_flags` rewrites them as the flags a command-line user types.
"""

from __future__ import annotations

import re

__all__ = ["to_flags"]

# parameter wording -> flag wording; longest first so that no rule eats another's text
_RULES: tuple[tuple[str, str], ...] = (
    (r"\btrust_pickle=True\b", "--trust-pickle"),
    (r"\btrust_torchscript=True\b", "--trust-pickle"),
    (r"\bmax_input_bytes\b", "--max-input-mib"),
    (r"\barch=(?=\w)", "--arch "),
    (r"\barch=", "--arch"),
    (r"\binput_shape=(?=\w)", "--input-shape "),
    (r"\binput_shape=", "--input-shape"),
    (r"\bpass data of the right shape\b", "pass data of the right shape with --data"),
    (r"\bthe mnist or digits data set\b", "--dataset mnist|digits"),
    (r"\(eta\)", "(--eta)"),
    (r"\bcompute in float64\b", "use --dtype float64"),
    (r"\buse top/bottom\b", "use --top/--bottom"),
)


def to_flags(message: str) -> str:
    """``message`` with library parameter names replaced by the CLI flags that set them.

    Example:
        >>> to_flags("pass trust_pickle=True, or arch=pkg.mod:factory")
        'pass --trust-pickle, or --arch pkg.mod:factory'
    """
    for pattern, flag in _RULES:
        message = re.sub(pattern, flag, message)
    return message
