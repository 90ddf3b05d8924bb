"""Ray Serve deployment of a composed artifact: same HTTP API and schema as ``mtbranch serve``, scaled by replicas.

Each replica loads the artifact once (hashes verified) and warms up; ``@serve.batch`` merges concurrent
requests (Ray counts requests: up to ``max_batch_size`` of them, waiting at most ``batch_wait_timeout_s``) and
:func:`mtbranch.serve.batching.run_jobs` runs them in as few trunk passes as the
:class:`~mtbranch.serve.batching.Budget` (``max_batch_size`` sequences, ``max_batch_tokens`` padded tokens a pass)
allows: the meaning it has under ``mtbranch serve``. The defaults are
:class:`mtbranch.serve.schema.ServeSettings`'s, the same as ``mtbranch serve``'s. Works on a
local Ray instance and on a cluster unchanged (the artifact path must be readable on every node)::

    import ray
    from ray import serve
    from mtbranch.serve.ray_app import build_app

    ray.init()
    serve.run(build_app("composed/", num_replicas=2), route_prefix="/")   # POST /predict, GET /ready ...
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from mtbranch.errors import require_extra

require_extra("ray", "mtbranch.serve.ray_app")  # exit 1 with the pip line, not an ImportError

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from ray import serve  # noqa: E402

from mtbranch.serve import tracing  # noqa: E402
from mtbranch.serve.batching import Budget, Job, Outcome, Stats, prepare_job, run_jobs  # noqa: E402
from mtbranch.serve.http import (  # noqa: E402
    PREDICT_OPENAPI,
    error_responses,
    install_error_handlers,
    install_openapi,
)
from mtbranch.serve.routes import VERSION_HEADER  # noqa: E402
from mtbranch.serve.schema import (  # noqa: E402
    Limits,
    PredictResponse,
    ServeSettings,
    TaskInfo,
    check_content_type,
    parse_request,
    resolve_request,
    task_infos,
    warm_up,
)
from mtbranch.serve.state import lock_sha256  # noqa: E402

api = FastAPI(title="mtbranch (Ray Serve)", description="A composed multi-task model on Ray Serve.")
install_error_handlers(api)
install_openapi(api)
_D = ServeSettings()  # the serving defaults, shared with `mtbranch serve`
log = logging.getLogger("mtbranch.serve")


@dataclass(frozen=True)
class _Call:
    """One request for ``@serve.batch``: its job and, when traced, its OpenTelemetry context and submit time."""

    job: Job
    trace: Any = None
    queued: int = 0


def _tracing(otel: bool | None) -> tracing.Tracing | None:
    """This replica's tracing (``otel``, or by default an OTLP endpoint in its environment), as ``mtbranch serve``."""
    from mtbranch.errors import MissingExtra, require_extra

    if not tracing.wanted(otel):
        return None
    try:
        require_extra("otel", "build_app(otel=True)")
    except MissingExtra as exc:
        if otel:
            raise
        log.warning("an OTLP endpoint is set but tracing is off: %s (%s)", exc.message, exc.install)
        return None
    return tracing.setup(api, tracing.provider_from_env())


class _RayMetrics:
    """The same figures as ``mtbranch serve``'s /metrics, through Ray's metrics (exported by each node's agent)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter("mtbranch_requests", "Answered /predict requests by status code",
                                        tag_keys=("code",))
        self.task_latency = metrics.Histogram("mtbranch_task_latency_seconds", "Latency per task asked for",
                                              boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
                                              tag_keys=("task",))
        self.batch_sequences = metrics.Histogram("mtbranch_batch_sequences", "Sequences per trunk pass",
                                                 boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256])
        self.batch_tokens = metrics.Histogram("mtbranch_batch_tokens", "Padded tokens per trunk pass",
                                              boundaries=[16, 64, 256, 1024, 4096, 16384, 65536])
        self.model = metrics.Gauge("mtbranch_model_info", "The version served (lock sha256): 1",
                                   tag_keys=("lock_sha256",))


@serve.deployment(max_ongoing_requests=_D.max_queue)
@serve.ingress(api)
class ComposedDeployment:
    def __init__(self, artifact: str, *, max_batch_size: int = _D.max_batch_size,
                 max_batch_tokens: int | None = _D.max_batch_tokens,
                 batch_wait_timeout_s: float = _D.max_batch_wait_ms / 1000,
                 limits: Limits | None = None, load_kwargs: dict[str, Any] | None = None,
                 otel: bool | None = None) -> None:
        from mtbranch.composition.artifact import load

        before = lock_sha256(artifact)
        self.model = load(artifact, **(load_kwargs or {}))
        warm_up(self.model)
        if lock_sha256(artifact) != before:
            raise RuntimeError(f"{artifact} changed while this replica loaded it; Ray will start it again")
        self.version = before
        self.limits = limits or Limits()
        self.stats = Stats()
        self.budget = Budget(max_batch_size, max_batch_tokens)
        # serve.batch's wrapper carries these setters; its type stubs do not say so
        self._batched.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]
        self.metrics = _RayMetrics()
        self.metrics.model.set(1, tags={"lock_sha256": self.version})
        self.tracing = _tracing(otel)

    def check_health(self) -> None:  # Ray restarts a replica whose model is gone
        if not self.model.task_names:
            raise RuntimeError("no branches loaded")

    @api.get("/health")
    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "version": self.version, "tasks": self.model.task_names}

    @api.get("/ready")
    async def ready(self) -> dict[str, Any]:  # a replica only receives traffic once __init__ (load + warm-up) ran
        return {"status": "ready", "tasks": self.model.task_names, "version": self.version}

    @api.get("/tasks", response_model=list[TaskInfo])
    async def tasks(self) -> list[TaskInfo]:
        return task_infos(self.model)

    @api.get("/stats")
    async def get_stats(self) -> dict[str, Any]:
        return self.stats.as_dict()

    @api.post("/predict", response_model=PredictResponse, responses=error_responses(400, 413, 415, 422, 500, 503),
              openapi_extra=PREDICT_OPENAPI)
    async def predict(self, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            check_content_type(request.headers.get("content-type"))
            body = parse_request(await request.body(), self.limits)  # the same 400/413/415/422 as `mtbranch serve`
            names = resolve_request(body, task_infos(self.model), self.limits)
            self.stats.requests += 1
            assert body.texts is not None
            with self.tracing.span("tokenize") if self.tracing else contextlib.nullcontext():
                job = prepare_job(self.model, body.texts, body.text_pairs, names, body.raw, body.tagged)
            outcome = await self._batched(self._call(job))
            if isinstance(outcome, BaseException):
                raise outcome
        except Exception as exc:
            self.metrics.requests.inc(tags={"code": str(getattr(exc, "status", 422 if hasattr(exc, "hint") else 500))})
            raise
        self.metrics.requests.inc(tags={"code": "200"})
        for name in names:
            self.metrics.task_latency.observe(time.perf_counter() - t0, tags={"task": name})
        return JSONResponse(PredictResponse(results=outcome, tasks=names).model_dump(),
                            headers={VERSION_HEADER: self.version})

    # __init__ sets both from its arguments
    @serve.batch(max_batch_size=_D.max_batch_size, batch_wait_timeout_s=_D.max_batch_wait_ms / 1000)
    async def _batched(self, calls: list[_Call]) -> list[Outcome]:
        self.stats.batches += 1
        traced = self.tracing is not None and any(c.trace is not None for c in calls)
        rec, started = (tracing.Recorder(), time.time_ns()) if traced else (None, 0)
        # the model runs in a thread so this replica's event loop keeps collecting the next batch
        outcomes: list[Outcome] = await asyncio.get_running_loop().run_in_executor(
            None, self._run, [c.job for c in calls], rec)
        if rec is not None and self.tracing is not None:
            ended = time.time_ns()
            for c, out in zip(calls, outcomes, strict=True):
                if c.trace is not None:
                    self.tracing.batch(c.trace, c.queued, started, ended, id(c.job.texts), len(calls), rec,
                                       out if isinstance(out, BaseException) else None)
        return outcomes

    def _call(self, job: Job) -> _Call:
        if self.tracing is None:
            return _Call(job)
        self.tracing.annotate(**{"mtbranch.tasks": list(job.tasks), "mtbranch.texts": len(job.texts)})
        return _Call(job, self.tracing.current(), time.time_ns())

    def _run(self, jobs: list[Job], rec: tracing.Recorder | None) -> list[Outcome]:
        if rec is None:
            return run_jobs(self.model, jobs, self.stats, self.budget, self._observe_pass)
        tracing.instrument(self.model)  # the trunk passes and branches fill rec, in this thread
        with tracing.recording(rec):
            return run_jobs(self.model, jobs, self.stats, self.budget, self._observe_pass)

    def _observe_pass(self, sequences: int, tokens: int) -> None:
        self.metrics.batch_sequences.observe(sequences)
        self.metrics.batch_tokens.observe(tokens)


def build_app(artifact: str, *, num_replicas: int = 1, max_batch_size: int = _D.max_batch_size,
              max_batch_tokens: int | None = _D.max_batch_tokens, max_queue: int = _D.max_queue,
              batch_wait_timeout_s: float = _D.max_batch_wait_ms / 1000,
              limits: Limits | None = None, ray_actor_options: dict[str, Any] | None = None,
              load_kwargs: dict[str, Any] | None = None, dtype: str | None = None, otel: bool | None = None,
              backend: str | None = None) -> Any:
    """A Ray Serve application for ``artifact`` (pass it to ``serve.run``).

    ``otel``: OpenTelemetry spans from each replica, as ``mtbranch serve --otel`` (default: on where the replica's
    environment sets an OTLP endpoint; pass the ``OTEL_*`` variables in ``ray_actor_options["runtime_env"]``).

    ``backend`` (``torch``, ``onnxruntime``, ``openvino``, ``auto``) and ``dtype`` (``float32``, ``bfloat16``,
    ``float16`` on GPUs, ``auto``) are resolved by each replica on its own node's hardware (mtbranch.backends.auto);
    the default is the one of ``load``, ``predict`` and ``mtbranch serve``: auto, the fastest exact-enough engine
    measured there.
    ``backend="torch", dtype="float32"`` serves the dtype every branch's dev metrics were measured in.
    """
    load_kwargs = dict(load_kwargs or {})
    if dtype is not None:
        load_kwargs["dtype"] = dtype
    if backend is not None:
        load_kwargs["backend"] = backend
    # backpressure: each replica takes max(2 x batch, 8) at once; Ray's proxy queues at most max_queue more per
    # deployment handle and answers 503 beyond (Ray's own plain 503, not this app's JSON shape)
    options: dict[str, Any] = {"num_replicas": num_replicas, "max_ongoing_requests": max(2 * max_batch_size, 8),
                               "max_queued_requests": max_queue}
    if ray_actor_options is not None:
        options["ray_actor_options"] = ray_actor_options
    return ComposedDeployment.options(**options).bind(  # type: ignore[attr-defined]
        str(artifact), max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
        batch_wait_timeout_s=batch_wait_timeout_s, limits=limits,
        load_kwargs=load_kwargs, otel=otel)
