"""ONNX export of a composed model: per-branch max abs diff vs PyTorch, and ONNX Runtime vs PyTorch eager speed.

    python docs/scripts/onnx_bench.py out/composed --threads 1          # the figures in docs/serving.md

Inputs are STS-B dev sentence pairs (``../shared/data``): the first sentence feeds the single-text tasks, the
pair feeds the pair tasks. Throughput: the same tensor-level forward (every task's output from one encoding) in
PyTorch eager (``torch.inference_mode``) and in ONNX Runtime (CPU provider), same thread count, after warm-up.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "STS-B" / "sts-dev.csv"


def sentences(n: int) -> tuple[list[str], list[str]]:
    with DATA.open(encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    return [r[5] for r in rows[:n]], [r[6] for r in rows[:n]]


def timed(fn: Any, batches: list[Any], min_s: float) -> float:
    """Sentences per second over repeated passes of ``batches`` (at least ``min_s`` seconds)."""
    for b in batches[:2]:
        fn(b)
    done, t0 = 0, time.perf_counter()
    while True:
        for b in batches:
            fn(b)
            done += len(b["input_ids"])
        if time.perf_counter() - t0 >= min_s:
            return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=256, help="sentences (pairs) compared and timed")
    ap.add_argument("--min-seconds", type=float, default=5.0, help="time per measurement")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mtbranch.composition.artifact import load
    from mtbranch.export.onnx import check_onnx, encode, export_onnx, session

    model = load(args.artifact, backend="torch", dtype="float32")
    texts, pairs = sentences(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "onnx"
        t0 = time.perf_counter()
        export_onnx(model, out)
        export_s = time.perf_counter() - t0
        size_mb = (out / "model.onnx").stat().st_size / 1e6
        diffs: dict[str, float] = {}
        for i in range(0, len(texts), 32):
            for name, d in check_onnx(model, out, texts[i:i + 32], pairs[i:i + 32]).items():
                diffs[name] = max(diffs.get(name, 0.0), d)
        sess = session(out, threads=args.threads)
        names = [o.name for o in sess.get_outputs()]
        ml = model.max_length(model.branches)
        speed: dict[str, dict[str, float]] = {}
        for bs in (1, 32):
            batches = [encode(model, texts[i:i + bs], None, ml) for i in range(0, min(len(texts), 8 * bs), bs)]
            np_batches = [{k: v.numpy() for k, v in b.items()} for b in batches]
            eager = timed(lambda b: model(b["input_ids"], b["attention_mask"], b["token_type_ids"]), batches,
                          args.min_seconds)
            ort = timed(lambda b: sess.run(names, b), np_batches, args.min_seconds)
            speed[f"batch {bs}"] = {"pytorch_eager": eager, "onnxruntime": ort, "speedup": ort / eager}
    report = {"artifact": args.artifact, "tasks": model.task_names, "threads": args.threads, "sentences": len(texts),
              "export_seconds": round(export_s, 1), "onnx_mb": round(size_mb, 1), "max_abs_diff": diffs,
              "sentences_per_second": speed, "torch": torch.__version__, "onnxruntime": _ort_version(),
              "cpu": platform.processor() or platform.machine()}
    print(json.dumps(report, indent=2))
    print("\n| branch | max abs diff (ORT vs PyTorch) |\n| --- | --- |")
    for name, d in diffs.items():
        print(f"| {name} | {d:.2e} |")
    print("\n| batch | PyTorch eager (sent/s) | ONNX Runtime (sent/s) | ORT / eager |\n| --- | --- | --- | --- |")
    for k, v in speed.items():
        print(f"| {k.split()[1]} | {v['pytorch_eager']:.1f} | {v['onnxruntime']:.1f} | {v['speedup']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


if __name__ == "__main__":
    main()
