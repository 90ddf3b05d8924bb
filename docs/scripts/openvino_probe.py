"""OpenVINO vs the engines mtbranch's auto picks from, on the composed model's single-text graph (issue 31, item 1).

    pip install openvino        # the probe that led to mtbranch.backends.ov (now the [openvino] extra)
    OMP_NUM_THREADS=1 python docs/scripts/openvino_probe.py runs/composed8 --json docs/benchmarks/openvino.json

The single-text tasks' forward (mtbranch.backends.ort.ForkGraph, exported with torch.onnx's TorchScript exporter,
not fused: OpenVINO reads standard ONNX ops, not ONNX Runtime's fused contrib ops) compiled by OpenVINO for the
CPU with 1 thread in f32 and bf16 (INFERENCE_PRECISION_HINT), next to ONNX Runtime on mtbranch's fused graph and
torch float32 / bfloat16, same token ids (STS-B dev sentences), interleaved rounds, medians (sentences/s).
Agreement: argmax labels vs torch float32.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backends import INPUTS, encode, long_texts, sentence_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import openvino as ov

    from mtbranch.backends.ort import ForkGraph, groups
    from mtbranch.composition.artifact import load
    from mtbranch.spec.precision import cpu_report, set_attention

    ref = load(args.artifact, backend="torch", dtype="float32")
    bf16 = load(args.artifact, backend="torch", dtype="bfloat16")
    ortm = load(args.artifact, backend="onnxruntime")
    single = groups(ref)["single"]
    names = [b.name for b in single]
    tok = ref.tokenizer
    pairs = sentence_pairs()
    rng = random.Random(0)
    short = rng.sample(pairs, 32)
    longs = long_texts(tok, pairs, 32, 128)
    cells = {"short, batch 1": [encode(tok, [x], 128)["single"] for x in short[:8]],
             "short, batch 32": [encode(tok, short, 128)["single"]],
             "128 tok, batch 1": [encode(tok, [x], 128)["single"] for x in longs[:8]],
             "128 tok, batch 32": [encode(tok, longs, 128)["single"]]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "single.onnx"
        set_attention(ref, "eager")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            ex = cells["short, batch 32"][0]
            torch.onnx.export(ForkGraph(ref, single).eval(), tuple(ex[k] for k in INPUTS), str(path),
                              input_names=list(INPUTS), output_names=names,
                              dynamic_axes={k: {0: "batch", 1: "sequence"} for k in INPUTS}, opset_version=17,
                              dynamo=False)
        set_attention(ref, "sdpa")
        core = ov.Core()
        compiled = {p: core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                              "INFERENCE_PRECISION_HINT": p,
                                                              "PERFORMANCE_HINT": "LATENCY"})
                    for p in ("f32", "bf16")}

    def ov_run(c: Any) -> Any:
        req = c.create_infer_request()

        def run(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            res = req.infer({k: b[k].numpy() for k in INPUTS})
            return {n: torch.from_numpy(res[c.output(n)].copy()) for n in names}
        return run

    def torch_run(m: Any) -> Any:
        def run(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            with torch.inference_mode():
                return m(b["input_ids"], b["attention_mask"], b["token_type_ids"], [m.branch(n) for n in names])
        return run

    engine = ortm.runtime.engine
    setups = {"torch float32": torch_run(ref), "torch bfloat16": torch_run(bf16),
              "onnxruntime float32 (fused)": lambda b: engine.run("single", b["input_ids"], b["attention_mask"],
                                                                  b["token_type_ids"]),
              "openvino f32": ov_run(compiled["f32"]), "openvino bf16": ov_run(compiled["bf16"])}
    out: dict[str, Any] = {}
    for cell, batches in cells.items():
        n = sum(int(b["input_ids"].shape[0]) for b in batches)
        got = {k: [fn(b) for b in batches] for k, fn in setups.items()}
        times: dict[str, list[float]] = {k: [] for k in setups}
        for _ in range(args.rounds):
            order = list(setups)
            rng.shuffle(order)
            for k in order:
                t = time.perf_counter()
                for b in batches:
                    setups[k](b)
                times[k].append(time.perf_counter() - t)
        row = {}
        for k in setups:
            same = total = 0
            for r, g, b in zip(got["torch float32"], got[k], batches, strict=True):
                for nm in names:
                    la, lc = r[nm].float().argmax(-1), g[nm].float().argmax(-1)
                    if la.dim() == 2:
                        real = b["attention_mask"].bool()
                        la, lc = la[real], lc[real]
                    same += int((la == lc).sum())
                    total += la.numel()
            row[k] = {"sentences_per_s": n / statistics.median(times[k]), "seconds": times[k],
                      "labels_equal_float32": same / total}
        out[cell] = row
        print(cell, {k: round(v["sentences_per_s"], 1) for k, v in row.items()}, flush=True)
    report = {"command": "OMP_NUM_THREADS=1 python docs/scripts/openvino_probe.py " + " ".join(sys.argv[1:]),
              "openvino": ov.__version__, "tasks": names, "machine": cpu_report(), "loadavg_end": os.getloadavg(),
              "cells": out}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
