"""A pytest plugin (``-p doctest_names`` in pyproject.toml): names every doctest may use without
importing them, as numpy's examples assume ``np``: ``torch``, ``nn`` (``torch.nn``) and ``hk``
(``hessiankit``). Docstring examples start from there, so each shows what is particular to it."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, Any]) -> None:
    import torch
    from torch import nn

    import hessiankit as hk

    doctest_namespace.update(torch=torch, nn=nn, hk=hk)
