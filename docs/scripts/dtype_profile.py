"""Where the time of one composed forward goes, per dtype: torch.profiler's self CPU time by operator.

    python docs/scripts/dtype_profile.py out/composed --threads 1 --json docs/benchmarks/dtype-profile.json

The real example model, every single-text task (entities, sentiment) on one 32 x 64-token batch, 3 profiled
calls after 2 warm-up calls per dtype. Shares are of the profiled self CPU time; ``matmul`` sums the GEMM
operators (addmm, mm, bmm, matmul, linear), ``attention`` the fused attention kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

GROUPS = {"matmul": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"),
          "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math",
                        "aten::_softmax"),
          "gelu": ("aten::gelu",), "layer_norm": ("aten::native_layer_norm",),
          "copies": ("aten::copy_", "aten::clone", "aten::contiguous", "aten::to", "aten::_to_copy"),
          "elementwise": ("aten::add", "aten::mul", "aten::div", "aten::tanh", "aten::add_")}


def profile(model: Any, ids: Any, mask: Any, types: Any, branches: list[Any]) -> dict[str, Any]:
    import torch

    with torch.inference_mode():
        for _ in range(2):
            model(ids, mask, types, branches)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model(ids, mask, types, branches)
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(ops.values())
    groups: dict[str, float] = defaultdict(float)
    for name, t in ops.items():
        group = next((g for g, names in GROUPS.items() if name in names), "other")
        groups[group] += t / total
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:10]
    return {"self_cpu_ms_per_call": total / 3 / 1000, "share": dict(groups),
            "top_ops": [{"op": k, "share": v / total} for k, v in top]}


def main() -> None:
    import torch

    from mtbranch.composition.artifact import load

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (32, 64), generator=g)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    result: dict[str, Any] = {"command": "python docs/scripts/dtype_profile.py " + " ".join(sys.argv[1:]),
                              "threads": args.threads, "batch": [32, 64], "loadavg": os.getloadavg()}
    for dtype in args.dtypes.split(","):
        model = load(args.artifact, dtype=dtype, verify=False, backend="torch")
        branches = [b for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
        result[dtype] = {"attention": model.attention, **profile(model, ids, mask, types, branches)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
