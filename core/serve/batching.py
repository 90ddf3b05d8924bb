"""Run several requests as few ``predict`` calls: shared by ``mtbranch serve`` and the Ray Serve deployment.

Requests asking for the same tasks (and the same raw flag, and pairs or not) are concatenated into one call;
``predict`` sorts the texts by length, so the merged call pads little. If a merged call fails, its requests
are re-run one by one so one bad input cannot fail the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mtbranch.serve")
Results = list[dict[str, Any]]
Outcome = Results | BaseException


@dataclass(frozen=True)
class Job:
    texts: list[str]
    pairs: list[str] | None
    tasks: tuple[str, ...]
    raw: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        return self.tasks, self.pairs is not None, self.raw


@dataclass
class Stats:
    requests: int = 0
    batches: int = 0
    predict_calls: int = 0
    texts: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def run_jobs(model: Any, jobs: list[Job], stats: Stats | None = None, batch_size: int = 32) -> list[Outcome]:
    """One outcome per job (its results, or the exception it raised), in order.

    ``batch_size``: predict's micro-batch (texts sorted by length); a merged batch up to that size is one pass.
    """
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.key, []).append(i)
    outcomes: list[Outcome] = [[] for _ in jobs]
    for idx in groups.values():
        try:
            for i, res in zip(idx, _predict(model, [jobs[i] for i in idx], stats, batch_size), strict=True):
                outcomes[i] = res
        except Exception as exc:
            if len(idx) == 1:
                outcomes[idx[0]] = exc
                continue
            log.warning("a merged call of %d requests failed (%s); running them one by one", len(idx), exc)
            for i in idx:
                try:
                    outcomes[i] = _predict(model, [jobs[i]], stats, batch_size)[0]
                except Exception as exc_i:
                    outcomes[i] = exc_i
    return outcomes


def _predict(model: Any, group: list[Job], stats: Stats | None, batch_size: int) -> list[Results]:
    texts = [t for job in group for t in job.texts]
    pairs = [p for job in group for p in (job.pairs or [])] if group[0].pairs is not None else None
    if stats is not None:
        stats.predict_calls += 1
        stats.texts += len(texts)
    flat = model.predict(texts, tasks=list(group[0].tasks), text_pairs=pairs, raw=group[0].raw,
                         batch_size=batch_size)
    out, start = [], 0
    for job in group:
        out.append(flat[start:start + len(job.texts)])
        start += len(job.texts)
    return out
