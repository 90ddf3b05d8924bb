"""The Prometheus metrics of ``mtbranch serve`` (``GET /metrics``), in a registry per app."""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30)


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("mtbranch_requests", "HTTP responses by path and status code", ["path", "code"],
                                registry=r)
        self.rejected = Counter("mtbranch_rejected", "Requests refused or dropped by backpressure or shutdown",
                                ["reason"], registry=r)
        self.task_latency = Histogram("mtbranch_task_latency_seconds",
                                      "Latency of answered /predict requests, once per task they asked for",
                                      ["task"], buckets=LATENCY_BUCKETS, registry=r)
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

    def set_model(self, version: str, tasks: list[str]) -> None:
        self.model.clear()
        self.model.labels(lock_sha256=version, tasks=",".join(tasks)).set(1)

    def observe_pass(self, sequences: int, tokens: int) -> None:
        """One trunk pass (:data:`mtbranch.serve.batching.PassHook`)."""
        self.batch_sequences.observe(sequences)
        self.batch_tokens.observe(tokens)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body: Any = generate_latest(self.registry)
        return bytes(body), CONTENT_TYPE_LATEST
