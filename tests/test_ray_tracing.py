"""Ray Serve replicas trace like `mtbranch serve`: a real local Ray, a replica exporting with the standard OTLP/HTTP
exporter (configured by OTEL_* variables in its runtime_env) to a collector stand-in on loopback in this test."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # [otel]

from mtbranch.composition.artifact import load

from helpers import free_port, make_serving_artifact, results_close

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """Accepts OTLP/HTTP protobuf exports on /v1/traces and keeps their spans."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                req = ExportTraceServiceRequest.FromString(body)
                spans.extend(s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.slow
def test_ray_replica_traces_a_request_from_the_callers_traceparent(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from ray import serve

    from mtbranch.serve.ray_app import build_app

    artifact = make_serving_artifact(tiny_bert_dir, tmp_path)
    collector = Collector()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_SERVICE_NAME": "mtbranch-ray"}
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, log_to_driver=False,
             configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(str(artifact), dtype="float32", batch_wait_timeout_s=0.01,
                            ray_actor_options={"runtime_env": {"env_vars": env}}), name="traced", route_prefix="/")
        body = {"texts": ["john visited paris .", "a fine film"], "tasks": ["sentiment", "entities"]}
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=60,
                       headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
        assert r.status_code == 200, r.text
        assert results_close(r.json()["results"], load(artifact).predict(body["texts"], tasks=body["tasks"]))
        deadline = time.time() + 30
        while time.time() < deadline and not any(s.name == "branch entities" for s in collector.spans):
            time.sleep(0.2)
    finally:
        serve.shutdown()
        ray.shutdown()
        collector.server.shutdown()
    spans = [s for s in collector.spans if s.trace_id.hex() == TRACE_ID]
    by_name = {s.name: s for s in spans}
    assert {"tokenize", "queue wait", "batch", "trunk pass", "branch sentiment", "branch entities"} <= set(by_name), \
        sorted(s.name for s in collector.spans)
    listing = [(s.name, s.span_id.hex(), s.parent_span_id.hex()) for s in spans]
    request = next(s for s in spans if s.parent_span_id.hex() == CALLER_SPAN)
    assert request.name.startswith("POST")
    by_id = {s.span_id: s for s in spans}
    parent = by_id[by_name["batch"].parent_span_id]  # the request's span, or FastAPI's endpoint span in it
    assert parent is request or parent.parent_span_id == request.span_id, listing
    assert sum(s.kind == s.SPAN_KIND_SERVER for s in spans) == 1, listing  # one request span, never two
    assert by_name["trunk pass"].parent_span_id == by_name["batch"].span_id
    depth = {a.key: a.value.int_value for a in by_name["trunk pass"].attributes}["mtbranch.depth"]
    assert depth == 3
    assert by_name["branch entities"].parent_span_id == by_name["trunk pass"].span_id
