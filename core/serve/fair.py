"""Fairness between the teams sharing one server: quotas per owner and a fair queue.

* **Quotas** (``--quota OWNER=TEXTS_PER_S``, ``*`` for every owner without one): a token bucket per owner of the
  tasks a request asks for, refilled at the quota and holding ``burst_s`` seconds of it. A request whose owner's
  bucket lacks its texts is refused with 429 and ``Retry-After`` (the seconds until the bucket holds them) at the
  edge (:func:`edge_refusal`, called by :class:`~mtbranch.serve.http.Guard` once the body is read): before FastAPI
  routes it, tokenizes or queues it, so an owner over its share costs the others its HTTP exchange only (the
  route's own :meth:`Quotas.admit` then takes the texts of the requests let through).
* **Fair queue** (:class:`FairQueue`): the batcher's queue, one lane per tenant (the owners a request asks for),
  served round-robin: a burst from one team waits behind its own requests, not in front of everyone else's.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from mtbranch.serve.schema import RequestError, TaskInfo

T = TypeVar("T")
ANY_OWNER = "*"
UNOWNED = "unowned"


def owners_of(tasks: Sequence[str], infos: Sequence[TaskInfo]) -> list[str]:
    """The owners of the tasks asked for (``unowned`` for a task whose manifest names none), sorted."""
    by_name = {t.name: t.owner or UNOWNED for t in infos}
    return sorted({by_name.get(t, UNOWNED) for t in tasks})


def tenant_of(owners: Sequence[str]) -> str:
    return "+".join(owners) or UNOWNED


def parse_quotas(specs: Sequence[str]) -> dict[str, float]:
    """``--quota OWNER=TEXTS_PER_S`` options as a mapping; a malformed one is a UsageError naming it."""
    from mtbranch.errors import UsageError

    out: dict[str, float] = {}
    for spec in specs:
        owner, sep, rate = spec.partition("=")
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if not sep or not owner.strip() or not math.isfinite(value) or value <= 0:
            raise UsageError(f"--quota {spec!r} is not OWNER=TEXTS_PER_S with a positive rate",
                             hint="e.g. --quota team-support=20 --quota '*=100'")
        out[owner.strip()] = value
    return out


class Quotas:
    """Token buckets of texts per second, per owner."""

    def __init__(self, quotas: Mapping[str, float], registry: Any = None, burst_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rates = dict(quotas)
        self.burst_s = burst_s
        self.clock = clock
        self._level: dict[str, tuple[float, float]] = {}  # owner -> (tokens, at)
        self.rejected = None
        if registry is not None:
            from prometheus_client import Counter

            self.rejected = Counter("mtbranch_quota_rejected", "Requests refused (429) for an owner over its quota",
                                    ["owner"], registry=registry)

    def rate(self, owner: str) -> float | None:
        return self.rates.get(owner, self.rates.get(ANY_OWNER))

    def admit(self, owners: Sequence[str], texts: int, take: bool = True) -> None:
        """Take ``texts`` from each owner's bucket, or refuse the request (429) without taking any. ``take=False``
        only refuses (the edge's check, :func:`edge_refusal`): a request let through takes its texts later."""
        now = self.clock()
        levels = {}
        for owner in owners:
            rate = self.rate(owner)
            if rate is None:
                continue
            cap = max(rate * self.burst_s, 1.0)
            tokens, at = self._level.get(owner, (cap, now))
            tokens = min(cap, tokens + (now - at) * rate)
            if tokens < texts:
                if self.rejected is not None:
                    self.rejected.labels(owner).inc()
                wait = math.ceil((min(texts, cap) - tokens) / rate) if rate > 0 else 60
                self._level[owner] = (tokens, now)
                raise RequestError(429, f"owner {owner!r} is over its quota of {rate:g} texts/s",
                                   "slow down and retry after Retry-After seconds, or ask the operator for a larger "
                                   "--quota", retry_after=max(1, min(60, wait)))
            levels[owner] = tokens - texts
        if take:
            for owner, tokens in levels.items():
                self._level[owner] = (tokens, now)


def edge_refusal(raw: bytes, content_type: str | None, served: Any, quotas: Quotas, limits: Any) -> RequestError | None:
    """The 429 a ``/predict`` body gets for an owner over its quota, decided from the raw body before the app runs
    (nothing routed, tokenized or queued). A refusal still costs its HTTP exchange: ~0.6-1.3 ms of server CPU
    measured, at the edge or in the route alike (docs/serving.md, fairness). Any other problem (not JSON, unknown
    task, a TEI body, not loaded) is left to the route, which reports it in its own words; nothing is taken from a
    bucket here."""
    if not quotas.rates or served is None:
        return None
    from mtbranch.serve import tei
    from mtbranch.serve.schema import check_content_type, parse_request, resolve_request

    try:
        check_content_type(content_type)
        if tei.is_tei_body(raw):
            return None
        body = parse_request(raw, limits)
        owners = owners_of(resolve_request(body, served.infos, limits), served.infos)
    except RequestError:
        return None
    try:
        quotas.admit(owners, len(body.texts or ()), take=False)
    except RequestError as refused:
        return refused
    return None


class FairQueue(Generic[T]):
    """A queue with one FIFO lane per tenant, served round-robin (the deque operations the batcher uses)."""

    def __init__(self, tenant: Callable[[T], str]) -> None:
        self._tenant = tenant
        self._lanes: dict[str, deque[T]] = {}
        self._order: deque[str] = deque()  # tenants with items, the next to serve first

    def append(self, item: T) -> None:
        t = self._tenant(item)
        lane = self._lanes.get(t)
        if lane is None:
            lane = self._lanes[t] = deque()
        if not lane:
            self._order.append(t)
        lane.append(item)

    def __getitem__(self, index: int) -> T:
        if index != 0 or not self._order:
            raise IndexError(index)
        return self._lanes[self._order[0]][0]

    def popleft(self) -> T:
        if not self._order:
            raise IndexError("pop from an empty FairQueue")
        t = self._order.popleft()
        lane = self._lanes[t]
        item = lane.popleft()
        if lane:
            self._order.append(t)  # its next request waits for every other tenant's turn
        return item

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def __bool__(self) -> bool:
        return bool(self._order)

    def __iter__(self) -> Iterator[T]:
        for t in list(self._order):
            yield from list(self._lanes[t])

    def clear(self) -> None:
        self._lanes.clear()
        self._order.clear()

    def depth(self) -> dict[str, int]:
        return {t: len(self._lanes[t]) for t in self._order}
