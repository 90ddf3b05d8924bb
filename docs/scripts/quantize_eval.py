"""The int8 CPU fast path (``load(..., quantize="int8")``) on the real composed example model: dev metric of
every task and ``predict`` speed, float32 vs int8, in one run.

    python docs/scripts/quantize_eval.py out/composed --threads 1 --rounds 5 > runs/quantize.json

Dev sets from ../shared/data: SST-2 dev (sentiment), STS-B dev (similarity), CoNLL-2003 valid (entities),
scored with the SDK's metrics (mtbranch.sdk.metrics) on the composed model's own forward. Speed: ``predict``
on the same mixed SST-2 / CoNLL texts as docs/scripts/ablations.py, float32 and int8 interleaved per round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablations import DATA, interleaved_medians, texts


def dev_sets() -> dict[str, Any]:
    from mtbranch.sdk.data import ConllSpec, TableSpec, load_table_data, load_token_data

    sts = TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True)
    return {"sentiment": load_table_data(DATA / "SST-2" / "dev.tsv", TableSpec(text="sentence", label="label")),
            "similarity": load_table_data(DATA / "STS-B" / "sts-dev.csv", sts),
            "entities": load_token_data(DATA / "conll2003" / "valid.txt", ConllSpec())}


def outputs(model: Any, name: str, ids: list[list[int]], types: list[list[int]], batch_size: int = 64) -> list:
    """The branch's raw outputs per example (unpadded for token tasks), length-sorted batches."""
    import torch

    from mtbranch.sdk.features import pad_ids

    branch = model.branch(name)
    pad = int(model.tokenizer.pad_token_id or 0)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[Any] = [None] * len(ids)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            x = pad_ids([ids[i] for i in idx], pad)
            mask = pad_ids([[1] * len(ids[i]) for i in idx], 0)
            y = model(x, mask, pad_ids([types[i] for i in idx], 0), [branch])[name]
            for j, i in enumerate(idx):
                out[i] = (y[j, : len(ids[i])] if y.ndim == 3 else y[j]).float().numpy()
    return out


def metrics(model: Any, name: str, dev: Any) -> dict[str, float]:
    from mtbranch.sdk.features import encode_texts, encode_tokens
    from mtbranch.sdk.metrics import IGNORE_INDEX, compute_metrics

    m = model.branch(name).manifest
    names = getattr(m.head, "labels", None)
    if m.head.type == "token_classification":
        enc = encode_tokens(model.tokenizer, dev.examples, m.tokenizer.max_length, {n: i for i, n in enumerate(names)})
        outs = outputs(model, name, enc.input_ids, enc.token_type_ids)
        width = max(len(r) for r in enc.input_ids)
        arr = np.full((len(outs), width, len(names)), float(IGNORE_INDEX), dtype=np.float32)
        lab = np.full((len(outs), width), IGNORE_INDEX, dtype=np.int64)
        for i, o in enumerate(outs):
            arr[i, : len(o)], lab[i, : len(o)] = o, enc.labels[i]
        return compute_metrics("token_classification", arr, lab, names)
    examples = dev.examples
    if names is not None:  # SST-2 labels are 0/1, the branch's are named
        examples = [replace(e, label=names[int(e.label)]) for e in examples]
    enc = encode_texts(model.tokenizer, examples, m.tokenizer.max_length,
                       None if names is None else {n: i for i, n in enumerate(names)})
    outs = np.stack(outputs(model, name, enc.input_ids, enc.token_type_ids))
    task = "regression" if names is None else "classification"
    return compute_metrics(task, outs, np.asarray(enc.labels), names)


def main() -> None:
    import torch

    from mtbranch.composition.artifact import load

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {"float32": load(args.artifact, backend="torch", dtype="float32"),
              "int8": load(args.artifact, quantize="int8")}
    devs = dev_sets()
    key = {"sentiment": "accuracy", "similarity": "pearson", "entities": "entity_f1"}
    scores = {kind: {n: metrics(m, n, devs[n]) for n in devs} for kind, m in models.items()}
    tasks = [b.name for b in models["float32"].branches if b.manifest.tokenizer.input_signature == "single"]
    xs = texts(args.n)
    answers = {k: m.predict(xs, tasks=tasks, batch_size=32) for k, m in models.items()}
    same = statistics.fmean(a["sentiment"]["label"] == b["sentiment"]["label"]
                            for a, b in zip(answers["float32"], answers["int8"], strict=True))
    med = interleaved_medians({k: partial(m.predict, xs, tasks=tasks, batch_size=32) for k, m in models.items()},
                              args.rounds)
    print(json.dumps({
        "threads": args.threads, "rounds": args.rounds, "texts": len(xs), "tasks_timed": tasks,
        "dev": {n: {k: scores[k][n][key[n]] for k in models} for n in devs},
        "dev_change_points": {n: 100 * (scores["int8"][n][key[n]] - scores["float32"][n][key[n]]) for n in devs},
        "sentiment_same_label_fraction": same,
        "predict_texts_per_s": {k: len(xs) / v for k, v in med.items()},
        "speedup_int8": med["float32"] / med["int8"],
        "all_dev_metrics": scores,
    }, indent=1))


if __name__ == "__main__":
    main()
