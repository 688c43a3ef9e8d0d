"""Load an analysis script (``analyses/<name>.py``) as a module, for the tests of its pieces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"


def load_script(name: str, module: str | None = None) -> ModuleType:
    """``analyses/<name>.py`` as the module ``module`` (default ``name``); the scripts import
    their siblings (``_common``, ``depth``) from the analyses folder, which goes on the path."""
    if str(ANALYSES) not in sys.path:
        sys.path.insert(0, str(ANALYSES))
    spec = importlib.util.spec_from_file_location(module or name, ANALYSES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod
