"""OpenTelemetry spans of `mtbranch serve`: one request's trace, collected with the SDK's in-memory exporter, continues
the caller's W3C traceparent and lists tokenize, queue wait, batch, trunk pass (with its depth) and each branch."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider  # the [otel] extra, in the dev extra
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mtbranch.composition.artifact import load
from mtbranch.serve.app import ServeSettings, create_app

from helpers import make_serving_artifact, results_close

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture(scope="module")
def model(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load(make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("tracing")))


def traced_app(model: Any) -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return create_app(model, settings=ServeSettings(max_batch_wait_ms=1), tracer_provider=provider), exporter


def ready(client: TestClient) -> TestClient:
    deadline = time.time() + 30
    while client.get("/ready").status_code != 200:
        assert time.time() < deadline, "not ready"
        time.sleep(0.05)
    return client


def tree(spans: list[Any]) -> list[str]:
    """The spans as an indented list (parent before children), for reading a failure."""
    by_parent: dict[int | None, list[Any]] = {}
    ids = {s.context.span_id for s in spans}
    for s in sorted(spans, key=lambda s: s.start_time):
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(s)
    out: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in by_parent.get(parent, []):
            attrs = {k: v for k, v in (s.attributes or {}).items() if k.startswith("mtbranch.")}
            out.append("  " * depth + f"{s.name} {attrs}")
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return out


@pytest.mark.parametrize("native", [True, False], ids=["fastapi-own-spans", "instrumentation-fastapi"])
def test_one_request_trace_from_the_callers_traceparent(model: Any, native: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The request span is FastAPI's own where it has them, else opentelemetry-instrumentation-fastapi's."""
    import mtbranch.serve.tracing as tracing

    if native and not tracing.native_fastapi():
        pytest.skip("this FastAPI has no telemetry of its own")
    monkeypatch.setattr(tracing, "native_fastapi", lambda: native)
    app, exporter = traced_app(model)
    body = {"texts": ["john visited paris .", "a fine film"], "tasks": ["sentiment", "entities"]}
    with TestClient(app) as client:
        r = ready(client).post("/predict", json=body, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200, r.text
    assert results_close(r.json()["results"], model.predict(body["texts"], tasks=body["tasks"]))
    spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == TRACE_ID]
    listing = tree(spans)
    print("\n".join(listing), file=sys.stderr)  # the trace, in the test's output (pytest -s)
    posts = [s for s in exporter.get_finished_spans() if s.name == "POST /predict"]
    assert len(posts) == 1 and posts[0] in spans, listing  # the request continued the caller's trace
    by_name = {s.name: s for s in spans}
    by_id = {s.context.span_id: s for s in spans}
    request = next(s for s in spans if s.parent is not None and s.parent.span_id == int(CALLER_SPAN, 16))
    assert request.name == "POST /predict" and request.parent.is_remote, listing

    def under_request(span: Any) -> bool:  # FastAPI's own operation spans (fastapi.endpoint) may sit between
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            if span is request:
                return True
        return False

    for name in ("tokenize", "queue wait", "batch"):
        assert under_request(by_name[name]), listing
    handler = by_id[by_name["tokenize"].parent.span_id]  # the request's span, or FastAPI's endpoint span in it
    assert handler.attributes["mtbranch.tasks"] == ("sentiment", "entities")
    trunk = by_name["trunk pass"]
    assert trunk.parent.span_id == by_name["batch"].context.span_id
    depths = {b.name: b.manifest.attach_depth for b in model.branches}
    assert trunk.attributes["mtbranch.depth"] == max(depths["sentiment"], depths["entities"]) == 3
    assert trunk.attributes["mtbranch.sequences"] == 2
    for task in ("sentiment", "entities"):
        branch = by_name[f"branch {task}"]
        assert branch.parent.span_id == trunk.context.span_id and branch.attributes["mtbranch.rows"] == 2
        assert trunk.start_time <= branch.start_time <= branch.end_time <= trunk.end_time
    assert by_name["queue wait"].end_time <= by_name["batch"].start_time <= trunk.start_time
    assert "branch similarity" not in by_name  # only the branches the request asked for


def test_protocol_routes_are_traced_too(model: Any) -> None:
    app, exporter = traced_app(model)
    with TestClient(app) as client:
        r = ready(client).post("/classify", json={"input": "a fine film"}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200, r.text
    names = {s.name for s in exporter.get_finished_spans()}
    assert {"POST /classify", "tokenize", "queue wait", "batch", "trunk pass", "branch sentiment"} <= names


def test_tracing_off_costs_nothing(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a provider no span code runs: the OpenTelemetry modules are not even imported by a request."""
    import mtbranch.serve.tracing as tracing

    def fail(*a: Any, **k: Any) -> Any:
        raise AssertionError("tracing code ran with tracing off")

    for name in ("setup", "instrument", "Recorder"):
        monkeypatch.setattr(tracing, name, fail)
    app = create_app(model, settings=ServeSettings(max_batch_wait_ms=1))
    with TestClient(app) as client:
        assert ready(client).post("/predict", json={"texts": ["a"]}).status_code == 200
        assert app.state.mtbranch.tracing is None and app.state.mtbranch.batcher.tracing is None


def test_otel_without_the_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtbranch.cli.serve import _tracer_provider
    from mtbranch.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(MissingExtra) as err:
        _tracer_provider(True)  # --otel asked for: exit 1 with the pip line
    assert err.value.hint == "pip install 'mtbranch[otel]'"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert _tracer_provider(None) is None  # only an endpoint in the environment: served untraced, with a warning
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert _tracer_provider(None) is None and _tracer_provider(False) is None


def test_spans_go_to_the_standard_otlp_exporter_configured_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtbranch.serve import tracing

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.wanted(None) and not tracing.wanted(False)
    exporter = tracing._exporter()
    assert type(exporter).__module__ == "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    assert exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
