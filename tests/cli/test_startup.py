"""Start-up imports only what it needs (issue 16): ``hessiankit --help`` loads no torch, SciPy,
matplotlib or seaborn; ``import hessiankit`` loads none of them either, and its public names
(imported on first use) are the objects their modules define. Properties of ``sys.modules`` in a
fresh interpreter, never times."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from hessiankit.cli import COMMANDS

# Heavy packages a parser, or a run that draws nothing, has no use for.
PLOTTING = ("matplotlib", "seaborn")
HEAVY = ("torch", "numpy", "scipy", *PLOTTING)


def _loaded(code: str) -> list[str]:
    """Top-level packages of ``HEAVY`` (and ``scipy.sparse``) loaded after running ``code``
    in a fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        names = [m for m in sys.modules if m.split(".")[0] in HEAVY or m == "scipy.sparse"]
        print("LOADED=" + json.dumps(sorted({m if m == "scipy.sparse" else m.split(".")[0]
                                             for m in names})))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    [line] = [x for x in out.splitlines() if x.startswith("LOADED=")]
    loaded: list[str] = json.loads(line[len("LOADED=") :])
    return loaded


@pytest.mark.parametrize("argv", [["--help"], ["--version"], *([c, "--help"] for c in COMMANDS)])
def test_help_and_every_parser_import_no_heavy_package(argv: list[str]) -> None:
    code = f"""
        import contextlib, io
        from hessiankit.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as text:
            try:
                main({argv!r})
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        assert "usage" in text.getvalue() or "hessiankit" in text.getvalue()
        """
    assert _loaded(code) == []


def test_import_hessiankit_loads_no_heavy_package() -> None:
    assert _loaded("import hessiankit") == []


def test_public_names_resolve_to_their_modules_objects_without_plotting_or_scipy() -> None:
    code = """
        import importlib
        import hessiankit as hk
        assert set(hk.__all__) <= set(dir(hk)), set(hk.__all__) - set(dir(hk))
        for name in hk.__all__:
            value = getattr(hk, name)
            assert value is not None, name
        # the objects the defining modules hold (the independent reference)
        assert hk.spectrum is importlib.import_module("hessiankit.solvers").spectrum
        assert hk.vgg is importlib.import_module("hessiankit.models").vgg
        assert hk.LossHessian is importlib.import_module("hessiankit.operators").LossHessian
        assert hk.analytic is importlib.import_module("hessiankit.analytic")
        assert hk.operators is importlib.import_module("hessiankit.operators")
        from hessiankit import HessiankitError, spectrum
        assert spectrum is hk.spectrum and HessiankitError is hk.errors.HessiankitError
        try:
            hk.no_such_name
        except AttributeError:
            pass
        else:
            raise AssertionError("hk.no_such_name resolved")
        """
    loaded = _loaded(code)
    assert "torch" in loaded  # the names were really imported
    assert not set(loaded) & {*PLOTTING, "scipy", "scipy.sparse"}


def test_pipeline_prepare_stays_the_function_after_its_submodule_is_imported() -> None:
    # `prepare` names both a submodule and the function it defines; importing the submodule
    # first (as the rest of the pipeline does) must not hide the function.
    code = """
        import importlib, types
        mod = importlib.import_module("hessiankit.pipeline.prepare")
        import hessiankit.pipeline as p
        from hessiankit.pipeline import prepare
        assert not isinstance(prepare, types.ModuleType)
        assert prepare is mod.prepare is p.prepare
        assert p.run_blocks is importlib.import_module("hessiankit.pipeline.run").run_blocks
        assert set(p.__all__) <= set(dir(p))
        """
    assert "torch" in _loaded(code)


def test_a_spectrum_run_that_draws_nothing_loads_no_plotting_nor_scipy() -> None:
    code = """
        from hessiankit.cli import main
        argv = ["spectrum", "--dataset", "synthetic", "--batch-size", "8", "--block", "4",
                "--top", "2", "--bottom", "1", "--quiet"]
        assert main(argv) == 0
        """
    loaded = _loaded(code)
    assert "torch" in loaded
    assert not set(loaded) & {*PLOTTING, "scipy", "scipy.sparse"}
