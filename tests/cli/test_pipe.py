"""A reader that closes the pipe early (``hessiankit blocks | head``) ends the command quietly."""

from __future__ import annotations

import subprocess

from cli.conftest import _env, hessiankit_command


def test_closed_stdout_gives_no_traceback_and_sigpipe_status(tmp_path) -> None:
    # The read end closes before the command writes anything, so its first line meets a broken
    # pipe (Python ignores SIGPIPE and raises BrokenPipeError instead).
    proc = subprocess.Popen(
        [*hessiankit_command(), "blocks", "--dataset", "synthetic", "--input-shape", "1,28,28"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
