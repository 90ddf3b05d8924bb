"""The composed model: one trunk, many branches, the frozen computation done once.

Forward runs the trunk once per input signature present (``single`` text, text ``pair``) up to the
deepest depth the requested tasks need, and forks each branch at its attach depth. A ``shared`` pair branch
(manifest ``pair_mode``) reads the single-text pass for the first texts and a pass over the pair texts alone, and
its head combines the two pooled vectors (:func:`combine_pairs`). Branch modules only
read the shared hidden states, so adding, removing or replacing one branch cannot change another's output.
The branch set is an immutable plan swapped atomically: a request in flight keeps the plan it started with.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from mtbranch.branch.model import BranchModule
from mtbranch.composition.buckets import MAX_PADDING, buckets
from mtbranch.errors import MtbranchError
from mtbranch.heads.postprocess import AGGREGATIONS, TokenContext, tokens_to_words, word_spans
from mtbranch.trunk.model import Trunk

if TYPE_CHECKING:
    from mtbranch.spec.lock import ArtifactLock
    from mtbranch.trunk.source import TrunkSource

log = logging.getLogger("mtbranch")
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Plan:
    branches: tuple[BranchModule, ...]
    by_name: dict[str, BranchModule] = field(compare=False)

    @classmethod
    def of(cls, branches: Sequence[BranchModule]) -> Plan:
        ordered = tuple(sorted(branches, key=lambda b: (b.manifest.attach_depth, b.name)))
        return cls(ordered, {b.name: b for b in ordered})


@dataclass(frozen=True)
class ComposedProvenance:
    """Where a composed model came from, recorded by compose and load; a model built by hand has the default (it
    cannot be saved: nothing says which trunk files to keep)."""

    trunk_source: TrunkSource | None = None  # the trunk composed on (load: the artifact's own trunk/ copy)
    artifact_root: Path | None = None  # the composed artifact it was loaded from (None: composed in memory)


class ComposedModel(nn.Module):
    quantized: str | None = None  # "int8" after mtbranch.export.quantize.quantize_layers
    compute_dtype: str = "float32"  # set by mtbranch.spec.precision.place_model (load/compose)
    compute_dtype_reason: str = "float32"
    attention: str = "sdpa"  # transformers' attention implementation of every layer (spec.precision.attention_for)
    # the engine (mtbranch.backends.auto.place, at load): torch alone, or an ONNX Runtime graph for some batch sizes
    runtime: Any = None
    backend: str = "torch"
    backend_reason: str = "torch"
    backend_info: dict[str, Any] | None = None

    def __init__(self, trunk: Trunk, branches: Sequence[BranchModule], tokenizer: Any,
                 *, trunk_num_layers: int | None = None, lock: ArtifactLock | None = None,
                 provenance: ComposedProvenance | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.tokenizer = tokenizer
        self.trunk_num_layers = trunk_num_layers or trunk.num_layers  # layers of the full (untruncated) trunk
        self.lock = lock  # the artifact's lock file as loaded (None: composed in memory, not saved yet)
        self.provenance = provenance or ComposedProvenance()
        self._tok_lock = threading.Lock()  # fast tokenizers are not safe to call from several threads
        self._tok_fingerprints: dict[str, Any] | None = None  # computed once, on the first put_branch
        self._swap_lock = threading.Lock()
        self.branch_modules = nn.ModuleDict()
        self._plan = Plan.of([])
        for b in branches:
            self._check_fits(b)
            self.branch_modules[b.name] = b
        self._plan = Plan.of(list(branches))

    # -- branch set ---------------------------------------------------------------------------------
    @property
    def branches(self) -> tuple[BranchModule, ...]:
        return self._plan.branches

    @property
    def task_names(self) -> list[str]:
        return [b.name for b in self._plan.branches]

    def branch(self, name: str) -> BranchModule:
        plan = self._plan
        if name not in plan.by_name:
            raise MtbranchError(f"no branch named {name!r}", hint=f"tasks: {', '.join(plan.by_name) or 'none'}")
        return plan.by_name[name]

    def _check_fits(self, b: BranchModule) -> None:
        if b.manifest.attach_depth > self.trunk.num_layers:
            raise MtbranchError(
                f"branch {b.name!r} attaches at depth {b.manifest.attach_depth} but this model keeps only "
                f"{self.trunk.num_layers} trunk layers", hint="compose again with the new branch included")

    def put_branch(self, branch: BranchModule) -> None:
        """Add a branch, or replace the one with the same name. Other branches are untouched."""
        if not isinstance(branch, BranchModule):
            raise MtbranchError(f"put_branch takes a loaded branch (BranchModule), not {type(branch).__name__}",
                                hint="load a branch directory first: "
                                     "mtbranch.branch.model.load_branch(path, head_type)")
        self.place_branch(branch)
        with self._swap_lock:
            others = [b for b in self._plan.branches if b.name != branch.name]
            self.branch_modules[branch.name] = branch
            self._plan = Plan.of([*others, branch])

    def _check_compatible(self, branch: BranchModule) -> None:
        """The validator `compose` and `update` run (T001 fingerprint, T003 structure, K001 tokenizer...), on the
        manifest of a branch added in Python: a branch of another trunk would give wrong answers silently."""
        source = self.provenance.trunk_source  # absent on a hand-built model
        if source is None:
            return
        from mtbranch.errors import ValidationFailed
        from mtbranch.trunk.tokenizer import tokenizer_fingerprints
        from mtbranch.validation.validator import Report, Validator

        fp = self._tok_fingerprints
        if fp is None:  # once per model, under the lock: predict threads share (and reconfigure) the tokenizer
            with self._tok_lock:
                fp = self._tok_fingerprints = tokenizer_fingerprints(self.tokenizer)
        found = Validator(source, tokenizer_fingerprints=fp).check_loaded(branch.manifest, branch.provenance.path)
        if any(f.severity == "error" for f in found):
            raise ValidationFailed(Report(findings=found))

    def place_branch(self, branch: BranchModule) -> None:
        """Check ``branch`` fits the trunk kept and this model's trunk and tokenizer (the validator `update`
        runs), and give it the model's device, dtype and attention (what :meth:`put_branch` does before adding it;
        a canary version is placed so without joining the plan)."""
        self._check_fits(branch)
        self._check_compatible(branch)
        ref = next(self.trunk.parameters())  # the embeddings: float32 also in an int8-quantized model
        branch.to(device=ref.device, dtype=ref.dtype)  # the model's compute dtype (bf16 models take float32 files)
        branch.config._attn_implementation = self.attention  # as the model's other layers (and standalone forward)

    def remove_branch(self, name: str) -> None:
        with self._swap_lock:
            if name not in self._plan.by_name:
                raise MtbranchError(f"no branch named {name!r}", hint=f"tasks: {', '.join(self.task_names)}")
            self._plan = Plan.of([b for b in self._plan.branches if b.name != name])
            del self.branch_modules[name]

    # -- tensors in, tensors out --------------------------------------------------------------------
    def select(self, tasks: Sequence[str] | None, plan: Plan | None = None) -> list[BranchModule]:
        plan = plan or self._plan
        if tasks is None:
            return list(plan.branches)
        unknown = [t for t in tasks if t not in plan.by_name]
        if unknown:
            raise MtbranchError(f"unknown task(s): {', '.join(map(repr, unknown))}",
                                hint=f"tasks in this model: {', '.join(plan.by_name) or 'none'}")
        return [plan.by_name[t] for t in dict.fromkeys(tasks)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                branches: Sequence[BranchModule] | None = None) -> dict[str, torch.Tensor]:
        """Outputs of ``branches`` (default: all) for one tokenized batch; the trunk runs to their deepest depth.
        A ``shared`` pair branch's output is its pooled vector of each row (``combine_pairs`` makes its answer)."""
        branches = list(self._plan.branches) if branches is None else list(branches)
        if not branches:
            return {}
        hit = None if self.runtime is None else self.runtime.route(branches, input_ids)
        if hit is not None:  # the same outputs from a graph engine (mtbranch.backends.ort / .ov)
            engine, signature = hit
            out = engine.run(signature, input_ids, attention_mask, token_type_ids)
            return {b.name: out[b.name] for b in branches}
        forks = trunk_pass(self.trunk, input_ids, attention_mask, token_type_ids, branches)
        return {name: out for name, (_, out) in forks.items()}

    # -- texts in, results out ----------------------------------------------------------------------
    def max_length(self, branches: Sequence[BranchModule]) -> int:
        """The smallest contract wins so no branch sees longer inputs than it was trained on (finding K004),
        capped by the tokenizer's model_max_length and the trunk's position embeddings."""
        from mtbranch.trunk.tokenizer import effective_max_length

        declared = min(b.manifest.tokenizer.max_length for b in branches)
        return effective_max_length(declared, self.tokenizer, self.trunk.config)

    def tokenize(self, texts: list[str], pairs: list[str] | None, max_length: int, offsets: bool,
                 padded: bool = True) -> Any:
        """Token ids (padded to the longest as tensors; ``padded=False``: lists of each input's own length)."""
        with self._tok_lock:
            # longest_first, as the SDK tokenizes training pairs: the ids the branch was trained on, and no error
            # when the second text alone is longer than max_length
            enc = self.tokenizer(_tokenizable(texts), None if pairs is None else _tokenizable(pairs),
                                 padding="longest" if padded else False, truncation=True,
                                 max_length=max_length, return_tensors="pt" if padded else None,
                                 return_offsets_mapping=offsets)
        truncated = sum(1 for e in enc.encodings if e.overflowing)
        if truncated:
            log.warning("%d input(s) longer than max_length=%d tokens were truncated", truncated, max_length)
        return enc

    def predict(self, texts: str | Sequence[str] | None = None, *, tasks: Sequence[str] | None = None,
                text_pairs: str | Sequence[str] | None = None, raw: bool = False,
                batch_size: int = DEFAULT_BATCH_SIZE, words: Sequence[Sequence[str]] | None = None,
                aggregation: str = "first", max_padding: float | None = MAX_PADDING) -> list[dict[str, Any]]:
        """One dict per input text mapping each task name to its result.

        ``tasks`` picks a subset (the trunk then runs only as deep as they need); ``text_pairs`` feeds
        branches with a ``pair`` signature; ``raw`` adds the head's outputs. Inputs are tokenized together, sorted
        by token length and run in length buckets of at most ``batch_size`` rows, each at most ``max_padding``
        padding (:mod:`mtbranch.composition.buckets`; ``None``: every ``batch_size`` rows one pass).

        ``words`` (instead of ``texts``): inputs already split into words, e.g. ``[["fly", "to", "st.",
        "louis"]]``; token tasks then also return ``tags``, one per word. ``aggregation`` picks how a word's
        sub-tokens give its tag: ``first`` (how the SDK trains a branch), ``max`` or ``average``.
        """
        with_tags = words is not None
        if with_tags:
            if texts is not None:
                raise MtbranchError("pass texts or words, not both",
                                    hint="words= takes inputs already split into words: [['fly', 'to', 'paris']]")
            texts = join_words(words)
        elif texts is None:
            raise MtbranchError("no input: pass texts (a string or a list of strings) or words= (lists of words)")
        if aggregation not in AGGREGATIONS:
            raise MtbranchError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}",
                                hint="'first' (the default) tags a word as the branch was trained")
        texts = _as_list(texts, "texts")
        pairs = None if text_pairs is None else _as_list(text_pairs, "text_pairs")
        tasks = _check_tasks(tasks)
        if not isinstance(raw, bool):
            raise MtbranchError(f"raw must be True or False, not {raw!r}", hint="raw=True adds the heads' outputs")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise MtbranchError(f"batch_size must be a positive integer, not {batch_size!r}",
                                hint=f"the default is {DEFAULT_BATCH_SIZE}")
        if max_padding is not None and (isinstance(max_padding, bool) or not isinstance(max_padding, int | float)
                                        or not 0 <= max_padding <= 1):
            raise MtbranchError(f"max_padding must be a fraction from 0 to 1 (or None), not {max_padding!r}",
                                hint=f"the default is {MAX_PADDING}")
        texts = _check_texts(texts, "texts")
        if pairs is not None:
            pairs = _check_texts(pairs, "text_pairs")
            if len(pairs) != len(texts):
                raise MtbranchError(f"{len(texts)} texts but {len(pairs)} text_pairs",
                                    hint="give one pair text per input text")
        plan = self._plan
        selected = self.select(tasks, plan)
        groups = by_signature(selected)
        need_pair = [b.name for b in selected if b.manifest.tokenizer.input_signature == "pair"]
        if need_pair and pairs is None:
            names = ", ".join(need_pair)
            raise MtbranchError(f"task(s) {names} take a text pair, but no pair was given",
                                hint="pass text_pairs= (CLI: --pair TEXT), or pick tasks with --task")
        results: list[dict[str, Any]] = [{} for _ in texts]
        first: dict[str, list[Any]] = {}  # shared pair branches: each text's pooled vector, from the single pass
        for signature, branches in groups.items():
            need_offsets = any(not b.sequence_level for b in branches)
            group_pairs = pairs if signature == "pair" else None
            enc = self.tokenize(texts, group_pairs, self.max_length(branches), need_offsets, padded=False)
            for idx, part in self._buckets(enc, batch_size, max_padding):
                outputs = self(part["input_ids"], part["attention_mask"], part.get("token_type_ids"), branches)
                for b in branches:
                    if b.shared_pair:
                        _put_rows(first.setdefault(b.name, [None] * len(texts)), idx, outputs[b.name])
                        continue
                    self._postprocess(b, outputs[b.name], part, [texts[i] for i in idx], idx, results, raw,
                                      aggregation, with_tags)
        shared = [b for b in selected if b.shared_pair]
        if shared:
            assert pairs is not None  # checked above: they take a text pair
            self._shared_pairs(shared, texts, pairs, first, self.max_length(groups["single"]), batch_size,
                               max_padding, results, raw)
        return results

    def _shared_pairs(self, shared: list[BranchModule], texts: list[str], pairs: list[str],
                      first: dict[str, list[Any]], max_length: int, batch_size: int, max_padding: float | None,
                      results: list[dict[str, Any]], raw: bool) -> None:
        """``shared`` pair branches: the pair texts alone (single-text encoding, as long as the single pass's) run
        to those branches' depth; each head reads both texts' pooled vectors."""
        enc = self.tokenize(pairs, None, max_length, False, padded=False)
        second: dict[str, list[Any]] = {b.name: [None] * len(pairs) for b in shared}
        for idx, part in self._buckets(enc, batch_size, max_padding):
            outputs = self(part["input_ids"], part["attention_mask"], part.get("token_type_ids"), shared)
            for b in shared:
                _put_rows(second[b.name], idx, outputs[b.name])
        for b in shared:
            rows = combine_pairs(b, first[b.name], second[b.name])
            for i, row in enumerate(rows):
                results[i][b.name] = row_result(b, row, None, 0, texts[i], raw)

    def _buckets(self, enc: Any, batch_size: int, max_padding: float | None
                 ) -> Iterator[tuple[list[int], dict[str, Any]]]:
        """Unpadded inputs (``tokenize(..., padded=False)``) cut into length buckets of at most ``batch_size`` rows
        (:mod:`mtbranch.composition.buckets`), each padded on the right to its own longest, as ``tokenize`` pads."""
        ids, types = enc["input_ids"], enc.get("token_type_ids")
        pad = getattr(self.tokenizer, "pad_token_id", None) or 0
        for idx in buckets([len(r) for r in ids], batch_size, max_padding=max_padding):
            width = max(len(ids[i]) for i in idx)
            part: dict[str, Any] = {"input_ids": _padded([ids[i] for i in idx], width, pad),
                                    "attention_mask": _padded([[1] * len(ids[i]) for i in idx], width, 0),
                                    "encodings": [enc.encodings[i] for i in idx]}
            if types is not None:
                part["token_type_ids"] = _padded([types[i] for i in idx], width, 0)
            yield idx, part

    def predict_iter(self, items: Iterable[str | tuple[str, str | None]], *, tasks: Sequence[str] | None = None,
                     raw: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                     chunk_size: int = 1024, words: bool = False,
                     aggregation: str = "first", max_padding: float | None = MAX_PADDING) -> Iterator[dict[str, Any]]:
        """Results for a stream of texts (or ``(text, pair)`` tuples), yielded in input order.

        At most ``chunk_size`` inputs are held at a time (each chunk runs as :meth:`predict`, in length buckets
        of at most ``batch_size``), so memory stays flat however long the stream is. With
        ``words=True`` each item is a list of words (see :meth:`predict`).
        """
        if isinstance(items, str | bytes):
            raise MtbranchError("predict_iter takes an iterable of texts, not one string",
                                hint="pass a list or a generator (model.predict takes a single string)")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise MtbranchError(f"chunk_size must be a positive integer, not {chunk_size!r}")
        if items is None or isinstance(items, dict) or not hasattr(items, "__iter__"):
            raise MtbranchError(f"predict_iter takes an iterable of texts, not {type(items).__name__}",
                                hint="pass a list or a generator of strings (or (text, pair) tuples)")
        it = iter(items)
        seen = 0
        while chunk := list(itertools.islice(it, chunk_size)):
            if words:
                yield from self.predict(words=cast("list[list[str]]", chunk), tasks=tasks, raw=raw,
                                        batch_size=batch_size, aggregation=aggregation, max_padding=max_padding)
                continue
            _check_items(chunk, seen)
            seen += len(chunk)
            texts = [c if isinstance(c, str) else c[0] for c in chunk]
            pairs = [None if isinstance(c, str) else c[1] for c in chunk]
            text_pairs = None if all(p is None for p in pairs) else cast("list[str]", pairs)
            yield from self.predict(texts, tasks=tasks, text_pairs=text_pairs, raw=raw, batch_size=batch_size,
                                    aggregation=aggregation, max_padding=max_padding)

    def _postprocess(self, b: BranchModule, out: torch.Tensor, enc: Any, batch: list[str], idx: list[int],
                     results: list[dict[str, Any]], raw: bool, aggregation: str = "first",
                     with_tags: bool = False) -> None:
        rows = out.float().tolist()
        for j, i in enumerate(idx):
            n = int(enc["attention_mask"][j].sum())
            results[i][b.name] = row_result(b, rows[j], enc["encodings"][j], n, batch[j], raw,
                                            aggregation=aggregation, with_tags=with_tags)


def _put_rows(into: list[Any], idx: list[int], value: torch.Tensor) -> None:
    for j, i in enumerate(idx):
        into[i] = value[j]


@torch.inference_mode()
def combine_pairs(b: BranchModule, first: Sequence[Any], second: Sequence[Any]) -> list[Any]:
    """A ``shared`` pair branch's outputs (as lists) from each pair's two pooled vectors (tensors or lists)."""
    ref = next(b.head.parameters())
    u, v = (torch.stack([torch.as_tensor(x) for x in xs]).to(ref.device, ref.dtype) for xs in (first, second))
    return b.combine(u, v).float().tolist()


def join_words(words: Any) -> list[str]:
    """Pre-split inputs as texts whose whitespace words are exactly ``words`` (so a branch whose word rule
    is ``whitespace`` tags one word per given word)."""
    if isinstance(words, str | bytes | dict) or not hasattr(words, "__iter__"):
        raise MtbranchError(f"words is {type(words).__name__}, not a list of word lists",
                            hint="words= takes one list of words per input: [['fly', 'to', 'paris']]")
    texts: list[str] = []
    for i, ws in enumerate(words):
        if isinstance(ws, str | bytes | dict) or not hasattr(ws, "__iter__"):
            raise MtbranchError(f"words[{i}] is {type(ws).__name__}, not a list of words",
                                hint="give each input as a list of strings: ['fly', 'to', 'paris']")
        ws = list(ws)
        for k, w in enumerate(ws):
            if not isinstance(w, str) or not w or w != w.strip() or any(c.isspace() for c in w):
                raise MtbranchError(f"words[{i}][{k}] = {w!r} is not a word (a non-empty string without "
                                    "whitespace)", hint="split on whitespace first, or pass the text as texts=")
        texts.append(" ".join(ws))
    return texts


def token_context(spec: Any, encoding: Any, text: str, aggregation: str = "first",
                  with_tags: bool = False) -> TokenContext:
    """The words of ``text`` by the branch's word rule, and the word of every token of ``encoding``."""
    in_text = [s == 0 for s in encoding.sequence_ids]
    offsets = [(int(a), int(b)) for a, b in encoding.offsets]
    if getattr(spec, "word_split", "whitespace") == "tokenizer":
        spans: dict[int, tuple[int, int]] = {}
        for wid, (a, b), inside in zip(encoding.word_ids, offsets, in_text, strict=True):
            if wid is not None and inside:
                s0, e0 = spans.get(wid, (a, b))
                spans[wid] = (min(s0, a), max(e0, b))
        order = {wid: k for k, wid in enumerate(spans)}
        token_words = [order.get(wid) if inside and wid is not None else None
                       for wid, inside in zip(encoding.word_ids, in_text, strict=True)]
        return TokenContext(text, list(spans.values()), token_words, aggregation, with_tags)
    words = word_spans(text)
    return TokenContext(text, words, tokens_to_words(offsets, in_text, words), aggregation, with_tags)


def row_result(b: BranchModule, row: Any, encoding: Any, n: int, text: str, raw: bool, *,
               aggregation: str = "first", with_tags: bool = False) -> dict[str, Any]:
    """One input's result from branch ``b``'s output row (``n`` real tokens; ``encoding``: the tokenizer's).

    An output that is not finite (NaN/Inf, e.g. weights near float32's maximum) is refused with an
    :class:`MtbranchError`, never returned as ``NaN``/``null``: the CLI exits 1, the server answers that
    request alone with its ``{"error", "hint"}`` body.
    """
    values = row if b.sequence_level else [v for r in row[:n] for v in r]
    if not all(map(math.isfinite, values)):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise MtbranchError(f"task {b.name!r} produced a non-finite output (NaN/Inf) for the input {shown!r}",
                            hint="the branch's weights overflow on this input: run `mtbranch validate` on it "
                                 "(W009/W010) and report it to the branch's owner")
    spec = b.head_spec
    if b.sequence_level:
        res = b.head_type.postprocess(spec, row, None)
    else:
        res = b.head_type.postprocess(spec, row[:n], token_context(spec, encoding, text, aggregation, with_tags))
    if raw:
        res["raw"] = row if b.sequence_level else row[:n]
    return res


Fork = tuple[list[int] | None, torch.Tensor]  # the rows of the pass a branch read (None: all), its output over them


@torch.inference_mode()
def trunk_pass(trunk: Trunk, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               token_type_ids: torch.Tensor | None, branches: Sequence[BranchModule],
               reads: Sequence[Collection[str]] | None = None) -> dict[str, Fork]:
    """The one trunk pass (``forward``, ``predict``, ``mtbranch serve`` and Ray all run it) for ``branches``.

    The trunk runs layer by layer up to the deepest branch; each branch reads the hidden states at its attach
    depth. With ``reads`` (per row, the names of the branches it feeds), a branch reads only the rows that asked
    for it, and a row leaves the pass once its deepest branch has read it (the padded width shrinks to the longest
    row left). Without, every row feeds every branch, and nothing depends on the batch size (ONNX export).
    Returns, per branch, the rows it read (``None``: all, in order) and its output over them.
    """
    device = next(trunk.parameters()).device
    input_ids = input_ids.to(device)
    mask = None if attention_mask is None else attention_mask.to(device)
    types = None if token_type_ids is None else token_type_ids.to(device)
    by_depth: dict[int, list[BranchModule]] = {}
    for b in branches:
        by_depth.setdefault(b.manifest.attach_depth, []).append(b)
    depth_of = {b.name: b.manifest.attach_depth for b in branches}
    wants = list(reads or ())
    depths = [max(depth_of[n] for n in names) for names in wants]  # the deepest branch each row feeds
    active = None if reads is None else list(range(len(wants)))  # row of `hidden` -> row of the pass
    forks: dict[str, Fork] = {}
    hidden = trunk.embed(input_ids, types, mask)
    mask4d = trunk.mask(hidden, mask)
    for depth in range(max(by_depth, default=-1) + 1):
        if depth:
            hidden = trunk.run_layer(depth, hidden, mask4d)
        for b in by_depth.get(depth, ()):
            if active is None:
                forks[b.name] = (None, b(hidden, mask, mask4d))
                continue
            sel = [k for k, r in enumerate(active) if b.name in wants[r]]
            if len(sel) == len(active):
                forks[b.name] = (list(active), b(hidden, mask, mask4d))
            elif sel:  # only some rows asked for this branch: it reads those alone
                h, m = hidden[sel], None if mask is None else mask[sel]
                forks[b.name] = ([active[k] for k in sel], b(h, m, trunk.mask(h, m)))
        if active is None:
            continue
        keep = [k for k, r in enumerate(active) if depths[r] > depth]
        if not keep:
            break
        if len(keep) < len(active):
            active = [active[k] for k in keep]
            hidden, mask, mask4d = _keep_rows(trunk, hidden, mask, keep)
    return forks


def _keep_rows(trunk: Trunk, hidden: torch.Tensor, mask: torch.Tensor | None, keep: list[int]
               ) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    """The rows still in the pass; the padded width shrinks to the last column one of them fills."""
    hidden = hidden[keep]
    if mask is not None:
        mask = mask[keep]
        width = int(mask.any(dim=0).nonzero().max()) + 1
        hidden, mask = hidden[:, :width], mask[:, :width]
    return hidden, mask, trunk.mask(hidden, mask)


def run_rows(model: ComposedModel, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int] | None],
             reads: Sequence[Sequence[str]], extra: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per row, the outputs (as lists) of ``model``'s branches named in ``reads[row]``: token ids of any lengths and
    task subsets in one :func:`trunk_pass` (padded on the right, as ``tokenize`` pads for ``predict``).

    ``extra``: modules outside the model's plan (a canary version of a branch, keyed by a name no task can have)
    that rows may read too: they fork at their own depth in the same pass, and the plan's branches are untouched.
    With a graph engine (``model.runtime``: ONNX Runtime, OpenVINO) each input signature's rows run apart, on its
    graph when they ask for all of its tasks and the batch size is one it runs (mtbranch.backends.auto).
    """
    extra = extra or {}
    if model.runtime is not None and not extra:
        by_signature: dict[str, list[int]] = {}
        for r, names in enumerate(reads):
            sig = pass_signature(model.branch(next(iter(names)))) if names else "single"
            by_signature.setdefault(sig, []).append(r)
        if len(by_signature) > 1:
            outs: list[dict[str, Any]] = [{} for _ in ids]
            for rows in by_signature.values():
                part = _run_rows(model, [ids[r] for r in rows], [type_ids[r] for r in rows],
                                 [reads[r] for r in rows], {})
                for r, o in zip(rows, part, strict=True):
                    outs[r] = o
            return outs
    return _run_rows(model, ids, type_ids, reads, extra)


def _run_rows(model: ComposedModel, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int] | None],
              reads: Sequence[Sequence[str]], extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    pad = getattr(model.tokenizer, "pad_token_id", None) or 0
    width = max(len(r) for r in ids)
    input_ids = _padded([list(r) for r in ids], width, pad)
    mask = _padded([[1] * len(r) for r in ids], width, 0)
    types = None if any(t is None for t in type_ids) else _padded([list(t or ()) for t in type_ids], width, 0)
    extra = extra or {}
    wanted = list(dict.fromkeys(n for names in reads for n in names))
    branches = [*model.select([n for n in wanted if n not in extra]), *(extra[n] for n in wanted if n in extra)]
    hit = None if model.runtime is None or extra else model.runtime.route(branches, input_ids)
    if hit is not None:  # the rows ask for every task of one engine's graph: run it, pick per row
        engine, signature = hit
        got = {n: v.float().tolist() for n, v in engine.run(signature, input_ids, mask, types).items()}
        return [{n: got[n][r] for n in names} for r, names in enumerate(reads)]
    forks = trunk_pass(model.trunk, input_ids, mask, types, branches, [set(names) for names in reads])
    outs: list[dict[str, Any]] = [{} for _ in ids]
    for name, (rows, value) in forks.items():
        assert rows is not None  # with reads, each fork names its rows
        for r, v in zip(rows, value.float().tolist(), strict=True):
            outs[r][name] = v
    return outs


def _padded(rows: list[list[int]], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if value is None or isinstance(value, bytes | dict) or not hasattr(value, "__iter__"):
        raise MtbranchError(f"{what} is {type(value).__name__}, not a string or a list of strings",
                            hint="pass a list of strings (use '' for an empty input)")
    return list(value)


def _check_items(chunk: list[Any], offset: int) -> None:
    """Each item of predict_iter a text or a ``(text, pair)`` tuple: ``predict_iter([1, 2])`` is a user error."""
    for i, c in enumerate(chunk, offset):
        if isinstance(c, str):
            continue
        if isinstance(c, tuple | list) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], str | None):
            continue
        raise MtbranchError(f"items[{i}] is {type(c).__name__}, not a text or a (text, pair) tuple of strings",
                            hint="pass strings, or (text, pair) tuples for pair tasks")


def pass_signature(b: BranchModule) -> str:
    """The pass a branch reads: its input signature, but ``single`` for a ``shared`` pair branch (each text of the
    pair runs alone; its first texts ride the single-text pass)."""
    return "single" if b.shared_pair else b.manifest.tokenizer.input_signature


def by_signature(branches: Sequence[BranchModule]) -> dict[str, list[BranchModule]]:
    """Branches grouped by the pass they read (``single``, ``pair``; :func:`pass_signature`): the trunk runs once
    per group (and once more over the pair texts alone, for ``shared`` pair branches)."""
    groups: dict[str, list[BranchModule]] = {}
    for b in branches:
        groups.setdefault(pass_signature(b), []).append(b)
    return groups


_SURROGATES = re.compile("[\ud800-\udfff]")


def _tokenizable(texts: list[str]) -> list[str]:
    """Lone surrogates (no UTF-8 form: the tokenizer refuses them) become U+FFFD, one code point for one, so
    offsets in the results still index the caller's own strings (which results quote unchanged)."""
    if not any(_SURROGATES.search(t) for t in texts):
        return texts
    log.warning("input(s) with lone surrogates (not encodable as UTF-8): tokenized with U+FFFD in their place")
    return [_SURROGATES.sub("\ufffd", t) for t in texts]


def _check_texts(items: list[Any], what: str) -> list[str]:
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise MtbranchError(f"{what}[{i}] is {type(t).__name__}, not a string",
                                hint="pass a list of strings (use '' for an empty input)")
    return items


def _check_tasks(tasks: Any) -> list[str] | None:
    """``None`` (every task), one name, or a non-empty list of names, as the HTTP API accepts."""
    if tasks is None:
        return None
    if isinstance(tasks, str):
        return [tasks]
    if isinstance(tasks, bytes | dict) or not hasattr(tasks, "__iter__"):
        raise MtbranchError(f"tasks is {type(tasks).__name__}, not a list of task names",
                            hint="pass tasks=['name', ...], or omit tasks to run every task")
    names = list(tasks)
    if not names:
        raise MtbranchError("tasks is an empty list", hint="omit tasks to run every task, or name some")
    for i, t in enumerate(names):
        if not isinstance(t, str):
            raise MtbranchError(f"tasks[{i}] is {type(t).__name__}, not a task name (a string)",
                                hint="pass tasks=['name', ...], e.g. tasks=['sentiment']")
    return names
