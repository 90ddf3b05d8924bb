"""Length buckets (mtbranch.composition.buckets), measured before/after on real mixed texts, in one run.

    python docs/scripts/buckets_bench.py out/composed --threads 1 --rounds 3 --json docs/benchmarks/buckets.json

Texts: SST-2 dev sentences, CoNLL-2003 valid sentences and CLINC150 test utterances from ../shared/data, shuffled
together (seed 0): short commands beside long news sentences, as a mixed service sees them. Tasks: every
single-text task of the artifact.

* serve: the requests (one text each) in arrival order, gathered 32 at a time as `mtbranch serve`'s queue does,
  each batch run by :func:`mtbranch.serve.batching.run_jobs`; before: one pass per batch (``max_padding=None``,
  the previous behaviour: sorted, one pass of 32), after: length buckets at several ``max_padding``; and batch 1
  (each request alone) for scale;
* predict --input: ``predict_iter`` over the same texts (chunks of 1024, batches of 32), after (token-length
  buckets) vs before (the previous code, reproduced here: sorted by characters, micro-batches of 32).

Padding fraction = padded positions that are padding (rows x longest per pass, summed). Variants interleaved per
round (median seconds), so a busy machine slows them alike. Answers (labels and entity spans) of every variant
are compared with batch 1's.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def texts(n: int) -> list[str]:
    sst = [ln.split("\t")[0].strip() for ln in (DATA / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    conll, cur = [], []
    for ln in (DATA / "conll2003" / "valid.txt").read_text().splitlines():
        if not ln.strip() or ln.startswith("-DOCSTART-"):
            if cur:
                conll.append(" ".join(cur))
            cur = []
        else:
            cur.append(ln.split()[0])
    clinc = [t for t, _ in json.loads((DATA / "clinc150" / "data_full.json").read_text())["test"]]
    rng = random.Random(0)
    per = n // 3 + 1
    mixed = rng.sample(sst, per) + rng.sample(conll, per) + rng.sample(clinc, per)
    rng.shuffle(mixed)
    return mixed[:n]


def old_predict(model: Any, xs: list[str], tasks: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
    """``predict`` before length buckets: sorted by characters, micro-batches of ``batch_size`` (single tasks)."""
    branches = model.select(tasks)
    need_offsets = any(not b.sequence_level for b in branches)
    ml = model.max_length(branches)
    results: list[dict[str, Any]] = [{} for _ in xs]
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    padded = real = 0
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        batch = [xs[i] for i in idx]
        enc = model.tokenize(batch, None, ml, need_offsets)
        padded += enc["attention_mask"].numel()
        real += int(enc["attention_mask"].sum())
        outputs = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), branches)
        part = {"attention_mask": enc["attention_mask"], "encodings": enc.encodings}
        for b in branches:
            model._postprocess(b, outputs[b.name], part, batch, idx, results, False)
    old_predict.padding = 1 - real / padded  # type: ignore[attr-defined]
    return results


def new_predict_padding(model: Any, xs: list[str], tasks: list[str], chunk: int = 1024) -> float:
    from mtbranch.composition.buckets import buckets, padded_tokens

    branches = model.select(tasks)
    padded = real = 0
    for s in range(0, len(xs), chunk):
        enc = model.tokenize(xs[s:s + chunk], None, model.max_length(branches), False, padded=False)
        lengths = [len(r) for r in enc["input_ids"]]
        for idx in buckets(lengths, 32):
            padded += padded_tokens([lengths[i] for i in idx])
            real += sum(lengths[i] for i in idx)
    return 1 - real / padded


def answers(results: list[dict[str, Any]]) -> list[str]:
    """Every answer without its floats (labels, entity spans and labels), as a comparable string."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not isinstance(v, float)}
        return [strip(v) for v in x if not isinstance(v, float)] if isinstance(x, list) else x
    return [json.dumps(strip(r), sort_keys=True) for r in results]


def main() -> None:
    import torch

    from mtbranch.composition.artifact import load
    from mtbranch.serve.batching import Budget, prepare_job, run_jobs

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=384)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", default=None, help="run only the variants whose name contains this (e.g. predict)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.artifact)
    tasks = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    xs = texts(args.n)
    jobs = [prepare_job(model, [t], None, tasks, False) for t in xs]
    batches = [jobs[i:i + 32] for i in range(0, len(jobs), 32)]
    pads: dict[str, list[tuple[int, int]]] = {}

    def serve(max_padding: float | None, size: int = 32) -> Any:
        def run() -> list[Any]:
            budget = Budget(size, None, max_padding)
            seen: list[tuple[int, int]] = []
            out: list[Any] = []
            for batch in batches if size > 1 else [[j] for j in jobs]:
                out += run_jobs(model, batch, budget=budget, on_pass=lambda n, t: seen.append((n, t)))
            pads[name] = seen
            return [r for o in out for r in o]
        name = "serve batch 1" if size == 1 else f"serve batch 32, max_padding {max_padding}"
        return name, run

    variants = dict([serve(None, 1), serve(None), serve(0.1), serve(0.2), serve(0.3)])
    variants["predict --input before (sorted by characters)"] = lambda: old_predict(model, xs, tasks)
    variants["predict --input after (token-length buckets 0.2)"] = lambda: list(
        model.predict_iter(xs, tasks=tasks, batch_size=32))
    if args.only:
        variants = {k: v for k, v in variants.items() if args.only in k or k == "serve batch 1"}
    got = {k: answers(fn()) for k, fn in variants.items()}  # warm-up, and the answers compared
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    real = sum(len(s.ids) for j in jobs for s in j.sequences)
    ref = got["serve batch 1"]
    base = statistics.median(times.get("serve batch 32, max_padding None") or times["serve batch 1"])
    rows = []
    for k in variants:
        sec = statistics.median(times[k])
        if k.startswith("serve"):
            padded = sum(t for _, t in pads[k])
            padding, passes = 1 - real / padded, len(pads[k])
        elif "before" in k:
            padding, passes = old_predict.padding, None  # type: ignore[attr-defined]
        else:
            padding, passes = new_predict_padding(model, xs, tasks), None
        rows.append({"variant": k, "seconds": sec, "sentences_per_s": len(xs) / sec, "padding": padding,
                     "passes": passes, "vs_serve_batch32_one_pass": base / sec,
                     "same_answers_as_batch1": sum(a == b for a, b in zip(got[k], ref, strict=True)) / len(ref),
                     "rounds_s": times[k]})
    out = {"command": "python docs/scripts/buckets_bench.py " + " ".join(
               f"{a}" for a in [args.artifact, "--threads", args.threads, "--rounds", args.rounds, "--n", args.n,
                            *(["--only", args.only] if args.only else [])]),
           "texts": len(xs), "tokens": real, "tasks": tasks, "threads": args.threads,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "load": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
           "rows": rows}
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    for r in rows:
        print(f"{r['variant']:52s} {r['sentences_per_s']:7.1f}/s padding {100 * r['padding']:5.1f}% "
              f"x{r['vs_serve_batch32_one_pass']:.2f} same {100 * r['same_answers_as_batch1']:.1f}%")


if __name__ == "__main__":
    main()
