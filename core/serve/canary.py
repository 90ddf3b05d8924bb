"""Canary releases of one branch inside the live model: version B next to the live version A, in the same pass.

A :class:`Canary` holds B's module behind a key no task name can have (``sentiment@canary1``), so it never joins
the model's plan (``/tasks``, ``predict`` and every other branch are untouched). A request for the task gets B
added to its rows' reads (:meth:`Canaries.attach`): B forks at its own attach depth in the same trunk pass as
everything else. Modes:

* ``shadow``: A answers, B runs on every request for the task; agreement and B's compute time are recorded;
* ``split``: a fraction of requests, sticky by a request key (a header, else the first text), is answered by B
  (A still runs on those, for agreement).

Promotion and rollback (they write the artifact) are the admin routes' (:mod:`mtbranch.serve.canary_routes`).
Metrics are per branch version and role (``live``, ``canary``: answering in split, ``shadow``: computed, not
answering): requests, latency, label distribution, agreement with A, B's own forward seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtbranch.errors import MtbranchError
from mtbranch.serve.batching import Job, Results
from mtbranch.serve.metrics import LATENCY_BUCKETS

Mode = Literal["shadow", "split"]
KEY_SUFFIX = "@canary"  # '@' is not allowed in task names: a key (sentiment@canary3) never meets a real task
DEFAULT_KEY_HEADER = "x-mtbranch-key"


class CanaryModule:
    """B as the trunk pass and ``row_result`` see it: B's module under the canary key, its forward time counted
    (the model's one worker thread runs it, so the counter needs no lock)."""

    def __init__(self, module: Any, key: str) -> None:
        self.module = module
        self.name = key
        self.seconds = 0.0

    def __call__(self, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.module(*args)
        finally:
            self.seconds += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:  # manifest, sequence_level, head_type, head_spec: B's own
        return getattr(self.module, name)


@dataclass
class Canary:
    task: str
    module: CanaryModule
    source: Path  # B's branch directory (what promotion writes into the artifact)
    live_version: str  # A's manifest version when B was loaded
    mode: Mode = "shadow"
    fraction: float = 0.0  # split: share of request keys answered by B
    key_header: str = DEFAULT_KEY_HEADER
    started: float = field(default_factory=time.time)
    serial: int = field(default_factory=itertools.count(1).__next__)  # keys differ from one canary to the next
    requests: int = 0
    agree: int = 0
    differ: int = 0

    @property
    def version(self) -> str:
        return str(self.module.manifest.version)

    @property
    def key(self) -> str:
        """B's name in the pass and in the results (a batch can hold requests of a canary and of its successor)."""
        return f"{self.task}{KEY_SUFFIX}{self.serial}"

    def takes(self, key: str) -> bool:
        """Split: whether requests with this key go to B. A hash of (task, key) in [0, 1): sticky, and raising
        the fraction only moves keys from A to B."""
        digest = hashlib.sha256(f"{self.task}\0{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < self.fraction

    def status(self) -> dict[str, Any]:
        compared = self.agree + self.differ
        return {"task": self.task, "mode": self.mode, "fraction": self.fraction, "key_header": self.key_header,
                "live_version": self.live_version, "canary_version": self.version, "source": str(self.source),
                "attach_depth": self.module.manifest.attach_depth, "started": self.started,
                "requests": self.requests, "compared": compared,
                "agreement": round(self.agree / compared, 6) if compared else None,
                "canary_forward_s": round(self.module.seconds, 6)}


@dataclass
class Promotion:
    """A promoted B, with A's files kept so that rollback can put A back."""

    task: str
    previous: Path  # a directory holding A's manifest and weights (a temporary one, for the process' life)
    previous_version: str
    version: str

    def status(self) -> dict[str, Any]:
        return {"task": self.task, "version": self.version, "previous_version": self.previous_version}


Route = dict[str, str]  # task -> "shadow" (B computed, A answers) or "canary" (B answers)


def answer(result: Mapping[str, Any]) -> str:
    """What agreement compares: the label(s), the entities' spans and labels, a value to 2 decimals."""
    if "label" in result:
        return str(result["label"])
    if "labels" in result:
        return json.dumps(sorted(result["labels"]))
    if "entities" in result:
        return json.dumps([[e.get("label"), e.get("start"), e.get("end")] for e in result["entities"]])
    if "value" in result:
        return f"{float(result['value']):.2f}"
    return json.dumps({k: v for k, v in result.items() if k not in ("raw", "scores")}, sort_keys=True, default=str)


def labels_of(result: Mapping[str, Any]) -> list[str]:
    """The labels a result counts in the label distribution (none for a regression)."""
    if "label" in result:
        return [str(result["label"])]
    if "labels" in result:
        return [str(x) for x in result["labels"]]
    return [str(e.get("label")) for e in result.get("entities", ())]


class CanaryMetrics:
    """Per branch version and role, in the app's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        labels = ["task", "version", "role"]
        self.requests = Counter("mtbranch_branch_requests", "Requests per branch version and role (live, canary: "
                                "answering a split, shadow: computed, not answering)", labels, registry=registry)
        self.latency = Histogram("mtbranch_branch_latency_seconds", "Request latency per branch version and role, "
                                 "while the task has a canary (else: mtbranch_task_latency_seconds)",
                                 labels, buckets=LATENCY_BUCKETS, registry=registry)
        self.labels = Counter("mtbranch_branch_labels", "Labels per branch version and role (the label "
                              "distribution; shadow: B's labels on requests A answered)", [*labels, "label"],
                              registry=registry)
        self.agreement = Counter("mtbranch_canary_agreement", "Canary answers compared with the live version's",
                                 ["task", "version", "result"], registry=registry)
        self.forward = Counter("mtbranch_canary_forward_seconds", "Seconds the canary version's own layers ran",
                               ["task", "version"], registry=registry)


class Canaries:
    """The canaries of one server, by task (at most one per task)."""

    def __init__(self, registry: Any) -> None:
        self.active: dict[str, Canary] = {}
        self.promoted: dict[str, Promotion] = {}  # promotions rollback can undo
        self.metrics = CanaryMetrics(registry)
        self._forward_seen: dict[str, float] = {}

    def start(self, canary: Canary) -> None:
        if canary.task in self.active:
            running = self.active[canary.task].version
            raise MtbranchError(f"task {canary.task!r} already has a canary (version {running})",
                                hint="promote or roll it back first")
        canary.module.name = canary.key
        self.active[canary.task] = canary
        self._forward_seen[canary.task] = 0.0

    def stop(self, task: str) -> Canary:
        return self.active.pop(task)

    def route(self, tasks: Sequence[str], headers: Mapping[str, str], texts: Sequence[str]) -> Route:
        """Which of ``tasks`` this request runs B for, and whether B answers it."""
        route: Route = {}
        for t in tasks:
            c = self.active.get(t)
            if c is None:
                continue
            if c.mode == "shadow":
                route[t] = "shadow"
            else:
                key = headers.get(c.key_header) or (texts[0] if texts else "")
                if c.takes(key):  # the rest are A's alone: B costs nothing on them
                    route[t] = "canary"
        return route

    def attach(self, job: Job, route: Route) -> Job:
        """The job with B added to the reads of every row that feeds A (B forks at its own depth)."""
        canaries = [self.active[t] for t in route if t in self.active]
        if not canaries:
            return job
        rows = []
        for row in job.sequences:
            add = [c for c in canaries if c.task in row.branches]
            if add:
                row = dataclasses.replace(row, branches=(*row.branches, *(c.key for c in add)),
                                          depth=max(row.depth, *(c.module.manifest.attach_depth for c in add)))
            rows.append(row)
        return dataclasses.replace(job, sequences=tuple(rows), extra={c.key: c.module for c in canaries})

    def settle(self, route: Route, versions: Mapping[str, str], results: Results, seconds: float) -> Results:
        """B's results taken out of the response (or put in A's place, when B answers); metrics recorded.

        ``versions``: the live version of each task asked for. A request re-tokenized by a model swapped in
        meanwhile has no B results: A answers it.
        """
        m = self.metrics
        # every canary result leaves the response, also one of a canary replaced while the request ran
        extras = [{k: r.pop(k) for k in [k for k in r if KEY_SUFFIX in k]} for r in results]
        for task, live_version in versions.items():
            c = self.active.get(task)
            role = route.get(task)
            b_results = [e.get(c.key) for e in extras] if c is not None and role else []
            if c is None or not role or any(x is None for x in b_results):
                # no latency histogram here: mtbranch_task_latency_seconds has it (one per task is plenty at 500)
                self._observe(task, live_version, "live", [r[task] for r in results], None if c is None else seconds)
                continue
            c.requests += 1
            for r, b in zip(results, b_results, strict=True):
                same = answer(r[task]) == answer(b)  # type: ignore[arg-type]
                c.agree, c.differ = c.agree + same, c.differ + (not same)
                m.agreement.labels(task, c.version, "agree" if same else "differ").inc()
            a_role = "live"
            if role == "canary":
                for r, b in zip(results, b_results, strict=True):
                    r[task] = b
                a_role = "shadow"  # A computed, B answered
            self._observe(task, live_version, a_role, [r[task] for r in results] if a_role == "live" else [], seconds)
            self._observe(task, c.version, "canary" if role == "canary" else "shadow", b_results, seconds)  # type: ignore[arg-type]
            new = c.module.seconds - self._forward_seen.get(task, 0.0)
            self._forward_seen[task] = c.module.seconds
            m.forward.labels(task, c.version).inc(max(0.0, new))
        return results

    def _observe(self, task: str, version: str, role: str, answered: list[dict[str, Any]],
                 seconds: float | None) -> None:
        """Requests and labels; the latency (``seconds``) only while the task has a canary, to compare versions."""
        m = self.metrics
        m.requests.labels(task, version, role).inc()
        if seconds is not None:
            m.latency.labels(task, version, role).observe(seconds)
        for res in answered:
            for label in labels_of(res):
                m.labels.labels(task, version, role, label).inc()
