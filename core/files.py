"""File helpers shared by validation, loading, composition and the SDK (no torch)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_inside(root: Path, relative: str | os.PathLike[str]) -> bool:
    """Whether ``root/relative`` stays inside ``root`` (no ``..``, absolute path or symlink out)."""
    return not Path(relative).is_absolute() and (root / relative).resolve().is_relative_to(root.resolve())
