"""File helpers shared by validation, loading, composition and the SDK (no torch)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mtbranch.errors import FileAccessError


class NotRegularFileError(FileAccessError):
    """A path mtbranch reads is a FIFO, device, socket or directory: reading it could block forever.

    A :class:`~mtbranch.errors.FileAccessError` (the CLI prints it, exit 1) and so an :class:`OSError` too."""

    def __init__(self, path: str | os.PathLike[str], mode: int) -> None:
        what = _kind(mode)
        message = f"is {what}, not a regular file" if what != "not a regular file" else what
        super().__init__(message, path=str(path), errno=errno.EISDIR if stat.S_ISDIR(mode) else None,
                         hint="put the regular file there (a named pipe, device or directory is never read)")
        self.strerror, self.filename = message, str(path)

    def __str__(self) -> str:  # as an OSError reads: the path and the reason (the hint is in render())
        return f"{self.path}: {self.message}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a file for reading in binary mode, refusing anything but a regular file (symlinks are followed).

    The open itself is non-blocking (a FIFO with no writer would otherwise wait forever) and the check is
    made on the opened descriptor (no window between checking and reading). Every file mtbranch reads goes
    through here or :func:`check_regular`; raises :class:`NotRegularFileError` (an OSError).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def check_regular(path: str | os.PathLike[str]) -> None:
    """Refuse ``path`` unless it is a regular file: before handing it to a library that opens it itself
    (safetensors' ``safe_open``, transformers' tokenizer loading)."""
    with open_regular(path):
        pass


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    with open_regular(path) as fh:
        return fh.read()


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_inside(root: Path, relative: str | os.PathLike[str]) -> bool:
    """Whether ``root/relative`` stays inside ``root`` (no ``..``, absolute path or symlink out)."""
    try:
        return not Path(relative).is_absolute() and (root / relative).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):  # a NUL byte, a name too long, a symlink loop: not a usable path either
        return False


MAX_JSON_BYTES = 16 * 1024 * 1024  # manifests and lock files are a few KiB; refuse before reading more


class JsonFileError(ValueError):
    """A JSON file mtbranch reads is unusable; the message says why (syntax, duplicate key, size...)."""


class DuplicateKeyError(JsonFileError):
    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: a key given twice is a :class:`DuplicateKeyError` (a ValueError)."""
    # two values for one key are read differently by different parsers: refuse instead of picking one
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k)
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise JsonFileError(f"{name} is not JSON (Python's extension to the standard)")


def loads_json_object(raw: bytes | str) -> dict[str, Any]:
    """Parse a JSON object strictly: UTF-8, no duplicate keys, no runaway nesting, an object at the top."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        obj = json.loads(text, object_pairs_hook=no_duplicate_keys, parse_constant=_no_constant)
    except JsonFileError:
        raise
    except UnicodeDecodeError as exc:
        raise JsonFileError(f"not UTF-8 text: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and out-of-range numbers
        raise JsonFileError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise JsonFileError("not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise JsonFileError(f"the top level is a JSON {type(obj).__name__}, not an object")
    return obj


def first_duplicate_key(raw: bytes | str) -> str | None:
    """The first key some JSON object in ``raw`` repeats; None when there is none or ``raw`` is not JSON (then
    the caller's own parser says why). For text parsed by another parser (pydantic's, in the HTTP API), which
    keeps the last of two values where other parsers keep the first."""
    try:
        json.loads(raw, object_pairs_hook=no_duplicate_keys)
    except DuplicateKeyError as dup:
        return dup.key
    except (ValueError, RecursionError, TypeError):
        return None
    return None


def read_json_object(path: str | os.PathLike[str], limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Read a small JSON object file (manifest, lock); raises OSError or :class:`JsonFileError`."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise JsonFileError(f"{size} bytes is over the {limit // (1024 * 1024)} MiB limit for this file")
        raw = fh.read(limit + 1)
    return loads_json_object(raw)
