"""The admin API of canary releases (:mod:`mtbranch.serve.canary`), behind the ``/admin/reload`` bearer token.

* ``GET /admin/canary``: every canary and every promotion that can still be rolled back;
* ``POST /admin/canary``: load version B of a branch (a branch directory on the server's disk, validated as
  ``mtbranch update`` validates it) next to the live version A, in ``shadow`` or ``split`` mode;
* ``POST /admin/canary/{task}``: change its mode, split fraction or key header;
* ``POST /admin/canary/{task}/promote``: B becomes live: the artifact is rewritten by ``update_composed`` (atomic,
  the lock records B), the branch is loaded back from it and put into the live model between two batches;
* ``POST /admin/canary/{task}/rollback``: drop B (before promotion), or put A back (after it, on disk too).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from mtbranch.errors import MtbranchError, ValidationFailed
from mtbranch.serve.canary import DEFAULT_KEY_HEADER, Canary, CanaryModule, Mode, Promotion
from mtbranch.serve.http import error_responses
from mtbranch.serve.routes import State, authorize
from mtbranch.serve.schema import RequestError
from mtbranch.serve.state import ServerState, served_model

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

router = APIRouter()
T = TypeVar("T")


class CanaryStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branch_dir: str = Field(description="Version B: a branch directory on the server's disk (manifest.json + weights).")
    mode: Mode = "shadow"
    fraction: float = Field(0.0, ge=0, le=1, description="split: the share of request keys B answers.")
    key_header: str = Field(DEFAULT_KEY_HEADER, description="split: the header whose value keeps a client on one "
                                                            "version (missing: the request's first text).")


class CanaryChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode
    fraction: float | None = Field(None, ge=0, le=1)
    key_header: str | None = None


def load_version_b(model: ComposedModel, task: str, source: Path) -> CanaryModule:
    """B validated against the served trunk (the validator ``mtbranch update`` runs), checked against A, loaded."""
    from mtbranch.branch.model import load_branch
    from mtbranch.plugins.manager import get_plugin_manager
    from mtbranch.validation.validator import Validator

    pm = get_plugin_manager()
    report = Validator(model.provenance.trunk_source, plugin_manager=pm).validate([(source, "directory")])
    if report.errors:
        raise ValidationFailed(report)
    m = report.branches[0].manifest
    assert m is not None  # validation found no error: the manifest was read
    live = model.branch(task).manifest
    if m.name != task:
        raise MtbranchError(f"the branch in {source} is named {m.name!r}, not {task!r}", path=str(source),
                            hint="a canary is a new version of a served task: its manifest name must be the task's")
    if m.tokenizer.input_signature != live.tokenizer.input_signature:
        raise MtbranchError(f"version B takes {m.tokenizer.input_signature!r} inputs, the live version "
                            f"{live.tokenizer.input_signature!r}", path=str(source),
                            hint="a branch with another input signature is a new task: compose it under a new name")
    if "shared" in (m.pair_mode, live.pair_mode):  # a canary forks on the rows of A: a shared pair has two
        raise MtbranchError(f"task {task!r}: a pair_mode 'shared' branch cannot be a canary version (nor be "
                            "replaced by one)", path=str(source), hint="update the task instead: `mtbranch update`")
    if m.tokenizer.max_length < live.tokenizer.max_length:
        raise MtbranchError(f"version B's tokenizer.max_length {m.tokenizer.max_length} is below the live "
                            f"version's {live.tokenizer.max_length}: it would read longer inputs than it was "
                            "trained on", path=str(source), hint="export B with the live max_length or longer")
    b = load_branch(report.branches[0].path, pm.head_type(m.head.type))
    model.place_branch(b)  # refuses a depth above the trunk kept (that needs a compose and a reload)
    return CanaryModule(b, task + "@canary")  # Canaries.start gives it the canary's own key


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def as_request_error(exc: MtbranchError, status: int = 422) -> RequestError:
    return RequestError(status, exc.message, exc.hint)


@router.get("/admin/canary", summary="Canaries and promotions that can be rolled back.",
            responses=error_responses(401, 403))
async def canary_status(request: Request, state: State) -> dict[str, Any]:
    authorize(request, state)
    return {"canaries": [c.status() for c in state.canaries.active.values()],
            "promoted": [p.status() for p in state.canaries.promoted.values()]}


@router.post("/admin/canary", summary="Load version B of one branch next to its live version A.",
             responses=error_responses(401, 403, 409, 422, 503))
async def canary_start(request: Request, body: CanaryStart, state: State) -> dict[str, Any]:
    authorize(request, state)
    served = state.current()
    source = Path(body.branch_dir)
    try:
        from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest

        task = (await in_thread(read_manifest, source / MANIFEST_NAME)).name
    except (OSError, ValueError) as exc:
        raise RequestError(422, f"branch_dir {source}: no readable manifest.json ({exc})",
                           "give the directory `mtbranch export` wrote (manifest.json + weights)") from None
    if task not in {t.name for t in served.infos}:
        raise RequestError(422, f"task {task!r} is not served, so it has no live version to canary",
                           f"tasks served: {', '.join(t.name for t in served.infos)}; add a new task with "
                           "`mtbranch update --put` and /admin/reload")
    if task in state.canaries.active:
        raise RequestError(409, f"task {task!r} already has a canary", "promote or roll it back first")
    try:
        module = await in_thread(load_version_b, served.model, task, source)
    except MtbranchError as exc:
        raise as_request_error(exc) from None
    canary = Canary(task, module, source, served.model.branch(task).manifest.version, body.mode, body.fraction,
                    body.key_header.lower())
    try:
        state.canaries.start(canary)
    except MtbranchError as exc:  # another start for the task won the race
        raise as_request_error(exc, 409) from None
    return canary.status()


@router.post("/admin/canary/{task}", summary="Change a canary's mode, split fraction or key header.",
             responses=error_responses(401, 403, 404, 422))
async def canary_change(task: str, request: Request, body: CanaryChange, state: State) -> dict[str, Any]:
    authorize(request, state)
    c = _canary(state, task)
    c.mode = body.mode
    if body.fraction is not None:
        c.fraction = body.fraction
    if body.key_header is not None:
        c.key_header = body.key_header.lower()
    return c.status()


@router.post("/admin/canary/{task}/promote", summary="Version B becomes live; the artifact's lock records it.",
             responses=error_responses(401, 403, 404, 409, 422, 503))
async def canary_promote(task: str, request: Request, state: State) -> dict[str, Any]:
    authorize(request, state)
    c = _canary(state, task)
    artifact = _artifact(state)
    if state.reloading.locked():
        raise RequestError(409, "a reload or promotion is already running", "wait for it and try again")
    async with state.reloading:
        from mtbranch.io.files import sha256_file

        weights = c.source / c.module.manifest.weights.path
        if await in_thread(sha256_file, weights) != c.module.manifest.weights.sha256:
            raise RequestError(409, f"{weights} changed since the canary was loaded",
                               "roll the canary back and start it again from the new files")
        live = state.current().model.branch(task).manifest
        previous = Path(tempfile.mkdtemp(prefix=f"mtbranch-previous-{task}-"))
        from mtbranch.composition.artifact import copy_branch_files

        await in_thread(copy_branch_files, Path(artifact) / "branches" / task, previous / task, live)
        try:
            await _write_and_serve(state, artifact, task, c.source)
        except BaseException:
            shutil.rmtree(previous, ignore_errors=True)
            raise
        state.canaries.stop(task)
        old = state.canaries.promoted.pop(task, None)
        if old is not None:
            shutil.rmtree(old.previous, ignore_errors=True)
        state.canaries.promoted[task] = Promotion(task, previous / task, live.version, c.version)
    return {"status": "promoted", "task": task, "version": c.version, "previous_version": live.version,
            "lock_sha256": state.current().version}


@router.post("/admin/canary/{task}/rollback", summary="Drop version B, or put A back after a promotion.",
             responses=error_responses(401, 403, 404, 409, 422, 503))
async def canary_rollback(task: str, request: Request, state: State) -> dict[str, Any]:
    authorize(request, state)
    if task in state.canaries.active:
        c = state.canaries.stop(task)
        return {"status": "rolled back", "task": task, "version": c.live_version, "dropped": c.version}
    p = state.canaries.promoted.get(task)
    if p is None:
        raise RequestError(404, f"task {task!r} has no canary and no promotion to roll back",
                           "GET /admin/canary lists them")
    artifact = _artifact(state)
    if state.reloading.locked():
        raise RequestError(409, "a reload or promotion is already running", "wait for it and try again")
    async with state.reloading:
        await _write_and_serve(state, artifact, task, p.previous)
        state.canaries.promoted.pop(task)
        shutil.rmtree(p.previous.parent, ignore_errors=True)
    return {"status": "rolled back", "task": task, "version": p.previous_version, "dropped": p.version,
            "lock_sha256": state.current().version}


async def _write_and_serve(state: ServerState, artifact: str | Path, task: str, put: Path) -> None:
    """``mtbranch update ARTIFACT --put DIR`` (atomic), then the branch loaded back from the artifact (so what
    serves is what the lock records) and put into the live model between two batches."""
    from mtbranch.branch.model import BranchProvenance, load_branch
    from mtbranch.composition.artifact import update_composed

    try:
        lock = await in_thread(lambda: update_composed(artifact, put=[put]))
    except MtbranchError as exc:
        raise RequestError(409, f"the artifact was not changed: {exc.message}", exc.hint) from None
    entry = lock.branch(task)
    bdir = Path(artifact) / "branches" / task
    module = await in_thread(lambda: load_branch(bdir, expected_sha256=entry.sha256))
    module.provenance = BranchProvenance(entry.source or "directory", bdir)
    model = state.current().model
    assert state.batcher is not None
    await state.batcher.between_batches(lambda: model.put_branch(module))
    model.lock = lock
    state.serve(served_model(model, artifact))


def _canary(state: ServerState, task: str) -> Canary:
    c = state.canaries.active.get(task)
    if c is None:
        raise RequestError(404, f"task {task!r} has no canary", "start one with POST /admin/canary")
    return c


def _artifact(state: ServerState) -> str | Path:
    if state.artifact is None:
        raise RequestError(409, "this server was started with a model object, not an artifact path",
                           "create_app(model, artifact=PATH) to enable promotion (it rewrites the artifact)")
    return state.artifact
