"""Errors meant for users.

Every error that a user can fix derives from :class:`HessiankitError`. Its message is one line
that names the problem and the fix; the command line prints it without a traceback and exits
with status 2. Anything else that escapes is an internal error and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "BlockError",
    "DataError",
    "HessiankitError",
    "ModelLoadError",
    "NumericalError",
    "OperatorError",
]


class HessiankitError(Exception):
    """Base class of every error a user can fix; the message says how."""


class BlockError(HessiankitError, LookupError):
    """A model cannot be split into blocks, or a block does not exist."""


class OperatorError(HessiankitError, ValueError):
    """An operator cannot be built with the options given."""


class DataError(HessiankitError, ValueError):
    """Data missing, of the wrong shape, or not finite."""


class ModelLoadError(HessiankitError, OSError):
    """A model file cannot be loaded safely."""


class NumericalError(HessiankitError, ArithmeticError):
    """NaN or Inf met in weights, activations or products."""
