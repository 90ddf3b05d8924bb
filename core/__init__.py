"""mtbranch: task branches for one shared frozen transformer trunk, composed into one model.

Importing mtbranch is light (no torch): heavy modules load on first use of :func:`load` or :func:`compose`.
"""

from __future__ import annotations

from typing import Any

from mtbranch.plugins.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["__version__", "compose", "hookimpl", "hookspec", "load"]


def load(path: str, **kwargs: Any) -> Any:
    """Load a composed artifact (see :func:`mtbranch.composition.artifact.load`)."""
    from mtbranch.composition.artifact import load as _load

    return _load(path, **kwargs)


def compose(trunk: Any, branches: Any, **kwargs: Any) -> Any:
    """Compose branches on a trunk in memory (see :func:`mtbranch.composition.artifact.compose`)."""
    from mtbranch.composition.artifact import compose as _compose

    return _compose(trunk, branches, **kwargs)
