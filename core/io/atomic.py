"""Crash-safe writes: everything mtbranch writes goes to a temporary sibling and is renamed into place.

A process killed mid-write leaves the previous version intact and, at worst, a ``.tmp-*`` sibling that the
next write cleans up. Renames within one directory are atomic on POSIX.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


STALE_FILE_SECONDS = 3600  # a temporary file this old belongs to a killed writer, not a slow one


def _remove_stale_siblings(target: Path, older_than: float | None = None) -> None:
    # Leftovers of writers that were killed: safe to delete, they were never renamed into place.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        with contextlib.suppress(OSError):
            if older_than is not None and time.time() - stale.stat().st_mtime < older_than:
                continue  # maybe another process writing the same file right now (e.g. a shared cache)
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(target, older_than=STALE_FILE_SECONDS)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block exits without error.

    The old directory (if any) is moved aside and removed only after the new one is in place, so at every
    instant ``path`` is either the complete old version or the complete new one.
    """
    target = Path(path).absolute()
    if target.exists() and not overwrite:
        raise FileExistsError(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as fh:
                    os.fsync(fh.fileno())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-old-", dir=target.parent))
            os.replace(target, old / "x")  # move aside (atomic), then swap in
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
