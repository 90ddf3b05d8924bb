"""The built-in plugin: registers the built-in head types through the same hook plugins use."""

from __future__ import annotations

from mtbranch.heads.registry import HeadType, builtin_head_types
from mtbranch.plugins.hookspecs import hookimpl


@hookimpl
def mtbranch_head_types() -> list[HeadType]:
    return builtin_head_types()
