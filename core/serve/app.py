"""``mtbranch serve``: the composed model behind a FastAPI app, for production traffic.

* **Batching.** Requests arriving within ``max_batch_wait_ms`` of each other are merged up to ``max_batch_size``
  sequences / ``max_batch_tokens`` tokens and run by :func:`mtbranch.serve.batching.run_jobs` in one worker
  thread (shared trunk passes across task subsets), so the event loop keeps accepting requests.
* **Backpressure.** At most ``max_queue`` ``/predict`` requests are admitted at once (read, queued or running);
  the next one gets 503 JSON with ``Retry-After`` before its body is read, so memory stays bounded. A request
  not answered within ``request_timeout_s`` gets 503 and is dropped from the queue. Request heads and bodies
  must arrive within ``read_timeout_s`` (408 / disconnect).
* **Metrics.** ``/metrics`` in Prometheus' text format (prometheus-client, one registry per app).
* **Graceful drain.** :func:`run_server` turns SIGTERM/SIGINT into: readiness 503 at once, the listener closed after
  ``drain_delay_s``, requests in flight answered within ``grace_s``, then 503 JSON for any left; exit 0.
* **Hot swap.** ``POST /admin/reload`` (bearer token) loads the artifact again, verifies its hashes and lock, warms
  it up and swaps it in between two batches; a failure keeps the old version serving and says why. Every batch runs
  on one version, named in each response's ``x-mtbranch-version`` header (the sha256 of the lock file).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtbranch.errors import MtbranchError
from mtbranch.serve.batching import Job, Outcome, Results, Stats, prepare_job, run_jobs
from mtbranch.serve.schema import (
    REQUEST_HINT,
    ErrorBody,
    PredictRequest,
    PredictResponse,
    RequestError,
    ServeSettings,
    TaskInfo,
    check_content_type,
    describe_validation_error,
    parse_request,
    resolve_request,
    task_infos,
    warm_up,
)

log = logging.getLogger("mtbranch.serve")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
VERSION_HEADER = "x-mtbranch-version"


@dataclass(frozen=True)
class Served:
    """One loaded version: the model, the sha256 of its lock file, its tasks."""

    model: Any
    version: str
    infos: list[TaskInfo]
    loaded_at: float


def lock_sha256(artifact: str | Path | None, model: Any = None) -> str:
    """sha256 of ``mtbranch.lock.json`` (of the file; or, for a model given without a path, of its lock as saved)."""
    if artifact is not None:
        from mtbranch.io.files import read_bytes

        return hashlib.sha256(read_bytes(Path(artifact) / "mtbranch.lock.json")).hexdigest()
    lock = getattr(model, "lock", None) or {}
    return hashlib.sha256((json.dumps(lock, indent=2) + "\n").encode()).hexdigest()


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


def load_served(artifact: str | Path, load_kwargs: dict[str, Any] | None = None) -> Served:
    """Load (hashes and lock verified by ``load``), warm up; the lock file must not change meanwhile."""
    from mtbranch.composition.artifact import load, read_lock

    read_lock(artifact)  # a missing or unreadable lock: the CLI's message
    before = lock_sha256(artifact)
    model = load(artifact, **{"verify": True, **(load_kwargs or {})})
    warm_up(model)
    after = lock_sha256(artifact)
    if after != before:
        raise MtbranchError("the artifact changed while it was loading", path=str(artifact),
                            hint="retry once `mtbranch update` has finished")
    return Served(model, before, task_infos(model), time.time())


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("mtbranch_requests", "HTTP responses by path and status code", ["path", "code"],
                                registry=r)
        self.rejected = Counter("mtbranch_rejected", "Requests refused or dropped by backpressure or shutdown",
                                ["reason"], registry=r)
        lat = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30)
        self.task_latency = Histogram("mtbranch_task_latency_seconds",
                                      "Latency of answered /predict requests, once per task they asked for",
                                      ["task"], buckets=lat, registry=r)
        self.batch_sequences = Histogram("mtbranch_batch_sequences", "Sequences per trunk pass",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.batch_tokens = Histogram("mtbranch_batch_tokens", "Padded tokens per trunk pass",
                                      buckets=(16, 64, 256, 1024, 2048, 4096, 8192, 16384, 65536), registry=r)
        self.queue_depth = Gauge("mtbranch_queue_depth", "Requests waiting for a batch", registry=r)
        self.in_flight = Gauge("mtbranch_in_flight", "/predict requests admitted and not yet answered", registry=r)
        self.ready = Gauge("mtbranch_ready", "1 when ready to take traffic", registry=r)
        self.model = Gauge("mtbranch_model_info", "The version served (sha256 of the lock file): 1",
                           ["lock_sha256", "tasks"], registry=r)
        self.reloads = Counter("mtbranch_reloads", "Hot-swap attempts by result", ["result"], registry=r)

    def set_model(self, served: Served) -> None:
        self.model.clear()
        self.model.labels(lock_sha256=served.version, tasks=",".join(t.name for t in served.infos)).set(1)


@dataclass
class _Item:
    job: Job
    future: asyncio.Future[tuple[Results, str]]


class Batcher:
    """A bounded queue drained by one collector task; every batch runs on one version, in one worker thread."""

    def __init__(self, served: Served, settings: ServeSettings, metrics: Metrics) -> None:
        self.served = served
        self.settings = settings
        self.metrics = metrics
        self.stats = Stats()
        self.rate = 0.0  # sequences per second, recent passes (for Retry-After)
        self._pending: deque[_Item] = deque()
        self._running: list[_Item] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtbranch-model")
        # tokenizing off the event loop (the fast tokenizer releases the GIL), so the loop keeps accepting
        self._tokenizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtbranch-tokenize")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
        self._tokenizer.shutdown(wait=True)

    async def tokenize(self, served: Served, texts: list[str], pairs: list[str] | None, tasks: list[str],
                       raw: bool) -> Job:
        """The request's sequences (:func:`prepare_job`), tokenized in a thread of their own."""
        return await asyncio.get_running_loop().run_in_executor(
            self._tokenizer, prepare_job, served.model, texts, pairs, tasks, raw)

    def retry_after(self, waiting: int) -> int:
        """Seconds until ``waiting`` more sequences are likely done (1 to 60)."""
        return max(1, min(60, math.ceil(waiting / self.rate))) if self.rate > 0 else 1

    def abort(self, error: RequestError) -> int:
        """Fail every request queued or running with ``error``; returns how many."""
        n = 0
        for item in [*self._running, *self._pending]:
            if not item.future.done():
                item.future.set_exception(error)
                n += 1
        self._pending.clear()
        self.metrics.queue_depth.set(0)
        return n

    async def submit(self, job: Job) -> tuple[Results, str]:
        fut: asyncio.Future[tuple[Results, str]] = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        self._pending.append(_Item(job, fut))
        self.metrics.queue_depth.set(len(self._pending))
        self._wake.set()
        timeout = self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(fut, timeout)  # on timeout the future is cancelled: the batch skips it
        except TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise RequestError(503, f"not answered within the request timeout ({timeout:g} s)",
                               "the server is overloaded: retry later or elsewhere",
                               retry_after=self.retry_after(sum(i.job.size for i in self._pending))) from None

    def _first_pending(self) -> _Item | None:
        while self._pending and self._pending[0].future.done():  # timed out or aborted while queued
            self._pending.popleft()
        return self._pending[0] if self._pending else None

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        while True:
            while self._first_pending() is None:
                self._wake.clear()
                await self._wake.wait()
            items = self._running = [self._pending.popleft()]  # abort() sees the batch while it is collected
            n, tokens = items[0].job.size, items[0].job.tokens
            deadline = loop.time() + s.max_batch_wait_ms / 1000
            while n < s.max_batch_size and (s.max_batch_tokens is None or tokens < s.max_batch_tokens):
                nxt = self._first_pending()
                if nxt is None:  # wait a little for more
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    except TimeoutError:
                        break
                    continue
                if n + nxt.job.size > s.max_batch_size or (
                        s.max_batch_tokens is not None and tokens + nxt.job.tokens > s.max_batch_tokens):
                    break
                items.append(self._pending.popleft())
                n, tokens = n + nxt.job.size, tokens + nxt.job.tokens
            self.metrics.queue_depth.set(len(self._pending))
            self.stats.batches += 1
            served = self.served  # one version per batch
            started = time.perf_counter()
            outcomes = await loop.run_in_executor(self._executor, self._run, served, items)
            seconds = time.perf_counter() - started
            if seconds > 0:
                self.rate = 0.7 * self.rate + 0.3 * (n / seconds) if self.rate else n / seconds
            self._running = []
            for item, outcome in zip(items, outcomes, strict=True):
                if item.future.done():  # timed out, aborted
                    continue
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result((outcome, served.version))

    def _run(self, served: Served, items: list[_Item]) -> list[Outcome]:
        live = [it for it in items if not it.future.done()]
        done = run_jobs(served.model, [it.job for it in live], self.stats, self.settings.max_batch_size,
                        self.settings.max_batch_tokens, self._observe_pass)
        by_id = {id(it): out for it, out in zip(live, done, strict=True)}
        return [by_id.get(id(it), []) for it in items]

    def _observe_pass(self, sequences: int, tokens: int) -> None:
        self.metrics.batch_sequences.observe(sequences)
        self.metrics.batch_tokens.observe(tokens)


class Guard:
    """ASGI middleware: counts responses, admits at most ``max_queue`` /predict requests, bounds and times bodies.

    A request over the admission limit gets 503 + Retry-After before its body is read; a body over
    ``max_body_bytes`` gets 413 (by Content-Length or while streaming); a body slower than ``read_timeout_s``
    gets 408. All in the error shape, with ``Connection: close`` when the body was not read to its end.
    """

    PATHS = frozenset({"/predict", "/health", "/ready", "/tasks", "/stats", "/metrics", "/admin/reload",
                       "/openapi.json", "/docs"})

    def __init__(self, app: ASGIApp, state: _State, settings: ServeSettings) -> None:
        self.app = app
        self.state = state
        self.settings = settings
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        label = path if path in self.PATHS else "other"
        code = 500

        async def counted_send(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        admitted = False
        try:
            if path == "/predict" and scope.get("method") == "POST":
                if self.in_flight >= self.settings.max_queue:
                    self.state.metrics.rejected.labels("queue_full").inc()
                    b = self.state.batcher
                    retry = b.retry_after(self.in_flight) if b is not None else 1
                    await _error(counted_send, RequestError(
                        503, f"server busy: {self.in_flight} requests in flight (limit {self.settings.max_queue})",
                        "retry after the Retry-After seconds, or on another replica", retry_after=retry), close=True)
                    return
                admitted = True
                self.in_flight += 1
                self.state.metrics.in_flight.set(self.in_flight)
            if scope.get("method") in ("GET", "HEAD"):
                await self.app(scope, receive, counted_send)
                return
            body = await self._read(scope, receive, counted_send)
            if body is None:
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, counted_send)
        finally:
            if admitted:
                self.in_flight -= 1
                self.state.metrics.in_flight.set(self.in_flight)
            self.state.metrics.requests.labels(label, str(code)).inc()

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        limit = self.settings.limits.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _error(send, _too_large(int(declared), limit), close=True)
            return None
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.settings.read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await _error(send, RequestError(408, f"request body not received within "
                                                     f"{self.settings.read_timeout_s:g} s",
                                                "send the whole body at once"), close=True)
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _error(send, _too_large(size, limit, more=True), close=True)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(size: int, limit: int, more: bool = False) -> RequestError:
    return RequestError(413, f"request body is {size}{'+' if more else ''} bytes; the limit is {limit}",
                        "send fewer or shorter texts per request")


async def _error(send: Send, err: RequestError, close: bool = False) -> None:
    headers = {**err.headers(), **({"connection": "close"} if close else {})}
    response = JSONResponse(err.body(), status_code=err.status, headers=headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error", "hint"}`` JSON (404/405 and parse errors included); 500 is a bug."""
    @app.exception_handler(RequestError)
    async def _request_error(_req: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            err = RequestError(400, f"body is not valid JSON: {errors[0].get('ctx', {}).get('error', '')}".rstrip(": "),
                               'send {"texts": ["..."]} with Content-Type: application/json')
        else:
            err = RequestError(422, describe_validation_error(errors), REQUEST_HINT)
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)  # 404, 405 and FastAPI's own body errors
    async def _http_error(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        hints = {404: "see GET /openapi.json for the endpoints", 405: "see GET /openapi.json for the methods"}
        body = ErrorBody(error=f"{exc.detail} ({req.method} {req.url.path})", hint=hints.get(exc.status_code))
        return JSONResponse(body.model_dump(exclude_none=True), status_code=exc.status_code,
                            headers=dict(exc.headers or {}))

    @app.exception_handler(MtbranchError)  # e.g. a task gone after a hot swap between the check and the batch
    async def _mtbranch_error(_req: Request, exc: MtbranchError) -> JSONResponse:
        return JSONResponse(ErrorBody(error=exc.message, hint=exc.hint).model_dump(exclude_none=True), status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


PREDICT_OPENAPI: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/PredictRequest"}}}}}
_RETRY = {"headers": {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, all with the :class:`ErrorBody` shape."""
    what = {400: "body is not valid JSON (invalid UTF-8, too deeply nested, number out of range ...)",
            401: "missing or wrong bearer token", 403: "admin endpoint disabled",
            408: "request body not received within the read timeout", 409: "reload failed; the old version serves",
            413: "body, text count or a text over the limits", 415: "Content-Type is not JSON",
            422: "well-formed JSON that is not a valid request", 500: "a bug (logged)",
            503: "not ready, busy, timed out, or shutting down (Retry-After when retrying helps)"}
    return {c: {"model": ErrorBody, "description": what[c], **(_RETRY if c == 503 else {})} for c in codes}


def install_openapi(app: FastAPI) -> None:
    """The OpenAPI document, with ``PredictRequest`` (parsed by :func:`parse_request`, not by FastAPI) in it."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            js = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(js.pop("$defs", {}))
            comps["PredictRequest"] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _State:
    def __init__(self) -> None:
        self.served: Served | None = None
        self.batcher: Batcher | None = None
        self.metrics = Metrics()
        self.ready = False
        self.draining = False  # readiness 503 (SIGTERM received)
        self.closing = False  # listener closed: new requests get 503
        self.error: str | None = None
        self.started = time.time()
        self.last_reload: dict[str, Any] | None = None
        self.reloading = asyncio.Lock()

    def set_ready(self, value: bool) -> None:
        self.ready = value
        self.metrics.ready.set(1 if value and not self.draining else 0)


def create_app(model: Any = None, *, artifact: str | Path | None = None, settings: ServeSettings | None = None,
               load_kwargs: dict[str, Any] | None = None) -> FastAPI:
    """The HTTP app for a loaded ``model``, or for ``artifact`` loaded in the background at start-up.

    With both, ``model`` serves first and ``artifact`` is what ``POST /admin/reload`` loads again (with
    ``load_kwargs``). ``/health`` answers as soon as the server runs; ``/ready`` once the model is warmed up.
    """
    if model is None and artifact is None:
        raise ValueError("pass model=, artifact= or both")
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
                state.batcher.abort(_shutdown_error())
                await state.batcher.stop()

    async def _prepare() -> None:
        loop = asyncio.get_running_loop()
        try:
            if model is None:
                assert artifact is not None
                served = await loop.run_in_executor(None, load_served, artifact, load_kwargs)
            else:
                await loop.run_in_executor(None, warm_up, model)
                served = Served(model, lock_sha256(artifact, model), task_infos(model), time.time())
        except Exception as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", state.error)
            return
        state.served = served
        state.metrics.set_model(served)
        state.batcher = Batcher(served, settings, state.metrics)
        state.batcher.start()
        state.set_ready(True)
        log.info("ready: %s (lock sha256 %s)", ", ".join(t.name for t in served.infos), served.version[:12])

    app = FastAPI(title="mtbranch", version=_version(), lifespan=lifespan,
                  description="A composed multi-task model: one trunk pass per request batch, many task branches.")
    app.state.mtbranch = state
    app.add_middleware(Guard, state=state, settings=settings)  # type: ignore[arg-type]
    install_error_handlers(app)
    install_openapi(app)

    @app.get("/health", summary="Liveness (200 while the process answers), the version served, the last reload.")
    async def health() -> dict[str, Any]:
        s = state.served
        return {"status": "draining" if state.draining else "ok", "version": s.version if s else None,
                "tasks": [t.name for t in s.infos] if s else [], "last_reload": state.last_reload}

    @app.get("/ready", summary="Readiness: loaded, warmed up and not draining.",
             responses=error_responses(503))
    async def ready() -> JSONResponse:
        if state.ready and not state.draining and state.served is not None:
            return JSONResponse({"status": "ready", "tasks": [t.name for t in state.served.infos],
                                 "version": state.served.version})
        if state.draining:
            return JSONResponse({"error": "shutting down", "hint": "send traffic to another replica"},
                                status_code=503)
        if state.error:
            return JSONResponse({"error": f"model failed to load: {state.error}"}, status_code=503)
        return JSONResponse({"error": "loading", "hint": "poll GET /ready"}, status_code=503)

    @app.get("/tasks", summary="The tasks served.", response_model=list[TaskInfo], responses=error_responses(503))
    async def tasks() -> list[TaskInfo]:
        return _served().infos

    @app.get("/stats", summary="Counters: requests, merged batches, trunk passes.")
    async def stats() -> dict[str, Any]:
        b = state.batcher
        return {**(b.stats.as_dict() if b else {}), "uptime_s": round(time.time() - state.started, 1),
                "max_batch_size": settings.max_batch_size, "max_batch_tokens": settings.max_batch_tokens,
                "max_batch_wait_ms": settings.max_batch_wait_ms, "max_queue": settings.max_queue,
                "queued": len(b._pending) if b else 0}

    @app.get("/metrics", summary="Prometheus metrics (text exposition format).")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/predict", summary="Run tasks on texts.", response_model=PredictResponse,
              responses=error_responses(400, 408, 413, 415, 422, 500, 503), openapi_extra=PREDICT_OPENAPI)
    async def predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        served = _served()
        check_content_type(request.headers.get("content-type"))
        body = parse_request(await request.body(), settings.limits)
        names = resolve_request(body, served.infos, settings.limits)
        assert state.batcher is not None
        job = await state.batcher.tokenize(served, body.texts, body.text_pairs, names, body.raw)
        results, version = await state.batcher.submit(job)
        seconds = time.perf_counter() - t0
        for name in names:
            state.metrics.task_latency.labels(name).observe(seconds)
        return JSONResponse(PredictResponse(results=results, tasks=names).model_dump(),
                            headers={VERSION_HEADER: version})

    @app.post("/admin/reload", summary="Hot swap: load the artifact again (verified) and serve it.",
              responses=error_responses(401, 403, 409, 503))
    async def reload(request: Request) -> JSONResponse:
        _authorize(request)
        if artifact is None:
            raise RequestError(409, "this server was started with a model object, not an artifact path",
                               "create_app(model, artifact=PATH) to enable reloads")
        if state.reloading.locked():
            raise RequestError(409, "a reload is already running", "wait for it; GET /health shows the result")
        old = _served()
        async with state.reloading:
            t0 = time.perf_counter()
            try:
                new = await asyncio.wait_for(_in_daemon_thread(load_served, artifact, load_kwargs),
                                             settings.reload_timeout_s)
            except Exception as exc:
                reason = _reload_reason(exc, settings.reload_timeout_s)
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
            assert state.batcher is not None
            state.served = new
            state.batcher.served = new  # the next batch runs on it; the one running finishes on the old one
            state.metrics.set_model(new)
            state.metrics.reloads.labels("swapped").inc()
            state.last_reload = {"ok": True, "at": time.time(), "swapped": True, "version": new.version,
                                 "previous": old.version}
            log.info("swapped %s -> %s in %.2f s", old.version[:12], new.version[:12], seconds)
            return JSONResponse({"status": "swapped", "previous": old.version, "version": new.version,
                                 "tasks": [t.name for t in new.infos], "load_s": seconds})

    def _authorize(request: Request) -> None:
        if not settings.admin_token:
            raise RequestError(403, "the admin endpoint is disabled",
                               "start the server with --admin-token-env (a token in an environment variable)")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.admin_token}".encode()):
            raise RequestError(401, "missing or wrong admin token", "send Authorization: Bearer TOKEN")

    def _served() -> Served:
        if state.closing or (state.draining and state.served is None):
            raise _shutdown_error()
        if not state.ready or state.served is None:
            raise RequestError(503, "model failed to load: " + state.error if state.error else "model is loading",
                               "poll GET /ready", retry_after=None if state.error else 1)
        return state.served

    return app


def _shutdown_error() -> RequestError:
    return RequestError(503, "the server is shutting down", "retry on another replica", retry_after=1)


def _version() -> str:
    from mtbranch import __version__

    return __version__


def h11_with_read_timeout(read_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request head (slow or idle clients are disconnected).

    uvicorn itself only times out idle keep-alive connections *after* a response; a client that connects and
    trickles its headers would hold the connection forever.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ReadTimeoutH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(read_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()  # no request head within the deadline

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # a whole head arrived; the body has its own deadline (Guard)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the next request's head

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return ReadTimeoutH11


def make_server(app: FastAPI, host: str, port: int, *, log_level: str = "info",
                settings: ServeSettings | None = None) -> Any:
    """A uvicorn server whose SIGTERM/SIGINT drain the app (see :class:`GracefulServer`)."""
    import uvicorn

    settings = settings or ServeSettings()
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            http=h11_with_read_timeout(settings.read_timeout_s),
                            timeout_keep_alive=max(1, math.ceil(settings.keep_alive_s)),
                            timeout_graceful_shutdown=math.ceil(settings.grace_s + 5))
    return _graceful_server_class()(config, app.state.mtbranch, settings)


def _graceful_server_class() -> type[Any]:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """SIGTERM/SIGINT: readiness 503 at once; after ``drain_delay_s`` the listener closes (uvicorn's shutdown);
        requests in flight are answered; after ``grace_s`` the rest get 503 JSON. A second signal forces the exit.
        The process then exits normally (status 0), without re-raising the signal."""

        def __init__(self, config: Any, state: _State, settings: ServeSettings) -> None:
            super().__init__(config)
            self.state = state
            self.settings = settings
            self.drain_started: float | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.drain_started is not None:
                self.force_exit = self.should_exit = True
                return
            self.drain_started = time.monotonic()
            self.state.draining = True
            self.state.set_ready(self.state.ready)
            log.info("signal %d: draining (readiness 503; listener closes in %g s, grace %g s)", sig,
                     self.settings.drain_delay_s, self.settings.grace_s)

        async def on_tick(self, counter: int) -> bool:
            if (self.drain_started is not None and not self.should_exit
                    and time.monotonic() - self.drain_started >= self.settings.drain_delay_s):
                self.state.closing = True
                self.should_exit = True
                asyncio.get_running_loop().create_task(self._expire())
            return bool(await super().on_tick(counter))

        async def _expire(self) -> None:
            await asyncio.sleep(self.settings.grace_s)
            b = self.state.batcher
            n = b.abort(_shutdown_error()) if b is not None else 0
            if n:
                self.state.metrics.rejected.labels("shutdown").inc(n)
                log.warning("grace of %g s over: %d request(s) answered 503", self.settings.grace_s, n)

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return GracefulServer


def run_server(app: FastAPI, host: str, port: int, *, log_level: str = "info",
               settings: ServeSettings | None = None) -> None:
    """Blocking uvicorn run (used by the CLI); returns after a graceful drain."""
    make_server(app, host, port, log_level=log_level, settings=settings).run()
    log.info("stopped")
