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

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence
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
              progress: Callable[[str], None] | None = None, compare: str | Sequence[str] | None = None,
              dtypes_only: bool = False, family: str = "bert") -> dict[str, Any]:
    """Run one scenario; returns the JSON-able result (see docs/benchmarks.md).

    ``compare`` (e.g. ``"float32,bfloat16,int8"``): also time the composed model in each of these dtypes, with
    achieved GFLOP/s and the fraction of this machine's matmul peak (mtbranch.bench.precision); ``dtypes_only``
    skips the other setups. ``family``: the trunk family of a synthetic scenario's trunk (same dimensions;
    the transformers reference setup is BERT's, so it runs for ``bert`` only).
    """
    import torch

    from mtbranch.bench.precision import compare_dtypes, parse_dtypes
    from mtbranch.spec.dtypes import torch_dtype
    from mtbranch.spec.precision import cpu_report, resolve_dtype, why

    sc = SCENARIOS.get(scenario) if isinstance(scenario, str) else scenario
    if sc is None:
        raise UsageError(f"unknown scenario {scenario!r}", hint=f"choose one of {', '.join(SCENARIOS)}")
    if family != sc.family:
        if not sc.synthetic:
            raise UsageError("--family applies to synthetic scenarios", hint="the 'real' scenario uses its trunk")
        sc = dataclasses.replace(sc, family=family, reference_task=sc.reference_task if family == "bert" else None)
    say = progress or (lambda _msg: None)
    resolved = resolve_dtype(dtype, device)  # float16 on the CPU: a user error before anything is built
    if compare is not None:
        parse_dtypes(compare, device)
    elif dtypes_only:
        raise UsageError("--dtypes-only needs --compare-dtypes", hint="e.g. --compare-dtypes float32,bfloat16,int8")
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
        config = {"batch_size": batch_size, "seq_len": seq_len, "rounds": rounds, "warmup": warmup,
                  "threads": torch.get_num_threads(), "device": device, "dtype": resolved,
                  "dtype_why": why(dtype, resolved, device), "seed": seed, "family": trunk.structure.model_type}
        machine = {**machine_info(device), **cpu_report()}
        if dtypes_only:
            return {"scenario": sc.name, "description": sc.description, "tasks": len(dirs), "machine": machine,
                    "config": config, "precision": compare_dtypes(trunk, dirs, batch, compare or (), device=device,
                                                                  rounds=rounds, warmup=warmup, seed=seed, say=say)}
        say("building setups (composed, standalone, full single-task, transformers reference)")
        composed, setups = build_setups(trunk, dirs, batch, device=device, dtype=torch_dtype(resolved),
                                        subset_task=sc.subset_task, reference_task=sc.reference_task)
        with torch.inference_mode():  # every setup, the transformers models included, runs without autograd
            result = measure(sc, setups, batch_size, seq_len, rounds, warmup, device, seed, say)
        result["tasks"] = len(composed.branches)
        result["machine"] = machine
        result["config"] = config
        if compare is not None:
            result["precision"] = compare_dtypes(trunk, dirs, batch, compare, device=device, rounds=rounds,
                                                 warmup=warmup, seed=seed, say=say)
        if "hf-reference" in setups:
            with torch.inference_mode():
                one, ref = setups["one-branch"].run, setups["hf-reference"].run
                assert one is not None and ref is not None  # both setups are timed: each has its call
                a, b = one(), ref()
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
