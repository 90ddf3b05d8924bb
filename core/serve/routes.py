"""The HTTP routes of ``mtbranch serve``: one APIRouter; each route reads the app's :class:`ServerState` through
the :func:`server_state` dependency (``create_app`` puts it on ``app.state.mtbranch``)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from mtbranch.serve.fair import owners_of, tenant_of
from mtbranch.serve.http import PREDICT_OPENAPI, error_responses
from mtbranch.serve.schema import (
    PredictResponse,
    RequestError,
    TaskInfo,
    check_content_type,
    parse_request,
    resolve_request,
)
from mtbranch.serve.state import ServerState, load_served

log = logging.getLogger("mtbranch.serve")
VERSION_HEADER = "x-mtbranch-version"
router = APIRouter()


async def server_state(request: Request) -> ServerState:
    """The app's state (async: FastAPI would run a plain function in its thread pool, once per request)."""
    state: ServerState = request.app.state.mtbranch
    return state


State = Annotated[ServerState, Depends(server_state)]


@router.get("/health", summary="Liveness (200 while the process answers), the version served, the last reload.")
async def health(state: State) -> dict[str, Any]:
    s = state.served
    return {"status": "draining" if state.draining else "ok", "version": s.version if s else None,
            "tasks": [t.name for t in s.infos] if s else [], "last_reload": state.last_reload}


@router.get("/ready", summary="Readiness: loaded, warmed up and not draining.", responses=error_responses(503))
async def ready(state: State) -> JSONResponse:
    if state.ready and not state.draining and state.served is not None:
        return JSONResponse({"status": "ready", "tasks": [t.name for t in state.served.infos],
                             "version": state.served.version})
    if state.draining:
        return JSONResponse({"error": "shutting down", "hint": "send traffic to another replica"}, status_code=503)
    if state.error:
        return JSONResponse({"error": f"model failed to load: {state.error}"}, status_code=503)
    return JSONResponse({"error": "loading", "hint": "poll GET /ready"}, status_code=503)


@router.get("/tasks", summary="The tasks served.", response_model=list[TaskInfo], responses=error_responses(503))
async def tasks(state: State) -> list[TaskInfo]:
    return state.current().infos


@router.get("/stats", summary="Counters: requests, merged batches, trunk passes.")
async def stats(state: State) -> dict[str, Any]:
    b, s = state.batcher, state.settings
    return {**(b.stats.as_dict() if b else {}), "uptime_s": round(time.time() - state.started, 1),
            "max_batch_size": s.max_batch_size, "max_batch_tokens": s.max_batch_tokens, "max_padding": s.max_padding,
            "max_batch_wait_ms": s.max_batch_wait_ms, "max_queue": s.max_queue, "queued": b.queued if b else 0}


@router.get("/metrics", summary="Prometheus metrics (text exposition format).")
async def metrics(state: State) -> Response:
    body, media_type = state.metrics.exposition()
    return Response(body, media_type=media_type)


@router.post("/predict", summary="Run tasks on texts.", response_model=PredictResponse,
             responses=error_responses(400, 408, 413, 415, 422, 429, 500, 503), openapi_extra=PREDICT_OPENAPI)
async def predict(request: Request, state: State) -> JSONResponse:
    from mtbranch.serve import tei

    t0 = time.perf_counter()
    served = state.current()
    check_content_type(request.headers.get("content-type"))
    raw = await request.body()
    if tei.is_tei_body(raw):  # TEI's shape (`inputs`) on the same route: the fields never overlap
        return await tei.predict(request, state, raw)
    body = parse_request(raw, state.settings.limits)
    names = resolve_request(body, served.infos, state.settings.limits)
    assert state.batcher is not None
    assert body.texts is not None
    owners = owners_of(names, served.infos)
    state.quotas.admit(owners, len(body.texts))  # 429 for an owner over its quota (mtbranch.serve.fair)
    job = await state.batcher.tokenize(served, body.texts, body.text_pairs, names, body.raw, body.tagged)
    route = state.canaries.route(names, request.headers, body.texts)  # canary versions: mtbranch.serve.canary
    results, version = await state.batcher.submit(state.canaries.attach(job, route), tenant_of(owners))
    seconds = time.perf_counter() - t0
    state.canaries.settle(route, {t.name: t.version for t in served.infos if t.name in names}, results, seconds)
    for name in names:
        state.metrics.task_latency.labels(name).observe(seconds)
    return JSONResponse(PredictResponse(results=results, tasks=names).model_dump(), headers={VERSION_HEADER: version})


@router.post("/admin/reload", summary="Hot swap: load the artifact again (verified) and serve it.",
             responses=error_responses(401, 403, 409, 503))
async def reload(request: Request, state: State) -> JSONResponse:
    authorize(request, state)
    artifact = state.artifact
    if artifact is None:
        raise RequestError(409, "this server was started with a model object, not an artifact path",
                           "create_app(model, artifact=PATH) to enable reloads")
    if state.reloading.locked():
        raise RequestError(409, "a reload is already running", "wait for it; GET /health shows the result")
    old = state.current()
    async with state.reloading:
        t0 = time.perf_counter()
        try:
            new = await asyncio.wait_for(_in_daemon_thread(load_served, artifact, state.load_kwargs),
                                         state.settings.reload_timeout_s)
        except Exception as exc:
            reason = _reload_reason(exc, state.settings.reload_timeout_s)
            state.last_reload = {"ok": False, "at": time.time(), "error": reason, "serving": old.version}
            state.metrics.reloads.labels("failed").inc()
            log.warning("reload failed, still serving %s: %s", old.version[:12], reason)
            raise RequestError(409, f"reload failed; still serving {old.version}: {reason}",
                               "fix the artifact (mtbranch verify) and reload again") from None
        seconds = round(time.perf_counter() - t0, 2)
        if new.version == old.version:
            state.last_reload = {"ok": True, "at": time.time(), "swapped": False, "version": old.version}
            state.metrics.reloads.labels("unchanged").inc()
            return JSONResponse({"status": "unchanged", "version": old.version, "load_s": seconds})
        state.serve(new)  # the next batch runs on it; the one running finishes on the old one
        state.metrics.reloads.labels("swapped").inc()
        state.last_reload = {"ok": True, "at": time.time(), "swapped": True, "version": new.version,
                             "previous": old.version}
        log.info("swapped %s -> %s in %.2f s", old.version[:12], new.version[:12], seconds)
        return JSONResponse({"status": "swapped", "previous": old.version, "version": new.version,
                             "tasks": [t.name for t in new.infos], "load_s": seconds})


def _in_daemon_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """Run ``fn`` in a daemon thread: a reload stuck past its deadline never keeps the process from exiting
    (the default executor's threads are joined at exit, so SIGTERM would wait for it forever)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # timed out meanwhile: nobody waits for it any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): the result is not wanted
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="mtbranch-reload", daemon=True).start()
    return future


def _reload_reason(exc: BaseException, deadline: float) -> str:
    """Why a reload failed, in the words the CLI uses for the same problem."""
    from mtbranch.errors import user_error

    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"loading did not finish within {deadline:g} s (reload_timeout_s)"
    err = user_error(exc, "reading the artifact")
    return err.render() if err is not None else f"{type(exc).__name__}: {exc}"


def authorize(request: Request, state: ServerState) -> None:
    """The admin bearer token (constant-time comparison); 403 when the server has none."""
    token = state.settings.admin_token
    if not token:
        raise RequestError(403, "the admin endpoint is disabled",
                           "start the server with --admin-token-env (a token in an environment variable)")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise RequestError(401, "missing or wrong admin token", "send Authorization: Bearer TOKEN")
