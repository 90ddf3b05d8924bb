"""OpenTelemetry spans for ``mtbranch serve`` (the optional ``[otel]`` extra), off at no cost without it.

One trace per request, continuing the caller's W3C ``traceparent`` (the global propagator: ``OTEL_PROPAGATORS``,
default ``tracecontext,baggage``)::

    POST /predict                      the request: a SERVER span (FastAPI's own where it has them, with its
    │                                  operation spans such as fastapi.endpoint between; else those of
    │                                  opentelemetry-instrumentation-fastapi)
    ├── tokenize
    ├── queue wait                     submitted -> its batch starts
    └── batch                          mtbranch.batch.requests: the requests merged with it
        └── trunk pass                 mtbranch.depth (trunk layers run), sequences, padded tokens
            ├── branch sentiment       the branch's forward over the rows that asked for it
            └── branch entities

A trunk pass shared by several requests appears in each of their traces (same times), so every trace is whole.
Spans go to the standard OTLP exporter, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables
(:func:`provider_from_env`). With tracing off (no tracer provider) no span code runs and the SDK is not imported:
the batcher checks one attribute per batch and the trunk pass one context variable per pass.
"""

from __future__ import annotations

import contextvars
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

SCOPE = "mtbranch.serve"


@dataclass
class Pass:
    """One trunk pass as it ran: times (ns since the epoch), the trunk depth run, its rows."""

    start: int
    end: int
    depth: int
    sequences: int
    tokens: int
    owners: set[int]  # id() of the texts list of each request with rows in it (kept by a re-tokenized job)
    branches: list[tuple[str, int, int, int]]  # (name, start, end, rows)


@dataclass
class Recorder:
    """What the trunk passes of one batch did, filled in the worker thread while the batch runs."""

    passes: list[Pass] = field(default_factory=list)
    branches: list[tuple[str, int, int, int]] = field(default_factory=list)
    open: dict[str, int] = field(default_factory=dict)

    def add_pass(self, start: int, depth: int, sequences: int, tokens: int, owners: set[int]) -> None:
        self.passes.append(Pass(start, time.time_ns(), depth, sequences, tokens, owners, self.branches))
        self.branches = []


_RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("mtbranch_trace", default=None)


def recorder() -> Recorder | None:
    """The recorder of the batch running in this thread (``None``: not traced)."""
    return _RECORDER.get()


@contextmanager
def recording(rec: Recorder) -> Iterator[Recorder]:
    token = _RECORDER.set(rec)
    try:
        yield rec
    finally:
        _RECORDER.reset(token)


_instrumented: weakref.WeakSet[Any] = weakref.WeakSet()


def _before_branch(module: Any, _args: Any) -> None:
    rec = _RECORDER.get()
    if rec is not None:
        rec.open[module.name] = time.time_ns()


def _after_branch(module: Any, _args: Any, output: Any) -> None:
    rec = _RECORDER.get()
    if rec is not None and module.name in rec.open:
        rec.branches.append((module.name, rec.open.pop(module.name), time.time_ns(), int(output.shape[0])))


def instrument(model: ComposedModel) -> None:
    """Time each branch's forward (torch forward hooks; idle unless a traced batch runs in the thread)."""
    for b in model.branches:
        if b not in _instrumented:
            b.register_forward_pre_hook(_before_branch)
            b.register_forward_hook(_after_branch)
            _instrumented.add(b)


class Tracing:
    """The spans of one app, from ``provider`` (an SDK ``TracerProvider``)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, trace

        from mtbranch import __version__

        self.tracer = provider.get_tracer(SCOPE, __version__)
        self._context = context
        self._trace = trace

    def current(self) -> Any:
        """The caller's context (its current span: the request's), to parent spans made elsewhere."""
        return self._context.get_current()

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Any]:
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def annotate(self, **attributes: Any) -> None:
        """Attributes on the current span (the request's)."""
        self._trace.get_current_span().set_attributes(attributes)

    def batch(self, parent: Any, queued: int, started: int, ended: int, texts_id: int, requests: int,
              rec: Recorder, error: BaseException | None) -> None:
        """One request's share of a batch: queue wait, the batch, its trunk passes and their branches."""
        from opentelemetry.trace import Status, StatusCode

        self.tracer.start_span("queue wait", context=parent, start_time=queued).end(end_time=started)
        batch = self.tracer.start_span("batch", context=parent, start_time=started,
                                       attributes={"mtbranch.batch.requests": requests})
        if error is not None:
            batch.set_status(Status(StatusCode.ERROR, str(error)))
        inside = self._trace.set_span_in_context(batch, parent)
        for p in rec.passes:
            if texts_id not in p.owners:
                continue
            span = self.tracer.start_span("trunk pass", context=inside, start_time=p.start, attributes={
                "mtbranch.depth": p.depth, "mtbranch.sequences": p.sequences, "mtbranch.padded_tokens": p.tokens,
                "mtbranch.requests": len(p.owners)})
            in_pass = self._trace.set_span_in_context(span, inside)
            for name, start, end, rows in p.branches:
                self.tracer.start_span(f"branch {name}", context=in_pass, start_time=start, attributes={
                    "mtbranch.task": name, "mtbranch.rows": rows}).end(end_time=end)
            span.end(end_time=p.end)
        batch.end(end_time=ended)


def native_fastapi() -> bool:
    """Whether FastAPI traces requests itself (``FastAPI(telemetry=...)``, recent FastAPI releases)."""
    import inspect

    from fastapi import FastAPI

    return "telemetry" in inspect.signature(FastAPI.__init__).parameters


def app_kwargs(provider: Any) -> dict[str, Any]:
    """``FastAPI(**app_kwargs(provider))``: FastAPI's own request spans with ``provider``, where FastAPI has them."""
    return {"telemetry": {"tracer_provider": provider}} if provider is not None and native_fastapi() else {}


def setup(app: Any, provider: Any) -> Tracing:
    """Trace ``app``'s requests (a SERVER span each, parent from ``traceparent``) and its batches with ``provider``.

    The request spans are FastAPI's own where it has them (the app was built with :func:`app_kwargs`, or it uses
    the global provider), else opentelemetry-instrumentation-fastapi's middleware: never both."""
    if not native_fastapi():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])
    return Tracing(provider)


def wanted(flag: bool | None) -> bool:
    """``--otel`` / ``--no-otel``, or by default: on when an OTLP endpoint is configured in the environment."""
    if flag is not None:
        return flag
    return any(os.environ.get(v) for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def provider_from_env() -> Any:
    """The process's SDK tracer provider (one set by ``opentelemetry-instrument`` is kept), else one exporting with
    the standard OTLP exporter, configured by the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``, ``OTEL_EXPORTER_OTLP_PROTOCOL``:
    ``http/protobuf``, the default, or ``grpc``), ``OTEL_SERVICE_NAME`` (default ``mtbranch``) and
    ``OTEL_TRACES_SAMPLER``."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "mtbranch"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(provider)
    return provider


def _exporter() -> Any:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol == "grpc":
        from mtbranch.errors import MtbranchError

        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise MtbranchError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the OTLP gRPC exporter", hint=(
                "pip install opentelemetry-exporter-otlp-proto-grpc, or use http/protobuf (the default)")) from None
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()
