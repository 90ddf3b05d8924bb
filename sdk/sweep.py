"""Depth sweep (paper §3.1 / §4.2 / App. D): train a branch for every L in [N_min, N_max] (the top L trunk
layers fine-tuned, depth = num_layers - L) and pick L by a rule.

One trunk pass computes the features at every depth the sweep needs; each L then trains on its depth's
cached features. Rules: ``best`` (best dev metric), ``within:X`` (the smallest L whose metric is within X%
of the best), ``marginal:C`` (add layers from N_min while each added layer gains at least C points, the
metric on a 0-100 scale, as the paper's c = 1.0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mtbranch.errors import MtbranchError, UsageError
from mtbranch.sdk.data import Dataset
from mtbranch.sdk.train import BranchInfo, Prepared, Task, TrainConfig, TrainResult, export, fit, prepare
from mtbranch.trunk.source import TrunkSource, resolve_trunk


@dataclass
class SweepRow:
    layers: int
    depth: int
    metrics: dict[str, float]
    num_parameters: int
    seconds: float
    best_epoch: float | None


@dataclass
class SweepResult:
    metric: str
    rule: str
    rows: list[SweepRow]
    selected: int  # the selected L
    results: dict[int, TrainResult] = field(default_factory=dict, repr=False)
    prepared: Prepared | None = field(default=None, repr=False)

    def row(self, layers: int) -> SweepRow:
        return next(r for r in self.rows if r.layers == layers)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "rule": self.rule, "selected_layers": self.selected,
                "rows": [r.__dict__ for r in self.rows]}


def parse_rule(rule: str) -> tuple[str, float]:
    kind, _, arg = rule.partition(":")
    if kind == "best" and not arg:
        return kind, 0.0
    if kind in ("within", "marginal") and arg:
        try:
            value = float(arg)
        except ValueError:
            value = -1.0
        if value >= 0:
            return kind, value
    raise UsageError(f"unknown selection rule {rule!r}",
                     hint="use best, within:X (X percent of the best, e.g. within:1) or marginal:C "
                          "(C metric points per added layer, e.g. marginal:1.0)")


def select_layers(scores: dict[int, float], rule: str, *, lower_is_better: bool = False) -> int:
    """Pick L from ``{L: metric}`` by ``rule`` (metrics as fractions: 0.91 = 91 points)."""
    kind, arg = parse_rule(rule)
    sign = -1.0 if lower_is_better else 1.0
    ls = sorted(scores)
    best_l = max(ls, key=lambda L: (sign * scores[L], -L))  # ties: the smaller branch
    if kind == "best":
        return best_l
    if kind == "within":
        best = scores[best_l]
        tol = abs(best) * arg / 100.0
        return next(L for L in ls if sign * (scores[L] - best) >= -tol - 1e-12)
    chosen = ls[0]
    for nxt in ls[1:]:
        gain = sign * (scores[nxt] - scores[chosen]) * 100.0 / (nxt - chosen)
        if gain < arg - 1e-9:
            break
        chosen = nxt
    return chosen


def sweep(trunk: str | os.PathLike[str] | TrunkSource, task: Task, train_data: Dataset, dev_data: Dataset, *,
          min_layers: int, max_layers: int, rule: str = "best", cfg: TrainConfig | None = None,
          info: BranchInfo | None = None, out_dir: str | os.PathLike[str] | None = None,
          on_row: Any = None, labels: list[str] | None = None, on_start: Any = None) -> SweepResult:
    """Train one branch per L in ``[min_layers, max_layers]`` and select L by ``rule``. ``on_start(L, depth)``
    is called before each L trains (a header for its epoch lines), ``on_row(row)`` after."""
    cfg = cfg or TrainConfig()
    info = info or BranchInfo(name="branch")
    parse_rule(rule)
    source = trunk if isinstance(trunk, TrunkSource) else resolve_trunk(str(trunk))
    n = source.num_layers
    if not 0 <= min_layers <= max_layers <= n:
        raise UsageError(f"need 0 <= N_min <= N_max <= {n} (the trunk's layers), got {min_layers}..{max_layers}")
    span = list(range(min_layers, max_layers + 1))
    prep = prepare(source, task, train_data, dev_data, cfg, [n - L for L in span], labels=labels)  # one trunk pass
    rows: list[SweepRow] = []
    results: dict[int, TrainResult] = {}
    for L in span:
        if on_start is not None:
            on_start(L, n - L)
        res = fit(prep, n - L, L, cfg, info)
        results[L] = res
        params = sum(p.numel() for p in res.module.parameters())
        row = SweepRow(L, n - L, res.metrics, params, round(res.seconds, 1), res.best_epoch)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    metric = cfg.metric or results[span[0]].metric
    chosen = select_layers({L: results[L].metrics[metric] for L in span}, rule,
                           lower_is_better=metric in prep.training.lower_is_better)
    out = SweepResult(metric, rule, rows, chosen, results, prep)
    if out_dir is not None:
        table = out.to_json()
        if export(prep, results[chosen], cfg, out_dir, {"sweep": table}) is None and results[chosen].is_main:
            raise MtbranchError("export failed", path=str(out_dir))
    return out


def format_table(result: SweepResult, task_name: str = "") -> str:
    """A Markdown table in the spirit of the paper's Table 1: one row per L."""
    m = result.metric
    title = f"dev {m}" + (f" ({task_name})" if task_name else "")
    lines = [f"| L (task layers) | depth | {title} | params | train s |", "|---|---|---|---|---|"]
    for r in result.rows:
        mark = " **(selected)**" if r.layers == result.selected else ""
        lines.append(f"| {r.layers} | {r.depth} | {100 * r.metrics[m]:.2f}{mark} | {r.num_parameters:,} | "
                     f"{r.seconds:.0f} |")
    return "\n".join(lines)
