"""``mtbranch bench``: the composed model against the ways teams serve the same tasks today, in one run.

This module only orchestrates; each part has its own module in this package:

* :mod:`mtbranch.bench.scenarios`  what is measured: branches (depth, layers, head) per scenario, layer arithmetic.
* :mod:`mtbranch.bench.setups`     the scenario built on disk and the ways of serving it (composed, standalone,
  full single-task, subset, one branch vs transformers).
* :mod:`mtbranch.bench.timing`     interleaved rounds, statistics, ratios, the time-vs-tasks curve, machine info.
* :mod:`mtbranch.bench.load_probe` the fresh-process load check (``python -m mtbranch.bench.load_probe``).
* :mod:`mtbranch.bench.plot`       the PNG of the curve.

The layer counts are the paper's overhead metric; "efficiency" is the measured speedup over the ideal
(layer-count) speedup. Synthetic scenarios use random weights (speed does not depend on their values).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtbranch.bench.load_probe import measure_load
from mtbranch.bench.plot import plot
from mtbranch.bench.scenarios import SCENARIOS, BranchPlan, Scenario
from mtbranch.bench.setups import build_setups, prepare
from mtbranch.bench.timing import machine_info, make_batch, measure, measure_task_curve
from mtbranch.errors import UsageError


def run_bench(scenario: str | Scenario = "paper-mixed", *, batch_size: int = 32, seq_len: int = 64,
              rounds: int = 5, warmup: int = 1, threads: int | None = None, device: str = "cpu",
              dtype: str | None = None, workdir: str | os.PathLike[str] | None = None, seed: int = 0,
              task_curve: bool = True, load_check: bool = True,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one scenario; returns the JSON-able result (see docs/benchmarks.md)."""
    import torch

    from mtbranch.spec.dtypes import torch_dtype

    sc = SCENARIOS.get(scenario) if isinstance(scenario, str) else scenario
    if sc is None:
        raise UsageError(f"unknown scenario {scenario!r}", hint=f"choose one of {', '.join(SCENARIOS)}")
    say = progress or (lambda _msg: None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mtbranch-bench-")
        workdir = tmp.name
    try:
        say(f"preparing {sc.name} under {workdir}")
        trunk, dirs = prepare(sc, Path(workdir), seq_len=seq_len, seed=seed)
        batch = make_batch(batch_size, seq_len, int(trunk.config["vocab_size"]), device, seed)
        say("building setups (composed, standalone, full single-task, transformers reference)")
        composed, setups = build_setups(trunk, dirs, batch, device=device, dtype=torch_dtype(dtype),
                                        subset_task=sc.subset_task, reference_task=sc.reference_task)
        with torch.inference_mode():  # every setup, the transformers models included, runs without autograd
            result = measure(sc, setups, batch_size, seq_len, rounds, warmup, device, seed, say)
        result["tasks"] = len(composed.branches)
        result["machine"] = machine_info(device)
        result["config"] = {"batch_size": batch_size, "seq_len": seq_len, "rounds": rounds, "warmup": warmup,
                            "threads": torch.get_num_threads(), "device": device, "dtype": dtype or "float32",
                            "seed": seed}
        if "hf-reference" in setups:
            with torch.inference_mode():
                a, b = setups["one-branch"].run(), setups["hf-reference"].run()
            result["reference"] = {"task": sc.reference_task, "max_abs_diff": float((a[sc.reference_task]
                                                                                    - b).abs().max()),
                                   **result["ratios"].pop("one_branch_vs_hf")}
        if task_curve:
            say("time vs number of tasks")
            result["task_curve"] = measure_task_curve(composed, result["setups"], batch, device, max(1, min(3, rounds)))
        if load_check:
            from mtbranch.composition.artifact import save_composed

            say("load check (fresh processes: resident memory and load time)")
            artifact = Path(workdir) / sc.name / "composed"
            save_composed(composed, artifact)
            result["load"] = measure_load(artifact)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


__all__ = ["SCENARIOS", "BranchPlan", "Scenario", "measure_load", "plot", "run_bench"]
