"""Typed records returned by hooks. Plain dataclasses: importing them never imports torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BranchLocation:
    """A branch artifact directory shipped by a plugin."""

    name: str
    path: Path
    description: str = ""


@dataclass(frozen=True)
class TrunkProvider:
    """A local trunk (Hugging Face model directory with tokenizer files) under a short name."""

    name: str
    path: Path
    description: str = ""


@dataclass(frozen=True)
class Check:
    """An organisation policy: ``run(manifest, artifact_dir)`` returns a list of findings."""

    name: str
    run: Callable[[Any, Path], list[Any]]
    description: str = ""


@dataclass
class PluginInfo:
    """One row of ``mtbranch plugins``."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    trunks: list[str] = field(default_factory=list)
    head_types: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
