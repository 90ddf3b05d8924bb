"""mtbranch: task branches for one shared frozen transformer trunk, composed into one model.

Importing mtbranch is light (no torch): heavy modules load on first use of :func:`load` or :func:`compose`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mtbranch.errors import MtbranchError
from mtbranch.plugins.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["__version__", "compose", "hookimpl", "hookspec", "load"]


def load(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load a composed artifact (see :func:`mtbranch.composition.artifact.load`)."""
    from mtbranch.composition.artifact import load as _load

    if not isinstance(path, str | os.PathLike):
        raise MtbranchError(f"load takes the path of a composed artifact, not {type(path).__name__}",
                            hint="mtbranch.load('composed/')")
    return _load(path, **kwargs)


def compose(trunk: Any, branches: Any, **kwargs: Any) -> Any:
    """Compose branches on a trunk in memory (see :func:`mtbranch.composition.artifact.compose`).

    ``trunk``: a TrunkSource or a trunk reference (directory, ``hf:org/name@rev``, installed trunk name);
    ``branches``: branch directories, or ``(directory, source)`` pairs.
    """
    from mtbranch.composition.artifact import compose as _compose
    from mtbranch.trunk.source import TrunkSource, resolve_trunk

    if isinstance(trunk, str | os.PathLike):
        trunk = resolve_trunk(str(trunk))
    elif not isinstance(trunk, TrunkSource):
        raise MtbranchError(f"trunk is {type(trunk).__name__}, not a trunk reference or TrunkSource",
                            hint="mtbranch.compose('path/to/trunk', ['branch-dir', ...])")
    if isinstance(branches, str | os.PathLike):
        branches = [branches]
    if isinstance(branches, bytes | dict) or not hasattr(branches, "__iter__"):
        raise MtbranchError(f"branches is {type(branches).__name__}, not a list of branch directories",
                            hint="mtbranch.compose(trunk, ['branch-dir', ...])")
    pairs = []
    for i, b in enumerate(branches):
        if isinstance(b, str | os.PathLike):
            pairs.append((Path(b), "directory"))
        elif isinstance(b, tuple) and len(b) == 2 and isinstance(b[0], str | os.PathLike):
            pairs.append((Path(b[0]), str(b[1])))
        else:
            raise MtbranchError(f"branches[{i}] is {type(b).__name__}, not a branch directory",
                                hint="pass paths, or (path, source) pairs")
    return _compose(trunk, pairs, **kwargs)
