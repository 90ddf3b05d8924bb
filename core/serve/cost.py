"""What each task (and each owner, the manifests' ``owner``) costs of the shared model.

FLOPs are counted per row of a trunk pass: trunk layer ``k`` over a row of ``n`` tokens is split equally among the
branches the row feeds whose attach depth is ``k`` or deeper (they all needed it); each branch's own layers are its
own. The seconds the model's worker thread spent on a batch (wall and CPU) are then split in proportion to those
FLOPs. :func:`static_cost` gives the same split for one request asking for every task (``mtbranch inspect --cost``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtbranch.plugins.records import dense_layer_flops

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

CANARY_SEPARATOR = "@"  # a canary's key (mtbranch.serve.canary): its cost is its task's


@dataclass(frozen=True)
class Shape:
    """What the FLOPs of a layer depend on: its sizes and the trunk family's count (``TrunkFamily.layer_flops``)."""

    hidden: int
    intermediate: int
    flops: Callable[[int, int, int], float] = dense_layer_flops

    @classmethod
    def of_config(cls, config: Any) -> Shape:
        """From a config.json dict or a transformers config, under the family's keys (DistilBERT's ``dim``)."""
        from mtbranch.errors import MtbranchError
        from mtbranch.trunk.families import config_key, record_for

        get: Any = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
        try:
            rec = record_for(get("model_type", None))
        except MtbranchError:  # a family no longer installed: an estimate with BERT's keys and count
            hidden = int(get("hidden_size"))
            return cls(hidden, int(get("intermediate_size", None) or 4 * hidden))
        hidden = int(get(config_key(rec, "hidden_size")))
        return cls(hidden, int(get(config_key(rec, "intermediate_size"), None) or 4 * hidden), rec.layer_flops)

    def layer(self, tokens: int) -> float:
        """FLOPs of one layer over a row of ``tokens`` tokens."""
        return self.flops(tokens, self.hidden, self.intermediate)


def row_flops(shape: Shape, tokens: int, reads: Mapping[str, tuple[int, int]]) -> dict[str, tuple[float, float]]:
    """Per branch the row feeds (``reads``: name -> (attach depth, own layers)): (trunk share, own) FLOPs."""
    per_layer = shape.layer(tokens)
    out: dict[str, tuple[float, float]] = {}
    for name, (depth, own) in reads.items():
        shared = sum(per_layer / sum(1 for d, _ in reads.values() if d >= k) for k in range(1, depth + 1))
        out[name] = (shared, own * per_layer)
    return out


def task_of(key: str) -> str:
    return key.split(CANARY_SEPARATOR, 1)[0]


def static_cost(shape: Shape, branches: Sequence[Mapping[str, Any]], tokens: int = 128) -> list[dict[str, Any]]:
    """Per branch (``name``, ``owner``, ``attach_depth``, ``num_layers``, ``signature``), FLOPs of one
    ``tokens``-token input: asked alone (trunk to its depth + its layers), and its shared and own share when every
    task is asked (single-text and pair tasks read different sequences, so each signature shares its own row)."""
    share: dict[str, tuple[float, float]] = {}
    for signature in dict.fromkeys(b.get("signature", "single") for b in branches):
        reads = {b["name"]: (int(b["attach_depth"]), int(b["num_layers"])) for b in branches
                 if b.get("signature", "single") == signature}
        share.update(row_flops(shape, tokens, reads))
    rows = []
    for b in branches:
        depth, own = int(b["attach_depth"]), int(b["num_layers"])
        shared, mine = share[b["name"]]
        rows.append({"task": b["name"], "owner": b.get("owner") or "unowned", "attach_depth": depth,
                     "signature": b.get("signature", "single"),
                     "num_layers": own, "tokens": tokens, "alone_flops": (depth + own) * shape.layer(tokens),
                     "shared_flops": shared, "own_flops": mine, "all_tasks_flops": shared + mine})
    return rows


class CostMeter:
    """Counters per task and owner: FLOPs, and the model thread's seconds (wall, CPU) split by FLOPs."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter

        labels = ["task", "owner"]
        self.flops = Counter("mtbranch_task_flops", "Estimated FLOPs per task: its share of the trunk layers it "
                             "ran (split among the tasks of each row) and its own layers", labels, registry=registry)
        self.seconds = Counter("mtbranch_task_compute_seconds", "Seconds the model thread spent, split among tasks "
                               "by FLOPs", labels, registry=registry)
        self.cpu = Counter("mtbranch_task_cpu_seconds", "CPU seconds of the model thread, split among tasks by "
                           "FLOPs", labels, registry=registry)
        self.totals: dict[tuple[str, str], list[float]] = {}  # (task, owner) -> [flops, seconds, cpu]

    def charge(self, model: ComposedModel, rows: Iterable[tuple[int, Sequence[str]]], extra: Mapping[str, Any],
               seconds: float, cpu: float) -> None:
        """One batch: its rows (tokens, branch keys read), the canary modules by key, its seconds."""
        if getattr(model, "trunk", None) is None:  # a stand-in for the model (the batcher's tests): no layers
            return
        shape = shape_of(model)
        flops: dict[str, float] = {}
        for tokens, keys in rows:
            reads = {}
            for k in keys:
                b = extra[k] if k in extra else model.branch(k)
                reads[k] = (b.manifest.attach_depth, b.manifest.num_layers)
            for k, (shared, own) in row_flops(shape, tokens, reads).items():
                flops[task_of(k)] = flops.get(task_of(k), 0.0) + shared + own
        total = sum(flops.values())
        if total <= 0:
            return
        for task, f in flops.items():
            owner = _owner(model, task)
            acc = self.totals.setdefault((task, owner), [0.0, 0.0, 0.0])
            for i, v in enumerate((f, seconds * f / total, cpu * f / total)):
                acc[i] += v
            self.flops.labels(task, owner).inc(f)
            self.seconds.labels(task, owner).inc(seconds * f / total)
            self.cpu.labels(task, owner).inc(cpu * f / total)

    def as_dict(self) -> dict[str, Any]:
        return {f"{t}|{o}": {"task": t, "owner": o, "flops": v[0], "seconds": v[1], "cpu_seconds": v[2]}
                for (t, o), v in sorted(self.totals.items())}


def _owner(model: ComposedModel, task: str) -> str:
    try:
        return str(model.branch(task).manifest.owner or "unowned")
    except Exception:  # removed by a swap since: its cost still counts
        return "unowned"


def shape_of(model: ComposedModel) -> Shape:
    cached = _SHAPES.get(model)
    if cached is None:
        cached = _SHAPES[model] = Shape.of_config(model.trunk.config)
    return cached


# per model, computed once (kept no longer than the model)
_SHAPES: weakref.WeakKeyDictionary[ComposedModel, Shape] = weakref.WeakKeyDictionary()


class Clock:
    """Wall and CPU seconds of the current thread between start and stop."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.thread_time() - self.cpu
