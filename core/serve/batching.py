"""Run many requests in as few trunk passes as possible: shared by ``mtbranch serve`` and the Ray Serve deployment.

Every request is tokenized once, when it arrives (:func:`prepare_job`): one *sequence* per text and input
signature it needs (a text run by single-text and by pair tasks is two sequences). :func:`run_jobs` then puts the
sequences of all requests of a batch, whatever task subsets they asked for, into shared trunk passes:

* a :class:`Budget` is at most ``max_batch_size`` sequences and at most ``max_batch_tokens`` padded tokens
  (sequences x the longest one) in one trunk pass: **the one meaning of batch size** for ``mtbranch serve`` (its
  queue gathers requests while they fit one pass) and Ray; the sequences are sorted by length and cut into
  passes within it, also where a pass would be more than ``max_padding`` padding (length buckets:
  :mod:`mtbranch.composition.buckets`), so a gathered batch of mixed lengths runs as a few near-unpadded passes;
* each pass is :func:`mtbranch.composition.model.trunk_pass`, the model's own (``forward`` runs it too): a
  request for a depth-2 task shares layers 1-2 with a request for a depth-4 task and costs no more.

If a pass fails, its requests are re-run one by one so one bad input cannot fail the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mtbranch.serve import tracing
from mtbranch.serve.schema import ServeSettings

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

MAX_BATCH_SIZE = ServeSettings.max_batch_size  # the default, from the one home of serving defaults

log = logging.getLogger("mtbranch.serve")
Results = list[dict[str, Any]]
Outcome = Results | BaseException
PassHook = Callable[[int, int], None]  # (sequences, padded tokens) of one trunk pass


@dataclass(frozen=True)
class Row:
    """One tokenized input of one signature, and the branches that read it."""

    text: int  # index of the text in its job
    ids: list[int]
    type_ids: list[int] | None
    encoding: Any  # the tokenizer's Encoding (offsets and word ids for token heads)
    branches: tuple[str, ...]
    depth: int  # the deepest attach depth of those branches
    second: bool = False  # the pair text alone, read by ``shared`` pair branches only


@dataclass(frozen=True)
class Job:
    texts: list[str]
    pairs: list[str] | None
    tasks: tuple[str, ...]
    raw: bool = False
    sequences: tuple[Row, ...] = ()
    tagged: bool = False  # pre-split words: token tasks add one tag per word
    model_id: int = 0  # id() of the model that tokenized it; another model re-tokenizes
    # modules outside the model's plan its rows also read (canary versions: mtbranch.serve.canary), by key
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return len(self.sequences) or len(self.texts)

    @property
    def longest(self) -> int:
        """Tokens of its longest sequence (0 until tokenized: :func:`run_jobs` tokenizes it, then cuts passes)."""
        return max((len(s.ids) for s in self.sequences), default=0)


@dataclass
class Stats:
    requests: int = 0
    batches: int = 0
    predict_calls: int = 0  # trunk passes (and one-by-one re-runs after a failed pass)
    texts: int = 0
    largest_batch: int = 0  # sequences in the largest trunk pass
    layer_calls: int = 0  # trunk layers run (each over the rows still in the pass)
    rejected: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Budget:
    """What one trunk pass may hold: ``max_batch_size`` sequences and ``max_batch_tokens`` padded tokens (sequences
    x the longest; ``None``: no limit). The server's queue gathers requests with it, and passes are cut with it."""

    max_batch_size: int = MAX_BATCH_SIZE
    max_batch_tokens: int | None = ServeSettings.max_batch_tokens
    max_padding: float | None = ServeSettings.max_padding  # padding fraction of a pass (None: no limit)

    def fits(self, sequences: int, longest: int) -> bool:
        """Whether ``sequences`` sequences padded to ``longest`` tokens fit one pass."""
        return sequences <= self.max_batch_size and (
            self.max_batch_tokens is None or sequences * longest <= self.max_batch_tokens)

    def passes(self, lengths: list[int]) -> list[list[int]]:
        """Indices sorted by length, cut into passes that fit and are at most ``max_padding`` padding; a sequence
        over the budget alone is a pass alone."""
        from mtbranch.composition.buckets import buckets

        return buckets(lengths, self.max_batch_size, self.max_batch_tokens, self.max_padding)


def prepare_job(model: ComposedModel, texts: list[str], pairs: list[str] | None, tasks: list[str], raw: bool,
                tagged: bool = False) -> Job:
    """Tokenize a request for ``model`` (one call per text, so nothing is padded): the sequences it needs."""
    from mtbranch.composition.model import by_signature

    branches = model.select(tasks)
    seqs: list[Row] = []
    for signature, group in by_signature(branches).items():
        ml = model.max_length(group)
        names = tuple(b.name for b in group)
        depth = max(b.manifest.attach_depth for b in group)
        offsets = any(not b.sequence_level for b in group)
        for i, text in enumerate(texts):
            pair = [pairs[i]] if signature == "pair" and pairs is not None else None
            enc = model.tokenize([text], pair, ml, offsets)
            tt = enc.get("token_type_ids")
            seqs.append(Row(i, enc["input_ids"][0].tolist(), None if tt is None else tt[0].tolist(),
                                 enc.encodings[0], names, depth))
        seqs.extend(_second_rows(model, [b for b in group if b.shared_pair], pairs, ml))
    return Job(texts, pairs, tuple(tasks), raw, tuple(seqs), model_id=id(model), tagged=tagged)


def _second_rows(model: ComposedModel, shared: list[Any], pairs: list[str] | None, max_length: int) -> list[Row]:
    """The pair texts alone (as long as the single pass's rows), for ``shared`` pair branches."""
    if not shared:
        return []
    if pairs is None:
        from mtbranch.errors import MtbranchError

        raise MtbranchError(f"task(s) {', '.join(b.name for b in shared)} take a text pair, but no pair was given",
                            hint="send text_pairs, one per text")
    names = tuple(b.name for b in shared)
    depth = max(b.manifest.attach_depth for b in shared)
    rows = []
    for i, pair in enumerate(pairs):
        enc = model.tokenize([pair], None, max_length, False)
        tt = enc.get("token_type_ids")
        rows.append(Row(i, enc["input_ids"][0].tolist(), None if tt is None else tt[0].tolist(), enc.encodings[0],
                        names, depth, second=True))
    return rows


def run_jobs(model: ComposedModel, jobs: list[Job], stats: Stats | None = None, budget: Budget | None = None,
             on_pass: PassHook | None = None) -> list[Outcome]:
    """One outcome per job (its results, or the exception it raised), in order; passes cut by ``budget``."""
    budget = budget or Budget()
    ready: list[Job | None] = []
    outcomes: list[Outcome] = [[] for _ in jobs]
    for i, job in enumerate(jobs):
        try:  # a job tokenized by another model (before a hot swap) is tokenized again for this one
            ready.append(job if job.model_id == id(model) and job.sequences else
                         prepare_job(model, job.texts, job.pairs, list(job.tasks), job.raw, job.tagged))
        except Exception as exc:
            outcomes[i] = exc
            ready.append(None)
    todo = [i for i, j in enumerate(ready) if j is not None]
    try:
        done = _run(model, [ready[i] for i in todo], stats, budget, on_pass)  # type: ignore[misc]
        for i, res in zip(todo, done, strict=True):
            outcomes[i] = res
    except Exception as exc:
        if len(todo) == 1:
            outcomes[todo[0]] = exc
            return outcomes
        log.warning("a merged batch of %d requests failed (%s); running them one by one", len(todo), exc)
        for i in todo:
            try:
                outcomes[i] = _run(model, [ready[i]], stats, budget, on_pass)[0]  # type: ignore[list-item]
            except Exception as exc_i:
                outcomes[i] = exc_i
    return outcomes


def _run(model: ComposedModel, jobs: list[Job], stats: Stats | None, budget: Budget, on_pass: PassHook | None
         ) -> list[Results]:
    from mtbranch.composition.model import row_result, run_rows

    rec = tracing.recorder()  # None unless a traced batch runs in this thread
    rows = [(j, s) for j, job in enumerate(jobs) for s in job.sequences]
    results: list[Results] = [[{} for _ in job.texts] for job in jobs]
    pooled: dict[tuple[int, int, str], list[Any]] = {}  # shared pair branches: (job, text, name) -> [u, v]
    for chosen in budget.passes([len(s.ids) for _, s in rows]):
        part = [rows[k] for k in chosen]
        seqs = [s for _, s in part]
        started = time.time_ns() if rec is not None else 0
        extra = {k: m for j, _ in part for k, m in jobs[j].extra.items()}
        outs = run_rows(model, [s.ids for s in seqs], [s.type_ids for s in seqs], [s.branches for s in seqs],
                        extra)
        if rec is not None:
            rec.add_pass(started, max(s.depth for s in seqs), len(part), len(part) * max(len(s.ids) for s in seqs),
                         {id(jobs[j].texts) for j, _ in part})
        if stats is not None:
            stats.predict_calls += 1
            stats.texts += len(part)
            stats.largest_batch = max(stats.largest_batch, len(part))
            stats.layer_calls += max(s.depth for s in seqs)  # the pass runs the trunk to its deepest row
        if on_pass is not None:
            on_pass(len(part), len(part) * max(len(s.ids) for s in seqs))
        for (j, s), per_branch in zip(part, outs, strict=True):
            job = jobs[j]
            for name, row in per_branch.items():
                b = job.extra[name] if name in job.extra else model.branch(name)
                if b.shared_pair:  # one half of its pair: combined once both texts ran
                    pooled.setdefault((j, s.text, name), [None, None])[int(s.second)] = row
                    continue
                results[j][s.text][name] = row_result(b, row, s.encoding, len(s.ids), job.texts[s.text], job.raw,
                                                      with_tags=job.tagged)
    _combine(model, jobs, pooled, results)
    for j, job in enumerate(jobs):  # the order the request named its tasks in
        results[j] = [{t: r[t] for t in (*job.tasks, *job.extra) if t in r} for r in results[j]]
    return results


def _combine(model: ComposedModel, jobs: list[Job], pooled: dict[tuple[int, int, str], list[Any]],
             results: list[Results]) -> None:
    """Each ``shared`` pair branch's result from its two texts' pooled vectors (one head call per branch)."""
    from mtbranch.composition.model import combine_pairs, row_result

    by_name: dict[str, list[tuple[int, int]]] = {}
    for j, t, name in pooled:
        by_name.setdefault(name, []).append((j, t))
    for name, keys in by_name.items():
        b = model.branch(name)
        rows = combine_pairs(b, [pooled[(j, t, name)][0] for j, t in keys], [pooled[(j, t, name)][1] for j, t in keys])
        for (j, t), row in zip(keys, rows, strict=True):
            results[j][t][name] = row_result(b, row, None, 0, jobs[j].texts[t], jobs[j].raw)
