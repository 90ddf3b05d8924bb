"""``mtbranch serve``: the composed model behind a FastAPI app, for production traffic.

:func:`create_app` assembles it; each concern has its module:

* **Batching** (:mod:`mtbranch.serve.batcher`): requests arriving within ``max_batch_wait_ms`` of each other are
  gathered while they fit one trunk pass (``max_batch_size`` sequences, ``max_batch_tokens`` padded tokens) and
  run by :func:`mtbranch.serve.batching.run_jobs` in one worker thread, so the event loop keeps accepting requests.
* **Routes** (:mod:`mtbranch.serve.routes`): ``/predict``, ``/health``, ``/ready``, ``/tasks``, ``/stats``,
  ``/metrics``, ``/admin/reload``, over the app's :class:`~mtbranch.serve.state.ServerState`.
* **The HTTP edge** (:mod:`mtbranch.serve.http`): the error shape, the OpenAPI document, backpressure (at most
  ``max_queue`` ``/predict`` requests admitted; the next one gets 503 with ``Retry-After`` before its body is
  read), body limits and deadlines.
* **Metrics** (:mod:`mtbranch.serve.metrics`): ``/metrics`` in Prometheus' text format, one registry per app.
* **The server** (:mod:`mtbranch.serve.server`): uvicorn with a request-head deadline; SIGTERM/SIGINT drain.
* **Hot swap**: ``POST /admin/reload`` (bearer token) loads the artifact again, verifies its hashes and lock, warms
  it up and swaps it in between two batches; a failure keeps the old version serving and says why. Every batch runs
  on one version, named in each response's ``x-mtbranch-version`` header (the sha256 of the lock file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from mtbranch.serve import canary_routes, protocols, tracing
from mtbranch.serve.batcher import Batcher
from mtbranch.serve.http import Guard, install_error_handlers, install_openapi
from mtbranch.serve.routes import router
from mtbranch.serve.schema import ServeSettings, warm_up
from mtbranch.serve.state import ServerState, load_served, served_model, shutdown_error

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

__all__ = ["ServeSettings", "create_app"]
log = logging.getLogger("mtbranch.serve")


def create_app(model: ComposedModel | None = None, *, artifact: str | Path | None = None,
               settings: ServeSettings | None = None, load_kwargs: dict[str, Any] | None = None,
               tracer_provider: Any = None) -> FastAPI:
    """The HTTP app for a loaded ``model``, or for ``artifact`` loaded in the background at start-up.

    With both, ``model`` serves first and ``artifact`` is what ``POST /admin/reload`` loads again (with
    ``load_kwargs``). ``/health`` answers as soon as the server runs; ``/ready`` once the model is warmed up.
    With ``tracer_provider`` (OpenTelemetry SDK; the ``[otel]`` extra), requests and batches are traced
    (:mod:`mtbranch.serve.tracing`).
    """
    if model is None and artifact is None:
        raise ValueError("pass model=, artifact= or both")
    settings = settings or ServeSettings()
    state = ServerState(settings, model, artifact, load_kwargs)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ready = asyncio.get_running_loop().create_task(start(state))
        try:
            yield
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ready
            if state.batcher is not None:
                state.batcher.abort(shutdown_error())
                await state.batcher.stop()

    app = FastAPI(title="mtbranch", version=_version(), lifespan=lifespan,
                  description="A composed multi-task model: one trunk pass per request batch, many task branches.",
                  **tracing.app_kwargs(tracer_provider))
    app.state.mtbranch = state
    app.add_middleware(Guard, state=state, settings=settings)
    install_error_handlers(app)
    app.include_router(router)
    for protocol_router in protocols.routers():  # v2 (KServe, Triton), TEI, vLLM: beside the native routes
        app.include_router(protocol_router)
    app.include_router(canary_routes.router)
    install_openapi(app)
    if tracer_provider is not None:
        state.tracing = tracing.setup(app, tracer_provider)
    return app


async def start(state: ServerState) -> None:
    """Load (or warm up the model given), start the batcher, turn ready; a failure is kept for ``/ready``."""
    loop = asyncio.get_running_loop()
    try:
        if state.model is None:
            assert state.artifact is not None
            served = await loop.run_in_executor(None, load_served, state.artifact, state.load_kwargs)
        else:
            await loop.run_in_executor(None, warm_up, state.model)
            served = served_model(state.model, state.artifact)
    except Exception as exc:
        state.error = f"{type(exc).__name__}: {exc}"
        log.error("model failed to load: %s", state.error)
        return
    state.batcher = Batcher(served, state.settings, state.metrics)
    state.batcher.tracing = state.tracing
    state.serve(served)
    state.batcher.start()
    state.set_ready(True)
    log.info("ready: %s (lock sha256 %s)", ", ".join(t.name for t in served.infos), served.version[:12])


def _version() -> str:
    from mtbranch import __version__

    return __version__
