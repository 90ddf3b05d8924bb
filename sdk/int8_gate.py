"""Per-branch int8, gated by each branch's dev metric (``mtbranch quantize``).

For each branch given a labelled dev set: its dev metric with its own layers in float32, then with them int8
(PyTorch dynamic quantization of their ``nn.Linear``: :func:`mtbranch.export.quantize.quantize_branch`; pooler and
head stay float32), both on the composed model's float32 trunk. The branch is kept int8 only where the drop is at
most ``max_drop`` points (metric x 100; default 0.5). The trunk's shared layers stay float32: every branch reads
them, so quantizing them would change branches that were never gated. The decision goes into the composed
artifact's lock (``branches[].precision``), which ``load`` applies, so one artifact mixes int8 and float32
branches, and a float32 branch's outputs are bit-identical to the all-float32 model's.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtbranch.errors import MtbranchError

if TYPE_CHECKING:
    from mtbranch.branch.model import BranchModule
    from mtbranch.composition.model import ComposedModel
    from mtbranch.spec.lock import ArtifactLock

MAX_DROP = 0.5  # points of the branch's dev metric int8 may cost


@dataclass(frozen=True)
class Decision:
    name: str
    metric: str
    float32: float | None  # the dev metric x 100
    int8: float | None
    precision: str  # what the lock records: "int8" or "float32"
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate(model: ComposedModel, dev: dict[str, Any], max_drop: float = MAX_DROP,
         limit: int | None = None) -> list[Decision]:
    """One decision per branch named in ``dev`` (its :class:`~mtbranch.sdk.data.Dataset`); ``limit``: the first
    N examples of each dev set. ``model`` is float32 on the CPU and is left unchanged."""
    from mtbranch.export.quantize import quantizable, quantize_branch
    from mtbranch.sdk.tasks import get_task

    if not quantizable(model):
        raise MtbranchError("the int8 gate needs the composed model in float32 on the CPU",
                            hint="load it without --dtype/--device (int8 dynamic quantization runs on the CPU)")
    out = []
    for name, data in dev.items():
        b = model.branch(name)
        training = get_task(b.manifest.head.type).training
        metric = training.default_metric
        examples = data.examples[:limit] if limit else data.examples
        base = 100 * score(model, b, examples)[metric]
        q = copy.deepcopy(b)
        if not quantize_branch(q):
            out.append(Decision(name, metric, base, None, "float32", "no layers of its own (it reads the trunk)"))
            continue
        low = 100 * score(model, q, examples)[metric]
        drop = low - base if metric in training.lower_is_better else base - low
        keep = drop <= max_drop
        out.append(Decision(name, metric, base, low, "int8" if keep else "float32",
                            f"{'kept' if keep else 'refused'}: {drop:+.2f} points lost (bound {max_drop:g})"))
    return out


def score(model: ComposedModel, branch: BranchModule, examples: list[Any]) -> dict[str, float]:
    """``branch``'s dev metrics on ``examples`` through ``model``'s trunk (sorted batches of 64)."""
    from mtbranch.sdk.features import encode_texts, encode_tokens
    from mtbranch.sdk.metrics import IGNORE_INDEX
    from mtbranch.sdk.tasks import get_task

    m = branch.manifest
    names = getattr(m.head, "labels", None)
    label2id = None if names is None else {n: i for i, n in enumerate(names)}
    training = get_task(m.head.type).training
    tokens = training.data == "tokens"
    if label2id is not None:
        _check_labels(m.name, examples, label2id, tokens)
    if tokens:
        enc = encode_tokens(model.tokenizer, examples, m.tokenizer.max_length, label2id)  # type: ignore[arg-type]
        rows = _outputs(model, branch, enc.input_ids, enc.token_type_ids)
        width = max(len(r) for r in enc.input_ids)
        assert names is not None  # a token head names its tags
        arr = np.full((len(rows), width, len(names)), float(IGNORE_INDEX), dtype=np.float32)
        lab = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        for i, o in enumerate(rows):
            arr[i, : len(o)], lab[i, : len(o)] = o, enc.labels[i]
        return training.score(arr, lab, names)
    encode = training.encode
    assert encode is not None  # table data: the record is checked to have one
    enc = encode_texts(model.tokenizer, examples, m.tokenizer.max_length, None,
                       encode=lambda lab: encode(lab, label2id or {}))
    outs = np.stack(_outputs(model, branch, enc.input_ids, enc.token_type_ids))
    return training.score(outs, np.asarray(enc.labels), names)


def _check_labels(name: str, examples: list[Any], label2id: dict[str, int], tokens: bool) -> None:
    seen = {t for e in examples for t in e.tags} if tokens else {str(e.label) for e in examples}
    unknown = sorted(seen - set(label2id))
    if unknown:
        raise MtbranchError(f"dev set of {name!r}: label(s) {', '.join(map(repr, unknown[:5]))} are not the "
                            f"branch's ({', '.join(list(label2id)[:8])}...)",
                            hint="map the file's labels with --dev-label-names (sorted file labels -> branch labels)")


def _outputs(model: ComposedModel, branch: BranchModule, ids: list[list[int]],
             types: list[list[int]]) -> list[np.ndarray]:
    import torch

    from mtbranch.sdk.features import pad_ids

    pad = int(model.tokenizer.pad_token_id or 0)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[Any] = [None] * len(ids)
    with torch.inference_mode():
        for s in range(0, len(order), 64):
            idx = order[s:s + 64]
            x = pad_ids([ids[i] for i in idx], pad)
            mask = pad_ids([[1] * len(ids[i]) for i in idx], 0)
            y = model(x, mask, pad_ids([types[i] for i in idx], 0), [branch])[branch.name]
            for j, i in enumerate(idx):
                out[i] = (y[j, : len(ids[i])] if y.ndim == 3 else y[j]).float().numpy()
    return out


def record(artifact: str | os.PathLike[str], decisions: list[Decision]) -> ArtifactLock:
    """Write each decided branch's precision into the artifact's lock (atomically, under the update lock); the
    other branches keep theirs. Returns the new lock."""
    from mtbranch.composition.artifact import LOCK_NAME, read_lock
    from mtbranch.io.atomic import exclusive_update, write_text_atomic
    from mtbranch.io.guard import check_output

    path = check_output(artifact, "composed")
    with exclusive_update(path):
        lock = read_lock(path)
        chosen = {d.name: d.precision for d in decisions}
        lock = lock.model_copy(update={"branches": [
            e.model_copy(update={"precision": "int8" if chosen[e.name] == "int8" else None})  # absent: float32
            if e.name in chosen else e for e in lock.branches]})
        write_text_atomic(Path(path) / LOCK_NAME, lock.to_json())
    return lock


def relabel(data: Any, names: list[str]) -> Any:
    """Class labels of a dev file renamed to the branch's: the file's sorted labels -> ``names`` in order."""
    from mtbranch.sdk.data import Dataset

    raw = sorted({str(e.label) for e in data.examples})
    if len(raw) != len(names):
        raise MtbranchError(f"{len(names)} --dev-label-names for {len(raw)} labels ({', '.join(raw)})",
                            hint="give one branch label per distinct label of the dev file, in sorted order")
    mapping = dict(zip(raw, names, strict=True))
    return Dataset([replace(e, label=mapping[str(e.label)]) for e in data.examples], data.sources)


__all__ = ["MAX_DROP", "Decision", "gate", "record", "relabel", "score"]
