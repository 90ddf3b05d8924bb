"""The composed artifact's lock file (``mtbranch.lock.json``): the artifact's contract, a versioned pydantic model.

``lock_version`` is an integer. An older version would be converted forward by :data:`CONVERTERS` before
validation (none exists yet: version 1 is the first); a newer one is refused, since an older mtbranch cannot know
what it means. The model checks the shape and types of every field loading relies on (strict: ``"3"`` is not a
layer count, ``true`` not a version); whether the entries agree with the files they describe is
``mtbranch.composition.artifact.verify_artifact``'s part. Written as ``json.dumps(..., indent=2)`` of the fields
in their declared order, byte for byte what earlier versions wrote.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mtbranch.errors import IntegrityError, MtbranchError, os_error
from mtbranch.io.files import JsonFileError, NotRegularFileError, read_json_object
from mtbranch.spec.manifest import NAME_RE

LOCK_NAME = "mtbranch.lock.json"
LOCK_VERSION = 1
_FIX = "the lock file was edited or corrupted; compose again"


class _Strict(BaseModel):
    # unknown keys are ignored, as before the model (they were never read); known ones must have their type
    model_config = ConfigDict(strict=True, frozen=True)


class LockTrunk(_Strict):
    reference: str
    num_layers: int  # the full trunk's, kept across `update` (whose source is the truncated copy)
    kept_layers: int  # the layers kept in the artifact's trunk/ (the deepest attach depth composed)
    model_type: str
    fingerprints: list[str]  # h_0 .. h_kept


class LockBranch(_Strict):
    name: str
    version: str
    source: str | None = None  # how compose found it: "directory", a plugin's name, "hf:ORG/NAME@REV"
    attach_depth: int
    num_layers: int
    head: str
    sha256: str
    # what `mtbranch quantize` kept: "int8" runs the branch's own layers in dynamic int8 (absent: float32)
    precision: Literal["float32", "int8"] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # the name becomes a directory under branches/: a plain task name, never a path
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a task name")
        return v


class LockOverhead(_Strict):
    """The paper's overhead metric: transformer layers composed vs one full model per task."""

    shared_layers: int
    task_layers: int
    total_layers: int
    single_task_layers: int
    ratio: float
    text: str


class ArtifactLock(_Strict):
    lock_version: int = LOCK_VERSION
    mtbranch_version: str | None = None
    created: str | None = None  # ISO 8601, UTC, seconds
    trunk: LockTrunk
    branches: list[LockBranch]
    overhead: LockOverhead
    files: dict[str, str]  # every file of the artifact but the lock: relative path -> sha256

    def branch(self, name: str) -> LockBranch:
        return next(e for e in self.branches if e.name == name)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.branches]

    def inconsistencies(self) -> list[str]:
        """Where the lock disagrees with itself: a branch listed twice, fingerprints recorded for another depth,
        more layers kept than the trunk has, an overhead its branches do not make."""
        names, t = self.names, self.trunk
        problems = [f"branches: {name!r} is listed {names.count(name)} times"
                    for name in sorted({n for n in names if names.count(n) > 1})]
        if len(t.fingerprints) != t.kept_layers + 1:
            problems.append(f"trunk: {len(t.fingerprints)} fingerprints recorded for {t.kept_layers} kept layers "
                            f"(want {t.kept_layers + 1})")
        if t.kept_layers > t.num_layers:
            problems.append(f"trunk: kept_layers {t.kept_layers} exceeds the trunk's num_layers {t.num_layers}")
        want = lock_overhead(self.branches, t.num_layers)
        if self.overhead != want:
            problems.append(f"overhead: lock says {self.overhead.text!r}, its branches make {want.text!r}")
        return problems

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        """The file's text: what earlier versions wrote (``json.dumps(lock, indent=2)``), byte for byte."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def overhead(depth: int, branch_layers: Sequence[int], full_layers: int) -> LockOverhead:
    """The paper's overhead metric: transformer layers composed vs one full model per task."""
    task = sum(branch_layers)
    total = depth + task
    single = full_layers * len(branch_layers)
    return LockOverhead(
        shared_layers=depth, task_layers=task, total_layers=total, single_task_layers=single,
        ratio=total / single if single else 0.0,
        text=f"{depth} + {task} = {total} of {single}, {100 * total / single:.1f}%" if single else "-")


def lock_overhead(entries: Sequence[LockBranch], full_layers: int) -> LockOverhead:
    """The overhead of a lock's branches: shared layers are the deepest attach depth (the trunk layers that run),
    not the kept layers (``update --remove`` may leave more kept than any branch reads)."""
    depth = max((e.attach_depth for e in entries), default=0)
    return overhead(depth, [e.num_layers for e in entries], full_layers)


# older lock_version -> the next one's dict, applied in order until LOCK_VERSION is reached
CONVERTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upgrade_lock(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` converted forward to :data:`LOCK_VERSION`; ``ValueError`` naming the version when it cannot be."""
    version = data.get("lock_version")
    seen: set[int] = set()
    while isinstance(version, bool) or version != LOCK_VERSION:  # `true` equals 1 in Python, not in the format
        if isinstance(version, bool) or not isinstance(version, int) or version in seen or version not in CONVERTERS:
            raise ValueError(f"lock_version {version!r}: this mtbranch reads version {LOCK_VERSION} "
                             "(a newer one may read others)")
        seen.add(version)
        data = CONVERTERS[version](data)
        version = data.get("lock_version")
    return data


def _where(loc: tuple[str | int, ...]) -> str:
    """pydantic's error location as the lock's own path: ``branches[0].attach_depth``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_lock(data: dict[str, Any]) -> ArtifactLock:
    """The lock model of a lock file's object; ``ValueError`` naming the first field that is wrong."""
    data = upgrade_lock(data)
    try:
        return ArtifactLock.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = err["msg"].removeprefix("Value error, ")
        shown = "" if err["type"] == "missing" else f" (found {err['input']!r:.60})"
        raise ValueError(f"{_where(err['loc'])}: {msg}{shown}") from None


def read_lock(path: str | os.PathLike[str]) -> ArtifactLock:
    """The lock file of the composed artifact ``path`` (a hand-edited or corrupt lock is an IntegrityError)."""
    lp = Path(path) / LOCK_NAME
    try:
        data = read_json_object(lp)
    except FileNotFoundError:
        raise MtbranchError(f"not a composed artifact: no {LOCK_NAME}", path=str(path),
                            hint="create one with `mtbranch compose -o DIR`") from None
    except (PermissionError, NotRegularFileError) as exc:  # the environment, not the file's content
        raise os_error(exc, "reading the lock file", str(lp)) from None
    except (OSError, JsonFileError) as exc:
        raise IntegrityError(f"lock file is unusable: {exc}", path=str(lp), hint=_FIX) from None
    try:
        return parse_lock(data)
    except ValueError as exc:
        raise IntegrityError(f"lock file field {exc}", path=str(lp), hint=_FIX) from None
