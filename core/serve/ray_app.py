"""Ray Serve deployment of a composed artifact: same HTTP API and schema as ``mtbranch serve``, scaled by replicas.

Each replica loads the artifact once (hashes verified) and warms up; ``@serve.batch`` merges concurrent
requests (Ray counts requests: up to ``max_batch_size`` of them, waiting at most ``batch_wait_timeout_s``) and
:func:`mtbranch.serve.batching.run_jobs` runs them as few ``predict`` calls as their task sets allow, each trunk pass
at most ``max_batch_size`` sequences: the meaning it has under ``mtbranch serve``. The defaults are
:class:`mtbranch.serve.schema.ServeSettings`'s, the same as ``mtbranch serve``'s. Works on a
local Ray instance and on a cluster unchanged (the artifact path must be readable on every node)::

    import ray
    from ray import serve
    from mtbranch.serve.ray_app import build_app

    ray.init()
    serve.run(build_app("composed/", num_replicas=2), route_prefix="/")   # POST /predict, GET /ready ...
"""

import asyncio
from typing import Any

from mtbranch.errors import require_extra

require_extra("ray", "mtbranch.serve.ray_app")  # exit 1 with the pip line, not an ImportError

from fastapi import FastAPI, Request  # noqa: E402
from ray import serve  # noqa: E402

from mtbranch.serve.app import install_error_handlers  # noqa: E402
from mtbranch.serve.batching import Job, Outcome, Stats, run_jobs  # noqa: E402
from mtbranch.serve.schema import (  # noqa: E402
    ErrorBody,
    Limits,
    PredictRequest,
    PredictResponse,
    RequestError,
    ServeSettings,
    TaskInfo,
    resolve_request,
    task_infos,
    warm_up,
)

api = FastAPI(title="mtbranch (Ray Serve)", description="A composed multi-task model on Ray Serve.")
install_error_handlers(api)
_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody} for c in (400, 413, 422)}
_D = ServeSettings()  # the serving defaults, shared with `mtbranch serve`


@serve.deployment(max_ongoing_requests=128)
@serve.ingress(api)
class ComposedDeployment:
    def __init__(self, artifact: str, *, max_batch_size: int = _D.max_batch_size,
                 batch_wait_timeout_s: float = _D.max_batch_wait_ms / 1000,
                 limits: Limits | None = None, load_kwargs: dict[str, Any] | None = None) -> None:
        from mtbranch.composition.artifact import load

        self.model = load(artifact, **(load_kwargs or {}))
        warm_up(self.model)
        self.limits = limits or Limits()
        self.stats = Stats()
        self.max_batch_size = max_batch_size
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def check_health(self) -> None:  # Ray restarts a replica whose model is gone
        if not self.model.task_names:
            raise RuntimeError("no branches loaded")

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready")
    async def ready(self) -> dict[str, Any]:  # a replica only receives traffic once __init__ (load + warm-up) ran
        return {"status": "ready", "tasks": self.model.task_names}

    @api.get("/tasks", response_model=list[TaskInfo])
    async def tasks(self) -> list[TaskInfo]:
        return task_infos(self.model)

    @api.get("/stats")
    async def get_stats(self) -> dict[str, int]:
        return self.stats.as_dict()

    @api.post("/predict", response_model=PredictResponse, responses=_ERRORS)
    async def predict(self, body: PredictRequest, request: Request) -> PredictResponse:
        size = len(await request.body())
        if size > self.limits.max_body_bytes:
            raise RequestError(413, f"request body is {size} bytes; the limit is {self.limits.max_body_bytes}",
                               "send fewer or shorter texts per request")
        names = resolve_request(body, task_infos(self.model), self.limits)
        self.stats.requests += 1
        outcome = await self._batched(Job(body.texts, body.text_pairs, tuple(names), body.raw))
        if isinstance(outcome, BaseException):
            raise outcome
        return PredictResponse(results=outcome, tasks=names)

    # __init__ sets both from its arguments
    @serve.batch(max_batch_size=_D.max_batch_size, batch_wait_timeout_s=_D.max_batch_wait_ms / 1000)
    async def _batched(self, jobs: list[Job]) -> list[Outcome]:
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, sum(len(j.texts) for j in jobs))
        # the model runs in a thread so this replica's event loop keeps collecting the next batch
        return await asyncio.get_running_loop().run_in_executor(None, run_jobs, self.model, jobs, self.stats,
                                                                  self.max_batch_size)


def build_app(artifact: str, *, num_replicas: int = 1, max_batch_size: int = _D.max_batch_size,
              batch_wait_timeout_s: float = _D.max_batch_wait_ms / 1000,
              limits: Limits | None = None, ray_actor_options: dict[str, Any] | None = None,
              load_kwargs: dict[str, Any] | None = None, dtype: str | None = None) -> Any:
    """A Ray Serve application for ``artifact`` (pass it to ``serve.run``).

    ``dtype`` (``float32``, ``bfloat16``, ``float16`` on GPUs, ``auto``) is resolved by each replica on its own
    node's hardware (mtbranch.spec.precision); the default is the same as ``mtbranch serve``: auto.
    """
    load_kwargs = dict(load_kwargs or {})
    if dtype is not None:
        load_kwargs["dtype"] = dtype
    load_kwargs.setdefault("dtype", "auto")
    options: dict[str, Any] = {"num_replicas": num_replicas, "max_ongoing_requests": max(2 * max_batch_size, 8)}
    if ray_actor_options is not None:
        options["ray_actor_options"] = ray_actor_options
    return ComposedDeployment.options(**options).bind(  # type: ignore[attr-defined]
        str(artifact), max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s, limits=limits,
        load_kwargs=load_kwargs)
