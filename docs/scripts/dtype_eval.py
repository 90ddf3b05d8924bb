"""Every compute dtype mtbranch offers on the CPU, on the real composed example model: dev metric of every task,
the share of unchanged answers, and ``predict`` speed, all in one run (interleaved rounds).

    python docs/scripts/dtype_eval.py out/composed --threads 1 --rounds 5 --compile --json docs/data/dtype_eval.json

Variants (each loaded with ``mtbranch.load``):

* ``float32``             the default: equals transformers' forward;
* ``bfloat16``            ``load(dtype="bfloat16")`` as shipped: every weight and activation bf16, eager attention
                          on the CPU (torch's CPU kernels accumulate matmuls, softmax and layer-norm statistics in
                          float32 internally and round the results to bf16);
* ``bfloat16+sdpa``       the same with torch's fused SDPA attention kernel instead (the float32 default);
* ``bfloat16+fp32-heads`` bf16 layers, the branches' poolers and heads in float32 (the last hidden state is cast
                          up before pooling): does the head need float32?
* ``int8``                ``load(quantize="int8")``: dynamic int8 quantization of the transformer layers;
* ``bfloat16+compile`` (``--compile``, speed and answers only) every transformer layer ``torch.compile``d
                          (inductor, dynamic shapes), first-call compile time reported.

float16 is not offered on the CPU (this CPU multiplies it at about 1 GFLOP/s, docs/benchmarks.md).
Dev sets and metrics as in quantize_eval.py; speed on the mixed SST-2 / CoNLL texts of ablations.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import types
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablations import interleaved_medians, set_attention, texts
from quantize_eval import dev_sets, metrics

KEY = {"sentiment": "accuracy", "similarity": "pearson", "entities": "entity_f1"}


def float32_heads(model: Any) -> Any:
    """Poolers and heads back to float32; each branch casts its last hidden state up before pooling."""
    import torch

    for b in model.branches:
        for part in ("pooling", "pooler", "head"):
            if hasattr(b, part):
                getattr(b, part).float()

        def forward(self: Any, hidden: Any, attention_mask: Any = None, mask4d: Any = None) -> Any:
            h = self.encode(hidden, attention_mask, mask4d).to(torch.float32)
            return self.head(self.head_input(h, attention_mask))

        b.forward = types.MethodType(forward, b)
    return model


VARIANTS = ("float32", "bfloat16", "bfloat16+sdpa", "bfloat16+fp32-heads", "int8")


def build(variant: str, artifact: str) -> Any:
    from mtbranch.composition.artifact import load

    if variant == "int8":
        return load(artifact, quantize="int8")
    dtype, _, extra = variant.partition("+")
    model = load(artifact, dtype=dtype, backend="torch")
    if extra in ("sdpa", "eager"):
        set_attention(model, extra)
    elif extra == "fp32-heads":
        float32_heads(model)
    return model


def answers(results: list[dict[str, Any]], tasks: list[str]) -> list[dict[str, Any]]:
    """Labels and entity spans: what a caller acts on."""
    return [{t: r[t].get("label", [(e["label"], e["start"], e["end"]) for e in r[t].get("entities", [])])
             for t in tasks} for r in results]


def cpu_info() -> dict[str, Any]:
    import torch

    flags: set[str] = set()
    name = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
        elif line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile")
    return {"cpu": name, "cpus": os.cpu_count(), "flags": {f: f in flags for f in wanted},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "python": platform.python_version(), "loadavg": os.getloadavg()}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, float32 first")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on the bf16 model")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    machine = cpu_info()
    models = {v: build(v, args.artifact) for v in args.variants.split(",")}
    devs = dev_sets()
    scores: dict[str, Any] = {}
    eval_s: dict[str, float] = {}
    for kind, m in models.items():
        t0 = time.perf_counter()
        scores[kind] = {n: metrics(m, n, devs[n]) for n in devs}
        eval_s[kind] = time.perf_counter() - t0
        print(kind, {n: round(100 * scores[kind][n][KEY[n]], 2) for n in devs}, file=sys.stderr)
    tasks = [b.name for b in models["float32"].branches if b.manifest.tokenizer.input_signature == "single"]
    xs = texts(args.n)
    ref = answers(models["float32"].predict(xs, tasks=tasks, batch_size=32), tasks)
    same = {k: statistics.fmean(a == b for a, b in zip(ref, answers(m.predict(xs, tasks=tasks, batch_size=32), tasks),
                                                        strict=True)) for k, m in models.items()}
    runs = {k: partial(m.predict, xs, tasks=tasks, batch_size=32) for k, m in models.items()}
    compile_s = None
    if args.compile:
        compiled = build("bfloat16", args.artifact)
        for layer in [*compiled.trunk.layers, *(ly for b in compiled.branches for ly in b.layers)]:
            layer.compile(dynamic=True)
        t0 = time.perf_counter()
        compiled.predict(xs, tasks=tasks, batch_size=32)  # compiles (dynamic shapes)
        compile_s = time.perf_counter() - t0
        runs["bfloat16+compile"] = partial(compiled.predict, xs, tasks=tasks, batch_size=32)
        same["bfloat16+compile"] = statistics.fmean(
            a == b for a, b in zip(ref, answers(compiled.predict(xs, tasks=tasks, batch_size=32), tasks), strict=True))
    for fn in runs.values():  # warm-up
        fn()
    med = interleaved_medians(runs, args.rounds)
    base = med["float32"]
    result = {
        "command": "python docs/scripts/dtype_eval.py " + " ".join(sys.argv[1:]),
        "machine": machine, "threads": args.threads, "rounds": args.rounds, "texts": len(xs), "tasks_timed": tasks,
        "dev": {n: {k: 100 * scores[k][n][KEY[n]] for k in models} for n in devs},
        "dev_change_points": {k: {n: 100 * (scores[k][n][KEY[n]] - scores["float32"][n][KEY[n]]) for n in devs}
                              for k in models},
        "same_answers_fraction": same,
        "predict_texts_per_s": {k: len(xs) / v for k, v in med.items()},
        "speedup_vs_float32": {k: base / v for k, v in med.items()},
        "compile_first_call_s": compile_s,
        "dev_eval_s": eval_s,
        "loadavg_end": os.getloadavg(),
        "all_dev_metrics": scores,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
