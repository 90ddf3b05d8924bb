"""``mtbranch serve``: the composed model behind a FastAPI app, with request batching.

Requests arriving within ``max_batch_wait_ms`` of each other (up to ``max_batch_size`` texts) are merged and run
by :func:`mtbranch.serve.batching.run_jobs` in a worker thread, so the event loop keeps accepting requests. Every
request is checked (sizes, types, tasks) before it joins a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mtbranch.errors import MtbranchError
from mtbranch.serve.batching import Job, Outcome, Stats, run_jobs
from mtbranch.serve.schema import (
    REQUEST_HINT,
    ErrorBody,
    Limits,
    PredictRequest,
    PredictResponse,
    RequestError,
    TaskInfo,
    describe_validation_error,
    resolve_request,
    task_infos,
    warm_up,
)

log = logging.getLogger("mtbranch.serve")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32  # texts per merged batch
    max_batch_wait_ms: float = 5.0
    limits: Limits = field(default_factory=Limits)


@dataclass
class _Item:
    job: Job
    future: asyncio.Future[list[dict[str, Any]]]


class Batcher:
    """An asyncio queue drained by one collector task; model calls run in a single worker thread."""

    def __init__(self, model: Any, settings: ServeSettings) -> None:
        self.model = model
        self.settings = settings
        self.stats = Stats()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtbranch-model")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], pairs: list[str] | None, tasks: list[str],
                     raw: bool) -> list[dict[str, Any]]:
        fut: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        await self._queue.put(_Item(Job(texts, pairs, tuple(tasks), raw), fut))
        return await fut

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.settings.max_batch_wait_ms / 1000
        while True:
            items = [await self._queue.get()]
            n = len(items[0].job.texts)
            deadline = loop.time() + wait
            while n < self.settings.max_batch_size:
                try:  # whatever queued while the previous batch ran is taken at once; then wait a little
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except TimeoutError:
                        break
                items.append(item)
                n += len(item.job.texts)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, n)
            outcomes = await loop.run_in_executor(self._executor, self._run, items)
            for item, outcome in zip(items, outcomes, strict=True):
                if item.future.done():  # the client went away
                    continue
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)

    def _run(self, items: list[_Item]) -> list[Outcome]:
        return run_jobs(self.model, [it.job for it in items], self.stats, self.settings.max_batch_size)


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, int(declared))
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(send, len(body))
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable[[Message], Awaitable[None]], size: int) -> None:
        err = RequestError(413, f"request body is {size}+ bytes; the limit is {self.max_bytes}",
                           "send fewer or shorter texts per request")
        response = JSONResponse(err.body(), status_code=413, headers={"connection": "close"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{\"error\", \"hint\"}`` JSON: 400 bad JSON, 413 too large, 422 invalid, 500 a bug."""
    @app.exception_handler(RequestError)
    async def _request_error(_req: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            err = RequestError(400, f"body is not valid JSON: {errors[0].get('ctx', {}).get('error', '')}".rstrip(": "),
                               'send {"texts": ["..."]} with Content-Type: application/json')
        else:
            err = RequestError(422, describe_validation_error(errors), REQUEST_HINT)
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(MtbranchError)  # e.g. a branch swapped out between the check and the batch
    async def _mtbranch_error(_req: Request, exc: MtbranchError) -> JSONResponse:
        return JSONResponse(ErrorBody(error=exc.message, hint=exc.hint).model_dump(exclude_none=True), status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


class _State:
    def __init__(self) -> None:
        self.model: Any = None
        self.batcher: Batcher | None = None
        self.ready = False
        self.error: str | None = None
        self.started = time.time()


def create_app(model: Any = None, *, artifact: str | None = None, settings: ServeSettings | None = None,
               load_kwargs: dict[str, Any] | None = None) -> FastAPI:
    """The HTTP app for a loaded ``model``, or for ``artifact`` loaded in the background at start-up.

    ``/health`` answers as soon as the server runs; ``/ready`` once the model is loaded and warmed up.
    """
    if (model is None) == (artifact is None):
        raise ValueError("pass exactly one of model= or artifact=")
    settings = settings or ServeSettings()
    state = _State()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ready = asyncio.get_running_loop().create_task(_prepare())
        try:
            yield
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ready
            if state.batcher is not None:
                await state.batcher.stop()

    async def _prepare() -> None:
        loop = asyncio.get_running_loop()
        try:
            m = model
            if m is None:
                from mtbranch.composition.artifact import load

                m = await loop.run_in_executor(None, lambda: load(artifact, **(load_kwargs or {})))
            await loop.run_in_executor(None, warm_up, m)
        except Exception as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", state.error)
            return
        state.model = m
        state.batcher = Batcher(m, settings)
        state.batcher.start()
        state.ready = True
        log.info("ready: %s", ", ".join(m.task_names))

    app = FastAPI(title="mtbranch", version=_version(), lifespan=lifespan,
                  description="A composed multi-task model: one trunk pass per request batch, many task branches.")
    app.state.mtbranch = state
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)

    install_error_handlers(app)

    errors: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody} for c in (400, 413, 422, 503)}

    @app.get("/health", summary="Liveness: the process answers.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: the model is loaded and warmed up.", responses={503: {"model": ErrorBody}})
    async def ready() -> JSONResponse:
        if state.ready:
            return JSONResponse({"status": "ready", "tasks": state.model.task_names})
        if state.error:
            return JSONResponse({"error": f"model failed to load: {state.error}"}, status_code=503)
        return JSONResponse({"error": "loading"}, status_code=503)

    @app.get("/tasks", summary="The tasks served.", response_model=list[TaskInfo], responses=errors)
    async def tasks() -> list[TaskInfo]:
        return task_infos(_ready_model())

    @app.get("/stats", summary="Counters: requests, merged batches, predict calls.")
    async def stats() -> dict[str, Any]:
        return {**(state.batcher.stats.as_dict() if state.batcher else {}),
                "uptime_s": round(time.time() - state.started, 1),
                "max_batch_size": settings.max_batch_size, "max_batch_wait_ms": settings.max_batch_wait_ms}

    @app.post("/predict", summary="Run tasks on texts.", response_model=PredictResponse, responses=errors)
    async def predict(body: PredictRequest) -> PredictResponse:
        m = _ready_model()
        names = resolve_request(body, task_infos(m), settings.limits)
        assert state.batcher is not None
        results = await state.batcher.submit(body.texts, body.text_pairs, names, body.raw)
        return PredictResponse(results=results, tasks=names)

    def _ready_model() -> Any:
        if not state.ready:
            raise RequestError(503, "model failed to load: " + state.error if state.error else "model is loading",
                               "poll GET /ready")
        return state.model

    return app


def _version() -> str:
    from mtbranch import __version__

    return __version__


def run_server(app: FastAPI, host: str, port: int, *, log_level: str = "info") -> None:
    """Blocking uvicorn run (used by the CLI)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal stop
        log.info("stopped")
