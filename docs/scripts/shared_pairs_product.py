"""Shared pair branches in the product (manifest ``pair_mode: "shared"``, ``mtbranch train --pair-mode shared``)
against joint ones: dev metrics through ``predict`` of the composed model, and all-eight ``predict`` speed.

    python docs/scripts/shared_pairs_product.py /tmp/pairs-bench --threads 1 --rounds 3 --n 128 \\
        --json docs/benchmarks/shared-pairs-product.json

``ROOT`` holds ``example/`` (the eight-branch example artifact: its trunk and six single-text branches are used)
and the four branches ``mtbranch train`` wrote (``stsb-joint``, ``stsb-shared``, ``mrpc-joint``,
``mrpc-shared``; the commands are in ``ROOT/train.sh``, recorded in the JSON) with their ``--json`` output
(``ROOT/proj/``: the same four trained with the projection on, their ``--json`` outputs recorded too). Two
models are composed: the six single-text example branches plus the joint pair branches, or plus the shared ones.
Dev: full STS-B dev (Pearson of ``similarity``) and MRPC dev (accuracy of ``paraphrase``), predicted through
``predict`` (the tasks alone, their pairs given). Speed: ``predict`` of every task on the mixed texts of
docs/scripts/pair_pass.py (STS-B dev sentences as pairs), and of the six single-text tasks alone, interleaved
per round (median).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from buckets_bench import texts as mixed_texts
from int8_branches import DATA

SINGLE = ["banking", "clinc", "entities", "intent", "sentiment", "slots"]


def dev_sets() -> dict[str, Any]:
    from mtbranch.sdk.data import TableSpec, load_table_data

    sts = load_table_data(DATA / "STS-B" / "sts-dev.csv",
                          TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True))
    mrpc = load_table_data(DATA / "MRPC" / "dev.tsv",
                           TableSpec(text="#1 String", pair="#2 String", label="Quality", quote_none=True))
    return {"similarity": sts.examples, "paraphrase": mrpc.examples}


def dev_metric(model: Any, task: str, examples: list[Any]) -> float:
    got = model.predict([e.text for e in examples], tasks=[task], text_pairs=[e.pair for e in examples], raw=True)
    if task == "similarity":
        pred = np.array([g[task]["raw"][0] for g in got])
        gold = np.array([float(e.label) for e in examples])
        return float(np.corrcoef(pred, gold)[0, 1] * 100)
    return float(np.mean([g[task]["label"] == str(e.label) for g, e in zip(got, examples, strict=True)]) * 100)


def main() -> None:
    import torch

    from mtbranch.composition.artifact import compose
    from mtbranch.trunk.source import load_trunk_source

    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = args.root
    trunk = load_trunk_source(root / "example" / "trunk")
    singles = [(root / "example" / "branches" / n, "directory") for n in SINGLE]
    models = {mode: compose(trunk, [*singles, (root / f"stsb-{mode}", "directory"),
                                    (root / f"mrpc-{mode}", "directory")]) for mode in ("joint", "shared")}
    trained = {f"{t}-{mode}": json.loads((root / f"{t}-{mode}.json").read_text())
               for t in ("stsb", "mrpc") for mode in ("joint", "shared")}
    proj = root / "proj"  # an earlier run with the projection (dense+tanh) on: its train outputs, if kept
    with_projection = {p.stem: json.loads(p.read_text()) for p in sorted(proj.glob("*-*.json"))} if proj.is_dir() \
        else {}
    dev: dict[str, dict[str, float]] = {}
    for task, examples in dev_sets().items():
        for mode, model in models.items():
            dev.setdefault(task, {})[mode] = dev_metric(model, task, examples)
    xs = mixed_texts(args.n)
    pairs = [dev_sets()["similarity"][i % 1500].pair for i in range(len(xs))]
    runs = {"all eight, joint pair branches": lambda: models["joint"].predict(xs, text_pairs=pairs),
            "all eight, shared pair branches": lambda: models["shared"].predict(xs, text_pairs=pairs),
            "six single-text tasks only": lambda: models["joint"].predict(xs, tasks=SINGLE)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    joint, shared, single = (med[k] for k in runs)
    out = {"command": "python docs/scripts/shared_pairs_product.py " + " ".join(sys.argv[1:]),
           "train_commands": (root / "train.sh").read_text(), "trained": trained,
           "trained_with_projection": with_projection,
           "threads": args.threads, "texts": len(xs),
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "load": Path("/proc/loadavg").read_text().split()[:3],
           "dev_through_predict": dev, "seconds": med, "rounds_s": times,
           "shared_vs_joint_all_eight_speed": joint / shared,
           "pair_share_of_all_joint": (joint - single) / joint,
           "pair_share_of_all_shared": (shared - single) / shared}
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
