"""Library messages are worded with parameter names; the command line words them as flags.

Each example below is a real message, raised (or noted) by calling the library the way a user
would; none is copied text. For each: the library's wording holds no ``--`` flag, and
:func:`hessiankit.cli.wording.to_flags` turns it into the flag a command-line user types. Every
rule of ``_RULES`` has at least one example.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hessiankit as hk
from hessiankit.cli.wording import _RULES, to_flags
from hessiankit.data import load_dataset, sources
from hessiankit.data.shape import fit_to_shape
from hessiankit.errors import HessiankitError
from hessiankit.io.model import load_arch, load_model
from hessiankit.operators import MatrixOperator
from hessiankit.pipeline import (
    DataOptions,
    ModelSource,
    OperatorOptions,
    World,
    load_batches,
    open_model,
    prepare,
)
from hessiankit.pipeline.prepare import check_shards
from hessiankit.pipeline.world import device_for
from hessiankit.solvers.condition import floor_cause
from hessiankit.solvers.diagnosis import unconverged_cause
from hessiankit.solvers.results import Eigenpairs
from hessiankit.solvers.slq import slq

CPU = torch.device("cpu")


def _raised(fn: Callable[[], object]) -> str:
    with pytest.raises(HessiankitError) as info:
        fn()
    return str(info.value)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wording")
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double(), d / "m.pt")
    torch.save(
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double(), d / "bn.pt"
    )
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.save({"x": x, "y": torch.randint(0, 2, (5,))}, d / "d.pt")
    torch.save({"x": x}, d / "x.pt")
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(3, 2))), d / "ts.pt")
    return d


def _batches(files: Path, model: str = "m.pt", **data: object):
    info = open_model(ModelSource(path=str(files / model)), CPU)
    return info, load_batches(DataOptions(data=str(files / "d.pt"), **data), info, CPU)  # type: ignore[arg-type]


def _shards(files: Path, model: str, batch_size: int | None, **op: object) -> str:
    info, data = _batches(files, model, batch_size=batch_size)
    split = hk.split_blocks(info.model)
    return _raised(lambda: check_shards(OperatorOptions(**op), split, data, World(0, 8, 0, 8)))  # type: ignore[arg-type]


def _fallback_note(files: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HESSIANKIT_FASHION_MNIST", str(files / "nowhere"))
    sources._fashion_mnist.cache_clear()
    try:
        info = open_model(ModelSource(), CPU)
        notes = load_batches(DataOptions(batch_size=2), info, CPU).notes
    finally:
        sources._fashion_mnist.cache_clear()
    return next(n for n in notes if n.startswith("using "))


def _fashion_missing(files: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HESSIANKIT_FASHION_MNIST", str(files / "nowhere"))
    sources._fashion_mnist.cache_clear()
    try:
        return _raised(lambda: load_dataset("fashion-mnist", num_samples=2))
    finally:
        sources._fashion_mnist.cache_clear()


def _unconverged(spent: bool) -> str:
    e = Eigenpairs.build("top", [1.0], [1e-3], [1e-3], [False])
    return unconverged_cause(
        e,
        Eigenpairs.empty("bottom"),
        tol=1e-6,
        precision=1e-14,
        low_precision=False,
        products=300 if spent else 10,
        budget=300,
        dim=5000,
        block_size=1,
        start_cost=0,
    )


def _basis_budget() -> str:
    op = MatrixOperator(torch.diag(torch.arange(1.0, 201.0, dtype=torch.float64)))
    return _raised(lambda: hk.spectrum(op, top=3, bottom=0, method="lanczos", max_basis_bytes=4000))


def _eta_note(files: Path) -> str:
    prep = prepare(
        ModelSource(path=str(files / "m.pt")),
        DataOptions(data=str(files / "d.pt")),
        OperatorOptions(eta=0.5),
    )
    return next(n for n in prep.notes if "eta" in n)


# name -> (how the library words it, what the command line must say)
EXAMPLES: dict[str, tuple[Callable[[Path, pytest.MonkeyPatch], str], tuple[str, ...]]] = {
    "trust and arch together": (
        lambda f, _: _raised(
            lambda: open_model(
                ModelSource(path=str(f / "m.pt"), arch="a:b", trust_pickle=True), CPU
            )
        ),
        ("give either --trust-pickle or --arch, not both",),
    ),
    "torchscript refused": (
        lambda f, _: _raised(lambda: load_model(f / "ts.pt")),
        ("pass --trust-pickle only if",),
    ),
    "input size cap": (
        lambda f, _: _raised(lambda: load_model(f / "m.pt", max_input_bytes=10)),
        ("--max-input-mib",),
    ),
    "arch spec": (
        lambda f, _: _raised(lambda: load_arch("nocolon", None)),
        ("--arch nocolon is not of the form",),
    ),
    "arch import": (
        lambda f, _: _raised(lambda: load_arch("no_such_module_hk:f", None)),
        ("for --arch (",),
    ),
    "synthetic shape": (
        lambda f, _: _raised(lambda: load_dataset("synthetic", num_samples=2)),
        ("give --input-shape C,H,W",),
    ),
    "input shape disagrees": (
        lambda f, _: _raised(lambda: _batches(f, input_shape=(4,))),
        ("but --input-shape says (4,)",),
    ),
    "too few samples": (
        lambda f, _: _raised(lambda: _batches(f, batch_size=2, num_batches=9)),
        ("too few for --num-batches 9 of --batch-size 2",),
    ),
    "too few for processes": (
        lambda f, _: _shards(f, "m.pt", 2, bn="eval"),
        ("(--batch-size, --num-batches)",),
    ),
    "inputs over processes": (
        lambda f, _: _shards(f, "m.pt", None, wrt="input"),
        ("--wrt input has one variable per sample",),
    ),
    "batch norm over processes": (
        lambda f, _: _shards(f, "bn.pt", None, bn="train"),
        ("use --bn eval",),
    ),
    "too many eigenvalues": (
        lambda f, _: _raised(lambda: hk.spectrum(MatrixOperator(torch.eye(3)), top=5)),
        ("use --top and --bottom at most 3",),
    ),
    "exact needs labels": (
        lambda f, _: _raised(
            lambda: prepare(
                ModelSource(path=str(f / "m.pt")),
                DataOptions(data=str(f / "x.pt")),
                OperatorOptions(kind="exact"),
            )
        ),
        ("--kind exact needs labels", "or use --kind gauss-newton"),
    ),
    "eta ignored": (lambda f, _: _eta_note(f), ("--eta only changes --kind exact",)),
    "no weights": (
        lambda f, _: _raised(
            lambda: hk.LocalHessian(hk.capture(nn.Sequential(nn.Tanh()), torch.randn(2, 3)), 1)
        ),
        ("use --wrt input",),
    ),
    "budget ran out": (lambda f, _: _unconverged(True), ("use --method dense",)),
    "did not converge": (lambda f, _: _unconverged(False), ("loosen --tol",)),
    "rank tolerance": (
        lambda f, _: floor_cause(1e-15, 1e-14, False),
        ("a larger --rank-rtol",),
    ),
    "float32 floor": (lambda f, _: floor_cause(1e-7, 1e-6, True), ("use --dtype float64",)),
    "nan product": (
        lambda f, _: _raised(
            lambda: MatrixOperator(torch.full((2, 2), float("nan"))).matvec(torch.ones(2))
        ),
        ("the options (--eta)", "use --dtype float64"),
    ),
    "slq overflow": (
        lambda f, _: _raised(
            lambda: slq(
                MatrixOperator(
                    torch.diag(torch.tensor([1e200, 3e199, 1.0, 2.0], dtype=torch.float64))
                ),
                num_probes=2,
                num_steps=3,
            )
        ),
        ("became NaN or Inf at Lanczos step", "or use --dtype float64"),
    ),
    "basis budget": (lambda f, _: _basis_budget(), ("raise --max-basis-mib to ",)),
    "image shape": (
        lambda f, _: _raised(lambda: fit_to_shape(torch.zeros(2, 1, 4, 4), (5,))),
        ("pass data of the right shape with --data",),
    ),
    "fashion-mnist missing": (
        _fashion_missing,
        ("--dataset mnist|digits",),
    ),
    "data set fallback": (_fallback_note, ("using --dataset ",)),
}
if not torch.cuda.is_available():
    EXAMPLES["no cuda"] = (
        lambda f, _: _raised(lambda: device_for("cuda", World(0, 1, 0, 1))),
        ("--device cuda but no CUDA device is available; use --device cpu",),
    )


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_library_words_parameters_and_the_cli_words_flags(
    name: str, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    produce, flags = EXAMPLES[name]
    message = produce(files, monkeypatch)
    assert "--" not in message, message
    cli = to_flags(message)
    for flag in flags:
        assert flag in cli, (message, cli)


def test_every_rule_has_an_example(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [produce(files, monkeypatch) for produce, _ in EXAMPLES.values()]
    for pattern, flag in _RULES:
        if pattern.startswith(r"\b(device)") and torch.cuda.is_available():
            continue  # its example needs a machine without CUDA
        hits = [m for m in messages if re.search(pattern, m)]
        assert hits, f"no example message for the rule {pattern!r}"
        for m in hits:  # the rule on its own puts a flag where the library has none
            assert "--" not in m and "--" in re.sub(pattern, flag, m), (pattern, m)


def test_the_basis_budget_in_mib_is_enough() -> None:
    """The MiB the CLI suggests, read back as the CLI reads it, covers the bytes asked for."""
    for need in (1, 999, 6815, 2**20, 2**20 + 1, 123_456_789, 5 * 2**30 + 7):
        said = to_flags(f"raise max_basis_bytes to {need} or ask for fewer eigenvalues")
        mib = float(said.split("--max-basis-mib to ")[1].split()[0])
        assert int(mib * 2**20) >= need, (need, said)
        assert mib <= need / 2**20 * 1.01 + 1e-6  # and not much more
    assert np.isclose(float(to_flags("max_basis_bytes to 6815").split()[-1]), 0.0065)
