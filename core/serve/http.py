"""The HTTP edge of ``mtbranch serve`` (and of the Ray deployment): the error shape, the OpenAPI document, the guard.

* Every error is ``{"error", "hint"}`` JSON (:func:`install_error_handlers`), as the OpenAPI document says
  (:func:`error_responses`, :func:`install_openapi`).
* :class:`Guard`, ASGI middleware: backpressure (at most ``max_queue`` ``/predict`` requests admitted at once; the
  next one gets 503 JSON with ``Retry-After`` before its body is read), body size and read deadline, and the
  ``mtbranch_requests`` counter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtbranch.errors import MtbranchError
from mtbranch.serve import protocols
from mtbranch.serve.fair import edge_refusal
from mtbranch.serve.schema import (
    REQUEST_HINT,
    ErrorBody,
    PredictRequest,
    RequestError,
    ServeSettings,
    describe_validation_error,
)
from mtbranch.serve.state import ServerState

log = logging.getLogger("mtbranch.serve")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """ASGI middleware: counts responses, admits at most ``max_queue`` requests that run the model (``/predict``
    and the protocol routes of :mod:`mtbranch.serve.protocols`), bounds and times bodies.

    A request over the admission limit gets 503 + Retry-After before its body is read; a body over
    ``max_body_bytes`` gets 413 (by Content-Length or while streaming); a body slower than ``read_timeout_s``
    gets 408. All in the error shape (the protocol's own on its paths), with ``Connection: close`` when the body
    was not read to its end.
    """

    PATHS = frozenset({"/predict", "/health", "/ready", "/tasks", "/stats", "/metrics", "/admin/reload",
                       "/openapi.json", "/docs"})

    def __init__(self, app: ASGIApp, state: ServerState, settings: ServeSettings) -> None:
        self.app = app
        self.state = state
        self.settings = settings
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        label = path if path in self.PATHS else protocols.path_label(path) or "other"
        code = 500

        async def counted_send(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        admitted = False
        try:
            if scope.get("method") == "POST" and (path == "/predict" or protocols.admitted(path)):
                if self.in_flight >= self.settings.max_queue:
                    self.state.metrics.rejected.labels("queue_full").inc()
                    b = self.state.batcher
                    retry = b.retry_after(self.in_flight) if b is not None else 1
                    await _error(counted_send, RequestError(
                        503, f"server busy: {self.in_flight} requests in flight (limit {self.settings.max_queue})",
                        "retry after the Retry-After seconds, or on another replica", retry_after=retry), close=True,
                        path=path)
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
            if path == "/predict" and (refused := self._over_quota(scope, body)) is not None:
                await _error(counted_send, refused, path=path)  # the body was read: the connection stays open
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

    def _over_quota(self, scope: Scope, body: bytes) -> RequestError | None:
        """429 for an owner over its quota, before FastAPI routes the request (:func:`~.fair.edge_refusal`)."""
        quotas = self.state.quotas
        if not quotas.rates:
            return None
        content_type = dict(scope.get("headers") or []).get(b"content-type")
        return edge_refusal(body, None if content_type is None else content_type.decode("latin-1"), self.state.served,
                            quotas, self.settings.limits)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        limit = self.settings.limits.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _error(send, _too_large(int(declared), limit), close=True, path=scope.get("path", ""))
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
                                                "send the whole body at once"), close=True,
                             path=scope.get("path", ""))
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _error(send, _too_large(size, limit, more=True), close=True, path=scope.get("path", ""))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(size: int, limit: int, more: bool = False) -> RequestError:
    return RequestError(413, f"request body is {size}{'+' if more else ''} bytes; the limit is {limit}",
                        "send fewer or shorter texts per request")


async def _error(send: Send, err: RequestError, close: bool = False, path: str = "") -> None:
    headers = {**err.headers(), **({"connection": "close"} if close else {})}
    # each protocol's own error shape (v2, TEI, vLLM); {"error", "hint"} elsewhere
    response = JSONResponse(protocols.error_body(path, err), status_code=err.status, headers=headers)
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
            401: "missing or wrong bearer token", 403: "admin endpoint disabled", 404: "no such canary or promotion",
            408: "request body not received within the read timeout", 409: "reload failed; the old version serves",
            413: "body, text count or a text over the limits", 415: "Content-Type is not JSON",
            422: "well-formed JSON that is not a valid request", 429: "over the owner's quota (Retry-After)",
            500: "a bug (logged)",
            503: "not ready, busy, timed out, or shutting down (Retry-After when retrying helps)"}
    return {c: {"model": ErrorBody, "description": what[c], **(_RETRY if c in (429, 503) else {})} for c in codes}


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
