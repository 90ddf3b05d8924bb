"""Timing: every setup once per round, interleaved in a shuffled order, so a busy machine slows them alike.

Medians and nearest-rank percentiles over a handful of rounds; the ratios (speedup over the layer-count ideal)
are computed from one run's rounds.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtbranch.bench.scenarios import Scenario
from mtbranch.bench.setups import Setup, composed_call

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _stats(times: list[float], batch_size: int) -> dict[str, float]:
    qs = sorted(times)

    def pct(p: float) -> float:  # nearest-rank percentile: honest for a handful of rounds
        return qs[min(len(qs), max(1, math.ceil(p / 100 * len(qs)))) - 1]

    mean = statistics.fmean(times)
    return {"mean_ms": 1000 * mean, "p50_ms": 1000 * statistics.median(times), "p99_ms": 1000 * pct(99),
            "throughput": batch_size / mean, "rounds": len(times)}


def make_batch(batch_size: int, seq_len: int, vocab_size: int, device: str, seed: int = 0) -> dict[str, Any]:
    """Random token ids framed as [CLS] ... [SEP], no padding: speed does not depend on the ids."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(1000, vocab_size // 2), vocab_size, (batch_size, seq_len), generator=g)
    ids[:, 0], ids[:, -1] = 101 % vocab_size, 102 % vocab_size
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "token_type_ids": torch.zeros_like(ids).to(device)}


def measure(sc: Scenario, setups: dict[str, Setup], batch_size: int, seq_len: int, rounds: int, warmup: int,
             device: str, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    times: dict[str, list[float]] = {k: [] for k in setups}
    task_times: dict[str, dict[str, list[float]]] = {k: {t: [] for t in s.per_task} for k, s in setups.items()}
    rng = random.Random(seed)
    for r in range(warmup + rounds):
        order = list(setups)
        rng.shuffle(order)  # interleaved, in a different order each round
        for k in order:
            s = setups[k]
            if s.per_task:  # time each task's own model; the setup's time is their sum
                spent = {t: _timed(fn, device) for t, fn in s.per_task.items()}
                if r >= warmup:
                    for t, v in spent.items():
                        task_times[k][t].append(v)
                    times[k].append(sum(spent.values()))
            else:
                assert s.run is not None, k  # a setup has either one call or per-task calls
                v = _timed(s.run, device)
                if r >= warmup:
                    times[k].append(v)
        if r >= warmup:
            say(f"round {r - warmup + 1}/{rounds}: " + ", ".join(
                f"{k} {1000 * times[k][-1]:.0f} ms" for k in setups))
    rows: dict[str, dict[str, Any]] = {
        k: {"layers": s.layers, "weights_mib": s.weights_bytes / 2**20, **_stats(times[k], batch_size),
            "per_task_ms": {t: 1000 * statistics.fmean(v) for t, v in task_times[k].items()}}
        for k, s in setups.items()}
    comp = rows["composed"]
    ratios: dict[str, Any] = {}
    for base in ("full", "standalone"):
        if base in rows:
            speedup = rows[base]["mean_ms"] / comp["mean_ms"]
            ideal = rows[base]["layers"] / comp["layers"]
            ratios[f"composed_vs_{base}"] = {"speedup": speedup, "ideal": ideal, "efficiency": speedup / ideal}
    if "subset" in rows:
        frac = rows["subset"]["mean_ms"] / comp["mean_ms"]
        layer_frac = rows["subset"]["layers"] / comp["layers"]
        ratios["subset_vs_composed"] = {"time_fraction": frac, "layer_fraction": layer_frac,
                                        "limit": 1.2 * layer_frac, "cost_per_layer_share": frac / layer_frac}
    if "hf-reference" in rows:
        ratios["one_branch_vs_hf"] = {"time_ratio": rows["one-branch"]["mean_ms"] / rows["hf-reference"]["mean_ms"]}
    return {"scenario": sc.name, "description": sc.description, "tasks": len(sc.branches) or None,
            "setups": rows, "ratios": ratios}


def measure_task_curve(model: ComposedModel, rows: dict[str, Any], batch: dict[str, Any], device: str,
                repeats: int) -> dict[str, list[float]]:
    """ms per batch to answer the first k tasks, k = 1..n: the composed model is measured for each k (median of
    ``repeats``); unmerged and single-task serving add up their per-task means from the main rounds."""
    import torch

    branches = list(model.branches)
    curve: dict[str, list[float]] = {"tasks": list(range(1, len(branches) + 1)), "composed": []}
    for k in range(1, len(branches) + 1):
        call = composed_call(model, branches[:k], batch)
        with torch.inference_mode():
            spent = [_timed(call, device) for _ in range(repeats)]
        curve["composed"].append(1000 * statistics.median(spent))
    for base in ("standalone", "full"):
        per = rows.get(base, {}).get("per_task_ms", {})
        if per:
            acc, curve[base] = 0.0, []
            for b in branches:
                acc += per[b.name]
                curve[base].append(acc)
    return curve


def machine_info(device: str) -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        info["cpu"] = model[0] if model else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
