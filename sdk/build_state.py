"""``OUT/build-state.json`` read as an input: its shape checked, and what each stage record points at.

The file is written by ``mtbranch build`` but lives in the user's folder; a hand-edited or foreign one used
to crash the build (a list where an object was expected: exit 2) or make ``export`` package another branch
under the recipe's name. Each finished stage's record must name the folder this build writes for that stage,
and the branch there must carry the name, layers, depth and trunk fingerprint the record says.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtbranch.errors import MtbranchError
from mtbranch.io.files import JsonFileError, read_json_object

RESTART = "pass --restart to run every stage again (the stages' outputs are rebuilt)"


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branch: str | None = None
    metric: str | None = None
    layers: int | None = Field(default=None, ge=0)
    depth: int | None = Field(default=None, ge=0)
    value: float | None = None
    rows: list[dict[str, Any]] | None = None
    plot: str | None = None
    goal: float | None = None
    tried: list[dict[str, Any]] | None = None
    retention: float | None = None
    package: str | None = None  # the plugin stage (cli/build.py)
    export_sha: str | None = None
    inputs: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # what the stage was built from


class StateFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    stages: dict[Literal["sweep", "teacher", "distill", "export", "plugin"], StageRecord]


def read_state(path: Path) -> dict[str, Any]:
    """The state as the build uses it (a dict of the keys the file has), or a user error naming the field."""
    try:
        raw = read_json_object(path)
        state = StateFile.model_validate(raw)
    except (OSError, JsonFileError) as exc:
        raise MtbranchError(f"the build state is unreadable: {exc}", path=str(path), hint=RESTART) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise MtbranchError(f"the build state is not one mtbranch build wrote: field {where!r}: {first['msg']}",
                            path=str(path), hint=RESTART) from None
    return state.model_dump(exclude_unset=True)


def expected_branch(stage: str, rec: dict[str, Any], out: Path, name: str) -> tuple[Path, str] | None:
    """Where this build writes ``stage``'s branch and the name it gives it (None: the stage kept no branch)."""
    if stage == "distill":
        return None if rec.get("branch") is None else (out / "students" / f"l{rec.get('layers')}", name)
    folder = {"sweep": "sweep-branch", "teacher": "teacher", "export": "branch"}[stage]
    return out / folder, f"{name}-teacher" if stage == "teacher" else name


def check_stage(stage: str, rec: dict[str, Any], out: Path, name: str, fingerprints: Sequence[str],
                state_path: Path) -> None:
    """Refuse a finished stage whose record points outside this build, or at a branch it did not write."""
    from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest

    want = expected_branch(stage, rec, out, name)
    if want is None:
        return
    folder, want_name = want
    given = Path(str(rec.get("branch")))
    if given.resolve() != folder.resolve():
        raise MtbranchError(f"stage {stage!r} names the branch {given}, but this build writes it to {folder}",
                            path=str(state_path), hint=RESTART)
    try:
        m = read_manifest(folder / MANIFEST_NAME)
    except (OSError, ValueError) as exc:
        raise MtbranchError(f"stage {stage!r}: its branch is unreadable: {exc}", path=str(folder),
                            hint=RESTART) from None
    depth, layers = rec.get("depth"), rec.get("layers")
    problems = []
    if m.name != want_name:
        problems.append(f"name {m.name!r}, not {want_name!r}")
    if (m.attach_depth, m.num_layers) != (depth, layers):
        problems.append(f"depth {m.attach_depth} and {m.num_layers} layer(s), the record says {depth} and {layers}")
    elif not 0 <= m.attach_depth < len(fingerprints) or m.trunk.fingerprint != fingerprints[m.attach_depth]:
        problems.append("a trunk fingerprint of another trunk")
    if problems:
        raise MtbranchError(f"stage {stage!r}: the branch in {folder} is not the one this build made: "
                            + "; ".join(problems), path=str(state_path), hint=RESTART)
