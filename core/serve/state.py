"""What one ``mtbranch serve`` process holds: the version served (:class:`Served`) and the server's state.

A version is one loaded artifact, named by the sha256 of its lock file; :func:`load_served` loads one (hashes and
lock verified, warmed up), for start-up and for ``POST /admin/reload``. :class:`ServerState` is what the routes,
the guard middleware, the lifespan and the drain share (the routes reach it through a FastAPI dependency).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtbranch.errors import MtbranchError
from mtbranch.serve.canary import Canaries
from mtbranch.serve.fair import Quotas
from mtbranch.serve.metrics import Metrics
from mtbranch.serve.schema import RequestError, ServeSettings, TaskInfo, task_infos, warm_up

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel
    from mtbranch.serve.batcher import Batcher
    from mtbranch.serve.tracing import Tracing


@dataclass(frozen=True)
class Served:
    """One loaded version: the model, the sha256 of its lock file, its tasks."""

    model: ComposedModel
    version: str
    infos: list[TaskInfo]
    loaded_at: float


def lock_sha256(artifact: str | Path | None, model: ComposedModel | None = None) -> str:
    """sha256 of ``mtbranch.lock.json`` (of the file; or, for a model given without a path, of its lock as saved)."""
    if artifact is not None:
        from mtbranch.io.files import read_bytes

        return hashlib.sha256(read_bytes(Path(artifact) / "mtbranch.lock.json")).hexdigest()
    lock = None if model is None else model.lock  # None: composed in memory, never saved
    return hashlib.sha256((lock.to_json() if lock is not None else "{}\n").encode()).hexdigest()


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


def served_model(model: ComposedModel, artifact: str | Path | None) -> Served:
    """A model given loaded (warmed up by the caller) as a version."""
    return Served(model, lock_sha256(artifact, model), task_infos(model), time.time())


def shutdown_error() -> RequestError:
    return RequestError(503, "the server is shutting down", "retry on another replica", retry_after=1)


class ServerState:
    """Shared by the routes, the guard, the lifespan and the drain of one app.

    ``model`` serves first when given; ``artifact`` is what start-up (without ``model``) and reloads load, with
    ``load_kwargs``.
    """

    def __init__(self, settings: ServeSettings, model: ComposedModel | None = None, artifact: str | Path | None = None,
                 load_kwargs: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.model = model
        self.artifact = artifact
        self.load_kwargs = load_kwargs
        self.served: Served | None = None
        self.batcher: Batcher | None = None
        self.metrics = Metrics()
        self.canaries = Canaries(self.metrics.registry)  # canary versions of branches (mtbranch.serve.canary)
        # texts/s per owner (mtbranch.serve.fair)
        self.quotas = Quotas(settings.quotas, self.metrics.registry, burst_s=settings.quota_burst_s)
        self.ready = False
        self.draining = False  # readiness 503 (SIGTERM received)
        self.closing = False  # listener closed: new requests get 503
        self.error: str | None = None
        self.started = time.time()
        self.last_reload: dict[str, Any] | None = None
        self.reloading = asyncio.Lock()
        self.tracing: Tracing | None = None  # OpenTelemetry spans (mtbranch.serve.tracing), when on

    def set_ready(self, value: bool) -> None:
        self.ready = value
        self.metrics.ready.set(1 if value and not self.draining else 0)

    def serve(self, served: Served) -> None:
        """Serve ``served`` from the next batch on (the batch running finishes on the version it started with)."""
        self.served = served
        if self.batcher is not None:
            self.batcher.served = served
        self.metrics.set_model(served.version, [t.name for t in served.infos])

    def current(self) -> Served:
        """The version serving, or the 503 saying why none is."""
        if self.closing or (self.draining and self.served is None):
            raise shutdown_error()
        if not self.ready or self.served is None:
            raise RequestError(503, "model failed to load: " + self.error if self.error else "model is loading",
                               "poll GET /ready", retry_after=None if self.error else 1)
        return self.served
