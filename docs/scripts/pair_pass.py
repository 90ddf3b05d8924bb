"""What the pair tasks' second trunk pass costs in an all-task request, on the real composed example model.

    python docs/scripts/pair_pass.py out/composed --threads 1 --rounds 3 --json docs/benchmarks/pair-pass.json

The same texts (mixed SST-2 / CoNLL / CLINC, as docs/scripts/buckets_bench.py) with STS-B dev sentences as their
pairs, ``predict`` of: every task; the single-text tasks only; the pair tasks only (paraphrase, similarity: the
text + pair pass). Interleaved per round (median). The pair tasks' share of the all-task time is
(all - single only) / all: what sharing the single-text pass (a pair head over both texts' pooled single-text
outputs) could at most save, before the cost of running the second text through the single-text pass.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from buckets_bench import texts as mixed_texts
from int8_branches import DATA


def main() -> None:
    import torch

    from mtbranch.composition.artifact import load
    from mtbranch.sdk.data import TableSpec, load_table_data

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.artifact)
    xs = mixed_texts(args.n)
    sts = load_table_data(DATA / "STS-B" / "sts-dev.csv",
                          TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True))
    pairs = [sts.examples[i % len(sts.examples)].pair for i in range(len(xs))]
    single = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    pair = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "pair"]
    runs = {"all tasks": lambda: model.predict(xs, text_pairs=pairs),
            "single-text tasks only": lambda: model.predict(xs, tasks=single),
            "pair tasks only": lambda: model.predict(xs, tasks=pair, text_pairs=pairs)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"command": "python docs/scripts/pair_pass.py " + " ".join(sys.argv[1:]), "texts": len(xs),
           "single_tasks": single, "pair_tasks": pair, "threads": args.threads,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "load": Path("/proc/loadavg").read_text().split()[:3],
           "seconds": med, "rounds_s": times,
           "pair_share_of_all": (med["all tasks"] - med["single-text tasks only"]) / med["all tasks"],
           "pair_only_over_all": med["pair tasks only"] / med["all tasks"]}
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
