"""Files that appear whole or not at all, with the permissions any other file would get.

:func:`atomic_file` writes to a hidden temporary file in the target's folder and renames it
over the target (``os.replace`` is atomic on POSIX and Windows), so an interrupted run never
leaves a partial output. The temporary file is created with mode ``0o666`` minus the umask, as
``open()`` would create the target (an existing target keeps its mode). Its name carries the
writer's process id, ``.hessiankit-<pid>-<random>.tmp``: a later write into the same folder
removes those whose process is gone (a run killed mid-write). Any ``OSError`` while writing,
a full disk for instance, becomes an :class:`~hessiankit.io.paths.OutputError`.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_atomic(d / "a.txt", "hello\\n").read_text()
    'hello\\n'
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hessiankit.io.paths import OutputError

__all__ = ["atomic_file", "clean_stale_temps", "write_atomic"]

_TEMP = re.compile(r"^\.hessiankit-(\d+)-[0-9a-f]+\.tmp$")
_LEGACY_TEMP = re.compile(r"^\.hessiankit-[\w]{8}\.json$")  # mkstemp names of older versions
_LEGACY_AGE = 3600.0  # seconds: an older temp of that kind belongs to no running writer


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is someone else's
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of killed writers from ``folder``; returns those removed."""
    import time

    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(".hessiankit-"):
            continue
        m = _TEMP.match(entry.name)
        try:
            stale = (m is not None and not _alive(int(m.group(1)))) or (
                _LEGACY_TEMP.match(entry.name) is not None
                and now - entry.stat().st_mtime > _LEGACY_AGE
            )
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file object whose contents replace ``path`` when the block ends without error.

    Raises:
        OutputError: the folder is missing or unwritable, the disk is full, or another
            ``OSError`` while writing; nothing is left behind.
    """
    target = Path(path)
    folder = target.parent
    clean_stale_temps(folder)
    tmp = folder / f".hessiankit-{os.getpid()}-{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError as exc:
        raise _error(target, exc) from None
    try:
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))  # keep an existing file's mode
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _error(target, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path) as f:
        f.write(payload)
    return Path(path)


def _error(target: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or type(exc).__name__
    return OutputError(
        f"cannot write {str(target)!r} ({reason}); free space or choose another path"
    )
