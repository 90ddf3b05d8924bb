"""Run many requests in as few trunk passes as possible: shared by ``mtbranch serve`` and the Ray Serve deployment.

Every request is tokenized once, when it arrives (:func:`prepare_job`): one *sequence* per text and input
signature it needs (a text run by single-text and by pair tasks is two sequences). :func:`run_jobs` then puts the
sequences of all requests of a batch, whatever task subsets they asked for, into shared trunk passes:

* the sequences are sorted by length and cut into passes of at most ``max_batch_size`` sequences and at most
  ``max_batch_tokens`` padded tokens (sequences x the longest one): **the one meaning of batch size** for
  ``mtbranch serve`` and Ray;
* in a pass the trunk runs layer by layer; each branch reads the rows that asked for it at its attach depth, and
  a row leaves the pass once the deepest branch it needs has read it (the padded width shrinks with it), so a
  request for a depth-2 task shares layers 1-2 with a request for a depth-4 task and costs no more.

If a pass fails, its requests are re-run one by one so one bad input cannot fail the others.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtbranch.serve.schema import ServeSettings

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


@dataclass(frozen=True)
class Job:
    texts: list[str]
    pairs: list[str] | None
    tasks: tuple[str, ...]
    raw: bool = False
    sequences: tuple[Row, ...] = ()
    model_id: int = 0  # id() of the model that tokenized it; another model re-tokenizes

    @property
    def tokens(self) -> int:
        return sum(len(s.ids) for s in self.sequences) or sum(len(t) // 4 + 2 for t in self.texts)

    @property
    def size(self) -> int:
        return len(self.sequences) or len(self.texts)


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


def prepare_job(model: Any, texts: list[str], pairs: list[str] | None, tasks: list[str], raw: bool) -> Job:
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
    return Job(texts, pairs, tuple(tasks), raw, tuple(seqs), id(model))


def run_jobs(model: Any, jobs: list[Job], stats: Stats | None = None, max_batch_size: int = MAX_BATCH_SIZE,
             max_batch_tokens: int | None = None, on_pass: PassHook | None = None) -> list[Outcome]:
    """One outcome per job (its results, or the exception it raised), in order."""
    ready: list[Job | None] = []
    outcomes: list[Outcome] = [[] for _ in jobs]
    for i, job in enumerate(jobs):
        try:  # a job tokenized by another model (before a hot swap) is tokenized again for this one
            ready.append(job if job.model_id == id(model) and job.sequences else
                         prepare_job(model, job.texts, job.pairs, list(job.tasks), job.raw))
        except Exception as exc:
            outcomes[i] = exc
            ready.append(None)
    todo = [i for i, j in enumerate(ready) if j is not None]
    try:
        done = _run(model, [ready[i] for i in todo], stats, max_batch_size, max_batch_tokens, on_pass)  # type: ignore[misc]
        for i, res in zip(todo, done, strict=True):
            outcomes[i] = res
    except Exception as exc:
        if len(todo) == 1:
            outcomes[todo[0]] = exc
            return outcomes
        log.warning("a merged batch of %d requests failed (%s); running them one by one", len(todo), exc)
        for i in todo:
            try:
                outcomes[i] = _run(model, [ready[i]], stats, max_batch_size, max_batch_tokens, on_pass)[0]  # type: ignore[list-item]
            except Exception as exc_i:
                outcomes[i] = exc_i
    return outcomes


def split_passes(lengths: list[int], max_batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Indices sorted by length, cut so each pass has <= max_batch_size rows and rows x longest <= max_batch_tokens.

    A single sequence longer than the token budget is a pass on its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    passes: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = max(lengths[i], max((lengths[j] for j in cur), default=0))
        if cur and (len(cur) + 1 > max_batch_size
                    or (max_batch_tokens is not None and (len(cur) + 1) * longest > max_batch_tokens)):
            passes.append(cur)
            cur = []
        cur.append(i)
    if cur:
        passes.append(cur)
    return passes


def _run(model: Any, jobs: list[Job], stats: Stats | None, max_batch_size: int, max_batch_tokens: int | None,
         on_pass: PassHook | None) -> list[Results]:
    from mtbranch.composition.model import row_result

    rows = [(j, s) for j, job in enumerate(jobs) for s in job.sequences]
    results: list[Results] = [[{} for _ in job.texts] for job in jobs]
    for chosen in split_passes([len(s.ids) for _, s in rows], max_batch_size, max_batch_tokens):
        part = [rows[k] for k in chosen]
        outs = _trunk_pass(model, [s for _, s in part], stats)
        if stats is not None:
            stats.predict_calls += 1
            stats.texts += len(part)
            stats.largest_batch = max(stats.largest_batch, len(part))
        if on_pass is not None:
            on_pass(len(part), len(part) * max(len(s.ids) for _, s in part))
        for (j, s), per_branch in zip(part, outs, strict=True):
            job = jobs[j]
            for name, row in per_branch.items():
                b = model.branch(name)
                results[j][s.text][name] = row_result(b, row, s.encoding, len(s.ids), job.texts[s.text], job.raw)
    for j, job in enumerate(jobs):  # the order the request named its tasks in
        results[j] = [{t: r[t] for t in job.tasks if t in r} for r in results[j]]
    return results


def _trunk_pass(model: Any, seqs: list[Row], stats: Stats | None) -> list[dict[str, Any]]:
    """Branch outputs (as lists) per sequence; rows leave the pass after their deepest branch."""
    import torch

    trunk = model.trunk
    device = next(trunk.parameters()).device
    pad = getattr(model.tokenizer, "pad_token_id", None) or 0
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    types = None if any(s.type_ids is None for s in seqs) else torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):  # padded on the right, as the tokenizer pads for predict
        ids[r, :len(s.ids)] = torch.tensor(s.ids)
        mask[r, :len(s.ids)] = 1
        if types is not None and s.type_ids is not None:
            types[r, :len(s.type_ids)] = torch.tensor(s.type_ids)
    ids, mask = ids.to(device), mask.to(device)
    by_depth: dict[int, list[Any]] = {}
    for name in dict.fromkeys(n for s in seqs for n in s.branches):
        b = model.branch(name)
        by_depth.setdefault(b.manifest.attach_depth, []).append(b)
    outs: list[dict[str, Any]] = [{} for _ in seqs]
    active = list(range(len(seqs)))  # rows of `hidden` -> index in seqs
    with torch.inference_mode():
        types = None if types is None else types.to(device)
        # trunk families whose embeddings read the padding mask take it as a third argument
        hidden = trunk.embed(ids, types, mask) if "attention_mask" in inspect.signature(trunk.embed).parameters \
            else trunk.embed(ids, types)
        mask4d = trunk.mask(hidden, mask)
        for depth in range(max(s.depth for s in seqs) + 1):
            if depth:
                hidden = trunk.run_layer(depth, hidden, mask4d)
                if stats is not None:
                    stats.layer_calls += 1
            for b in by_depth.get(depth, ()):
                sel = [k for k, r in enumerate(active) if b.name in seqs[r].branches]
                if not sel:
                    continue
                h, m = (hidden, mask) if len(sel) == len(active) else (hidden[sel], mask[sel])
                value = b(h, m, trunk.mask(h, m) if len(sel) < len(active) else mask4d).float().tolist()
                for k, v in zip(sel, value, strict=True):
                    outs[active[k]][b.name] = v
            keep = [k for k, r in enumerate(active) if seqs[r].depth > depth]
            if keep and len(keep) < len(active):  # rows done leave; the padded width shrinks to the longest left
                active = [active[k] for k in keep]
                w = max(len(seqs[r].ids) for r in active)
                hidden, mask = hidden[keep, :w], mask[keep, :w]
                mask4d = trunk.mask(hidden, mask)
            elif not keep:
                break
    return outs
