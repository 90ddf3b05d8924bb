"""The request queue of ``mtbranch serve`` (asyncio only): requests gathered into batches, one worker thread.

One collector task takes the first request waiting and gathers those arriving within ``max_batch_wait_ms`` while
the batch fits one trunk pass of the :class:`~mtbranch.serve.batching.Budget` (``--max-batch-size`` sequences,
``--max-batch-tokens`` padded tokens: the budget :func:`~mtbranch.serve.batching.run_jobs` cuts passes with;
it also cuts a batch into length buckets of at most ``--max-padding`` padding). A request alone over the budget is
a batch alone. Each batch runs on one version, in one worker thread, so the
event loop keeps accepting requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtbranch.serve import tracing
from mtbranch.serve.batching import Budget, Job, Outcome, PassHook, Results, Stats, prepare_job, run_jobs
from mtbranch.serve.cost import Clock, CostMeter
from mtbranch.serve.fair import FairQueue
from mtbranch.serve.metrics import Metrics
from mtbranch.serve.schema import RequestError, ServeSettings
from mtbranch.serve.state import Served
from mtbranch.serve.tracing import Tracing

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

log = logging.getLogger("mtbranch.serve")
# run_jobs' signature: the batcher's one call into the model (a test passes its own)
RunJobs = Callable[[Any, list[Job], Stats, Budget, PassHook], list[Outcome]]


@dataclass
class _Item:
    job: Job
    future: asyncio.Future[tuple[Results, str]]
    trace: Any = None  # the request's OpenTelemetry context (tracing on)
    queued: int = 0  # time.time_ns() at submit (tracing on)
    tenant: str = ""  # its lane in the fair queue (the owners of the tasks it asks for)


class Batcher:
    """A bounded queue drained by one collector task; every batch runs on one version, in one worker thread."""

    def __init__(self, served: Served, settings: ServeSettings, metrics: Metrics, run: RunJobs = run_jobs) -> None:
        self.served = served
        self.settings = settings
        self.budget = Budget(settings.max_batch_size, settings.max_batch_tokens, settings.max_padding)
        self.metrics = metrics
        self.stats = Stats()
        self.rate = 0.0  # sequences per second, recent passes (for Retry-After)
        self._run_jobs = run
        self._pending: FairQueue[_Item] = FairQueue(lambda item: item.tenant)  # round-robin over tenants
        self._running: list[_Item] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtbranch-model")
        # tokenizing off the event loop (the fast tokenizer releases the GIL), so the loop keeps accepting
        self._tokenizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtbranch-tokenize")
        self._task: asyncio.Task[None] | None = None
        self.tracing: Tracing | None = None  # set by the app when tracing is on
        self.cost = CostMeter(metrics.registry)  # seconds and FLOPs per task and owner

    @property
    def queued(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
        self._tokenizer.shutdown(wait=True)

    async def tokenize(self, served: Served, texts: list[str], pairs: list[str] | None, tasks: list[str],
                       raw: bool, tagged: bool = False) -> Job:
        """The request's sequences (:func:`prepare_job`), tokenized in a thread of their own."""
        run = asyncio.get_running_loop().run_in_executor
        if self.tracing is None:
            return await run(self._tokenizer, prepare_job, served.model, texts, pairs, tasks, raw, tagged)
        with self.tracing.span("tokenize", **{"mtbranch.texts": len(texts)}):
            return await run(self._tokenizer, prepare_job, served.model, texts, pairs, tasks, raw, tagged)

    async def between_batches(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the model's worker thread, so no batch runs meanwhile (a branch swapped into the model)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def retry_after(self, waiting: int) -> int:
        """Seconds until ``waiting`` more sequences are likely done (1 to 60)."""
        return max(1, min(60, math.ceil(waiting / self.rate))) if self.rate > 0 else 1

    def abort(self, error: RequestError) -> int:
        """Fail every request queued or running with ``error``; returns how many."""
        n = 0
        for item in [*self._running, *self._pending]:
            if not item.future.done():
                item.future.set_exception(error)
                n += 1
        self._pending.clear()
        self.metrics.queue_depth.set(0)
        return n

    async def submit(self, job: Job, tenant: str = "") -> tuple[Results, str]:
        """The job's results and the version that computed them; 503 after ``request_timeout_s``. Requests of
        several ``tenant`` s are taken round-robin (:class:`~mtbranch.serve.fair.FairQueue`)."""
        fut: asyncio.Future[tuple[Results, str]] = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        item = _Item(job, fut, tenant=tenant)
        if self.tracing is not None:
            self.tracing.annotate(**{"mtbranch.tasks": list(job.tasks), "mtbranch.texts": len(job.texts)})
            item.trace, item.queued = self.tracing.current(), time.time_ns()
        self._pending.append(item)
        self.metrics.queue_depth.set(len(self._pending))
        self._wake.set()
        timeout = self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(fut, timeout)  # on timeout the future is cancelled: the batch skips it
        except TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise RequestError(503, f"not answered within the request timeout ({timeout:g} s)",
                               "the server is overloaded: retry later or elsewhere",
                               retry_after=self.retry_after(sum(i.job.size for i in self._pending))) from None

    def _first_pending(self) -> _Item | None:
        while self._pending and self._pending[0].future.done():  # timed out or aborted while queued
            self._pending.popleft()
        return self._pending[0] if self._pending else None

    async def _collect(self) -> None:
        while True:
            while self._first_pending() is None:
                self._wake.clear()
                await self._wake.wait()
            items = await self._gather()
            await self._run_batch(items)

    async def _gather(self) -> list[_Item]:
        """The first request waiting and those that join it within ``max_batch_wait_ms`` while all fit one pass."""
        loop = asyncio.get_running_loop()
        items = self._running = [self._pending.popleft()]  # abort() sees the batch while it is gathered
        n, longest = items[0].job.size, items[0].job.longest
        deadline = loop.time() + self.settings.max_batch_wait_ms / 1000
        while self.budget.fits(n + 1, longest):  # room for one more sequence
            nxt = self._first_pending()
            if nxt is None:  # wait a little for more
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
                continue
            if not self.budget.fits(n + nxt.job.size, max(longest, nxt.job.longest)):
                break
            items.append(self._pending.popleft())
            n, longest = n + nxt.job.size, max(longest, nxt.job.longest)
        self.metrics.queue_depth.set(len(self._pending))
        return items

    async def _run_batch(self, items: list[_Item]) -> None:
        self.stats.batches += 1
        served = self.served  # one version per batch
        started = time.perf_counter()
        traced = [it for it in items if it.trace is not None] if self.tracing is not None else []
        rec, started_ns = (tracing.Recorder(), time.time_ns()) if traced else (None, 0)
        outcomes = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, served, items, rec)
        if rec is not None:
            self._trace(traced, dict(zip(map(id, items), outcomes, strict=True)), rec, started_ns)
        seconds = time.perf_counter() - started
        n = sum(it.job.size for it in items)
        if seconds > 0:
            self.rate = 0.7 * self.rate + 0.3 * (n / seconds) if self.rate else n / seconds
        self._running = []
        for item, outcome in zip(items, outcomes, strict=True):
            if item.future.done():  # timed out, aborted
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result((outcome, served.version))

    def _trace(self, traced: list[_Item], outcomes: dict[int, Outcome], rec: tracing.Recorder, started: int) -> None:
        assert self.tracing is not None
        ended = time.time_ns()
        for it in traced:
            out = outcomes[id(it)]
            self.tracing.batch(it.trace, it.queued, started, ended, id(it.job.texts), len(outcomes), rec,
                               out if isinstance(out, BaseException) else None)

    def _run(self, served: Served, items: list[_Item], rec: tracing.Recorder | None = None) -> list[Outcome]:
        live = [it for it in items if not it.future.done()]
        if rec is not None:  # the trunk passes (mtbranch.serve.batching) and branches fill it, in this thread
            tracing.instrument(served.model)
        with tracing.recording(rec) if rec is not None else contextlib.nullcontext(), Clock() as clock:
            done = self._run_jobs(served.model, [it.job for it in live], self.stats, self.budget,
                                  self.metrics.observe_pass)
        self._charge(served.model, [it.job for it in live], clock)
        by_id = {id(it): out for it, out in zip(live, done, strict=True)}
        return [by_id.get(id(it), []) for it in items]

    def _charge(self, model: ComposedModel, jobs: list[Job], clock: Clock) -> None:
        """The batch's seconds and FLOPs to the tasks it served (:mod:`mtbranch.serve.cost`); never fails it."""
        try:
            self.cost.charge(model, [(len(s.ids), s.branches) for j in jobs for s in j.sequences],
                             {k: m for j in jobs for k, m in j.extra.items()}, clock.wall, clock.cpu)
        except Exception:  # accounting must not cost a request its answer
            log.exception("cost accounting failed for a batch")
