"""Per-branch int8 (``mtbranch quantize``, mtbranch.sdk.int8_gate) on the eight example branches, in one run:
each branch's dev metric in float32 and with its own layers int8 (trunk float32), which the 0.5-point gate keeps
int8, and the speed of the mixed artifact vs the all-float32 one (and vs whole-model ``--quantize int8``).

    python docs/scripts/prepare_data.py --out runs/data      # SNIPS intent, Banking77, CLINC150 as JSONL
    python docs/scripts/int8_branches.py out/composed --data runs/data --limit 400 --threads 1 --rounds 3 \\
        --json docs/benchmarks/int8-branches.json

Dev sets (the first ``--limit`` examples of each): SST-2 dev, STS-B dev, CoNLL-2003 valid, MRPC dev, SNIPS valid
(intent: ``--data``'s snips-intent/dev.jsonl; slots: seq.in/seq.out), Banking77's held-out 10% of train and
CLINC150 val + oos_val (``--data``). The gate writes the lock of a copy of the artifact (the input is unchanged).
Speed: ``predict`` of every task on mixed SST-2 / CoNLL / CLINC texts with STS-B pairs, the artifacts interleaved
per round (median).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from buckets_bench import texts as mixed_texts

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def dev_sets(prepared: Path) -> dict[str, Any]:
    from mtbranch.sdk.data import ConllSpec, TableSpec, load_table_data, load_token_data
    from mtbranch.sdk.int8_gate import relabel

    sts = TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True)
    mrpc = TableSpec(text="#1 String", pair="#2 String", label="Quality", quote_none=True)
    jsonl = TableSpec(text="text", label="label")
    return {
        "sentiment": relabel(load_table_data(DATA / "SST-2" / "dev.tsv", TableSpec(text="sentence", label="label")),
                             ["negative", "positive"]),
        "similarity": load_table_data(DATA / "STS-B" / "sts-dev.csv", sts),
        "entities": load_token_data(DATA / "conll2003" / "valid.txt", ConllSpec()),
        "paraphrase": relabel(load_table_data(DATA / "MRPC" / "dev.tsv", mrpc), ["not_paraphrase", "paraphrase"]),
        "slots": load_token_data(DATA / "snips" / "valid"),
        "intent": load_table_data(prepared / "snips-intent" / "dev.jsonl", jsonl),
        "banking": load_table_data(prepared / "banking77" / "dev.jsonl", jsonl),
        "clinc": load_table_data(prepared / "clinc150" / "dev.jsonl", jsonl),
    }


def main() -> None:
    import torch

    from mtbranch.composition.artifact import load
    from mtbranch.sdk.data import Dataset
    from mtbranch.sdk.int8_gate import MAX_DROP, gate, record

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="prepare_data.py's --out")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=128, help="texts timed per round")
    ap.add_argument("--max-drop", type=float, default=MAX_DROP)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = {k: Dataset(v.examples[: args.limit], v.sources) for k, v in dev_sets(args.data).items()}
    t0 = time.perf_counter()
    decisions = gate(load(args.artifact), dev, args.max_drop)
    gate_s = time.perf_counter() - t0
    mixed = Path(tempfile.mkdtemp(prefix="int8-mixed-")) / "composed"
    shutil.copytree(args.artifact, mixed)
    record(mixed, decisions)
    models = {"float32": load(args.artifact), "mixed (gated int8 branches)": load(mixed),
              "whole model int8 (--quantize int8)": load(args.artifact, quantize="int8")}
    xs = mixed_texts(args.n)
    sts = [e.pair for e in dev["similarity"].examples]
    pairs = [sts[i % len(sts)] for i in range(len(xs))]
    times: dict[str, list[float]] = {k: [] for k in models}
    answers = {k: m.predict(xs, text_pairs=pairs) for k, m in models.items()}  # warm-up; labels compared
    for _ in range(args.rounds):
        for k, m in models.items():
            t = time.perf_counter()
            m.predict(xs, text_pairs=pairs)
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["float32"])

    def answer(r: dict[str, Any]) -> Any:
        """A task's answer without its scores: the label, or the entity spans and labels."""
        if "entities" in r:
            return [(e["label"], e["start"], e["end"]) for e in r["entities"]]
        return r.get("label")

    def same(k: str, task: str) -> float | None:
        a, b = answers[k], answers["float32"]
        if answer(a[0][task]) is None:  # regression: no label to compare
            return None
        return sum(answer(x[task]) == answer(y[task]) for x, y in zip(a, b, strict=True)) / len(a)

    tasks = list(answers["float32"][0])
    speed = [{"model": k, "seconds": statistics.median(v), "texts_per_s": len(xs) / statistics.median(v),
              "vs_float32": base / statistics.median(v), "rounds_s": v,
              "same_answers_as_float32": {t: same(k, t) for t in tasks}} for k, v in times.items()]
    out = {"command": "python docs/scripts/int8_branches.py " + " ".join(sys.argv[1:]),
           "threads": args.threads, "limit": args.limit, "max_drop": args.max_drop, "gate_seconds": gate_s,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "load": Path("/proc/loadavg").read_text().split()[:3],
           "decisions": [d.as_dict() for d in decisions], "speed": speed}
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    for d in decisions:
        print(f"{d.name:11s} {d.metric:10s} float32 {d.float32:6.2f} int8 "
              f"{'-' if d.int8 is None else f'{d.int8:6.2f}'} -> {d.precision} ({d.reason})")
    for s in speed:
        print(f"{s['model']:36s} {s['texts_per_s']:6.1f} texts/s x{s['vs_float32']:.2f}")


if __name__ == "__main__":
    main()
