"""Crash-safe writes: everything mtbranch writes goes to a temporary sibling and is renamed into place.

A process killed mid-write leaves the previous version intact and, at worst, a ``.NAME.tmp-*`` sibling.
Temporary and moved-aside siblings carry their writer's host and pid
(``.NAME.tmp-<host>-<pid>-<random>``, ``.NAME.old-<host>-<pid>-<random>``): a later write removes one only
when it is provably abandoned (its writer's pid is gone on this host, or it is over a day old), never by its
name alone, so two processes writing the same output never delete each other's work. The final swap (move
the old version aside, rename the new one in, restore the old one if that fails) runs under an exclusive
``flock`` on the parent directory, so concurrent writers of one path take turns there: the result is always
one whole version. Renames within one directory are atomic on POSIX.

Written files and directories follow the umask, as ``cp`` and ``pip`` do (0644/0755 under umask 022).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mtbranch.errors import MtbranchError, os_error

STALE_SECONDS = 24 * 3600  # a temporary this old belongs to a killed writer even if its pid was reused
LEGACY_STALE_SECONDS = 3600  # ``.NAME.tmp-*`` without an owner (older mtbranch): removed after an hour


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (/proc on Linux)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner_tag() -> str:
    return f"{_host_tag()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _abandoned(path: Path, prefix: str) -> bool:
    """Whether a ``prefix<host>-<pid>-<random>`` sibling was left by a writer that is gone."""
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:
        return False
    parts = path.name[len(prefix):].split("-")
    if len(parts) < 3 or len(parts[0]) != 8 or not parts[1].isdigit():  # no owner recorded: age only
        return age > LEGACY_STALE_SECONDS
    if age > STALE_SECONDS:
        return True
    host, pid = parts[0], int(parts[1])
    if host != _host_tag():
        return False  # another machine's writer: cannot tell, wait for the age limit
    return pid != os.getpid() and not _pid_alive(pid)


def _remove_abandoned_siblings(target: Path) -> None:
    for kind in ("tmp", "old"):
        prefix = f".{target.name}.{kind}-"
        for stale in target.parent.glob(f"{glob_escape(prefix)}*"):
            if _abandoned(stale, prefix):
                with contextlib.suppress(OSError):
                    if stale.is_dir() and not stale.is_symlink():
                        shutil.rmtree(stale, ignore_errors=True)
                    else:
                        stale.unlink(missing_ok=True)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_held: dict[str, list[int]] = {}  # directory (real path) -> [thread holding its flock, depth]
_held_guard = threading.Lock()


@contextlib.contextmanager
def _parent_lock(parent: Path) -> Iterator[None]:
    """An exclusive flock on the directory: writers of siblings in it swap one at a time.

    Re-entrant in the thread that holds it (a read-modify-write holding it across the whole update still
    swaps its output); another thread or process waits for it.
    """
    key, me = os.path.realpath(parent), threading.get_ident()
    with _held_guard:
        mine = _held.get(key)
        if mine is not None and mine[0] == me:
            mine[1] += 1
    if mine is not None and mine[0] == me:
        try:
            yield
        finally:
            with _held_guard:
                mine[1] -= 1
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: renames are still atomic, only the turn-taking is lost
        yield
        return
    fd = os.open(parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock (some NFS): renames stay atomic
            fcntl.flock(fd, fcntl.LOCK_EX)
        with _held_guard:
            _held[key] = [me, 1]
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def exclusive_update(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock that every atomic replacement of ``path`` takes, for a whole read-modify-write.

    A second updater of the same path (another process or thread) waits until the first has written, then
    reads what it wrote: no change is lost. The lock is the flock on the parent directory
    (:func:`atomic_directory` swaps under it), so the output's own directory may be replaced meanwhile.
    """
    from mtbranch.io.guard import output_path

    parent = output_path(path).parent
    if not parent.is_dir():
        raise MtbranchError("the output's directory does not exist", path=str(parent))
    with _parent_lock(parent):
        yield


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    from mtbranch.io.guard import output_path

    target = output_path(path)  # ~ expanded as in every output path
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_siblings(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-{_owner_tag()}-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600: follow the umask instead
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a failed write() names no file: say which (disk full, quota...)
            raise os_error(exc, f"writing {target}", str(target)) from None
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, overwrite: bool = True, kind: str | None = None,
                     inputs: Sequence[str | os.PathLike[str]] = ()) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block exits without error.

    The old directory (if any) is moved aside and removed only after the new one is in place, so at every
    instant ``path`` is either the complete old version or the complete new one. With ``kind``, ``path``
    must pass :func:`mtbranch.io.guard.check_output` first (it may replace only an earlier artifact of
    that kind, or an empty directory, and must not overlap ``inputs``). Disk full, a read-only directory
    or a permission denied is a :class:`~mtbranch.errors.FileAccessError` naming the path.
    """
    from mtbranch.io.guard import check_output, output_path

    target = output_path(path)  # ~ expanded as in every output path
    if kind is not None:
        check_output(target, kind, inputs=inputs)
    if target.exists() and not overwrite:
        raise FileExistsError(target)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_siblings(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{_owner_tag()}-", dir=target.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700: a service user could not read it
        yield tmp
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as fh:
                    os.fsync(fh.fileno())
        old: Path | None = None
        with _parent_lock(target.parent):
            if os.path.lexists(target):
                old = target.parent / f".{target.name}.old-{_owner_tag()}-{secrets.token_hex(4)}"
                os.rename(target, old)  # move aside (atomic), then swap in
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(old, target)  # put the previous version back
                    raise
            else:
                os.rename(tmp, target)
            tmp = None
            _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
    except OSError as exc:
        raise os_error(exc, f"writing {target}", str(target)) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
