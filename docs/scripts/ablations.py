"""Speed choices in ``predict``, each measured on and off in one run on the real composed example model.

    python docs/scripts/ablations.py out/composed --threads 2 --rounds 3 > runs/ablations.json

* length bucketing: ``predict`` sorts inputs by length before cutting micro-batches (padding to each batch's
  longest input) vs the same micro-batches in arrival order;
* attention: transformers' SDPA kernel (what mtbranch configures) vs the eager implementation.

Texts: SST-2 dev sentences and CoNLL-2003 valid sentences from ../shared/data (varied lengths), single-text
tasks only (entities, sentiment). Rounds are interleaved so a busy machine slows both sides alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def texts(n: int) -> list[str]:
    sst = [ln.split("\t")[0] for ln in (DATA / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    conll, cur = [], []
    for ln in (DATA / "conll2003" / "valid.txt").read_text().splitlines():
        if not ln.strip() or ln.startswith("-DOCSTART-"):
            if cur:
                conll.append(" ".join(cur))
            cur = []
        else:
            cur.append(ln.split()[0])
    mixed = [t for pair in zip(sst, conll, strict=False) for t in pair]
    return mixed[:n]


def interleaved_medians(runs: dict, rounds: int) -> dict[str, float]:
    """Median seconds per run, every run once per round in turn, so a busy machine slows them alike."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def set_attention(model, impl: str) -> None:
    configs = {id(model.trunk.config): model.trunk.config}
    configs.update({id(b.config): b.config for b in model.branches})
    for cfg in configs.values():
        cfg._attn_implementation = impl


def main() -> None:
    import torch

    from mtbranch.composition.artifact import load

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.artifact, backend="torch", dtype="float32")
    tasks = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    xs = texts(args.n)

    def bucketed() -> list:
        return model.predict(xs, tasks=tasks, batch_size=32)

    def arrival_order() -> list:
        out = []
        for i in range(0, len(xs), 32):  # one predict call per micro-batch: no sorting across batches
            out += model.predict(xs[i:i + 32], tasks=tasks, batch_size=32)
        return out

    def eager() -> list:
        set_attention(model, "eager")
        try:
            return bucketed()
        finally:
            set_attention(model, "sdpa")

    runs = {"bucketed+sdpa (default)": bucketed, "arrival order": arrival_order, "eager attention": eager}
    def answers(results: list) -> list:  # labels and entity spans: what a caller acts on
        return [{t: r[t].get("label", [(e["label"], e["start"], e["end"]) for e in r[t].get("entities", [])])
                 for t in tasks} for r in results]

    reference = answers(bucketed())
    same = {name: statistics.fmean(a == b for a, b in zip(reference, answers(fn()), strict=True))
            for name, fn in runs.items()}
    med = interleaved_medians(runs, args.rounds)
    base = med["bucketed+sdpa (default)"]
    result = {"texts": len(xs), "tasks": tasks, "threads": args.threads, "rounds": args.rounds,
              "median_s": med, "texts_per_s": {k: len(xs) / v for k, v in med.items()},
              "slowdown_vs_default": {k: v / base for k, v in med.items()},
              "same_answers_fraction": same}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
