"""Re-measure every task's dev metric through a composed artifact (`mtbranch compose`) with the batch
prediction command, `mtbranch predict ARTIFACT --input DEV.jsonl --task NAME --raw`, and compare it with the
metric recorded in each branch's manifest.

    mtbranch compose -o runs/composed8
    python docs/scripts/prepare_data.py --out runs/data           # SNIPS intent, Banking77, CLINC150 dev files
    python docs/scripts/remeasure_composed.py runs/composed8 --data ../shared/data --prepared runs/data \
        > docs/results/platform/composed-remeasure.json

Each task's dev texts (and pair texts) are written to a JSONL file, in the order of the dev set, and predicted
by one `mtbranch predict` process per task. Classification: the predicted label -> accuracy (and F1 of the
positive class for binary tasks). Regression: the predicted value -> Pearson. Token classification (the
words joined by single spaces): (a) `entity_f1`: the raw head outputs (`--raw`) at the first sub-token of
each dev word, the words as the dataset splits them, the way the trainer scores a branch (words past
max_length are left out, as the trainer's labels leave them out; `entity_f1_all_words` counts them as
predicted O), (b) `entity_f1_from_entities`: the entities `predict` returns (character spans, grouped by
the branch's word rule, whitespace words since issue 25) turned back into word tags, and (c)
`entity_f1_from_tags`: the per-word tags `predict --words` returns. (a) is the figure compared with the
manifest; (b) and (c) are what users receive.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _jsonl(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["text"], r["label"]) for r in rows]


def _tsv(path: Path, quote_none: bool = True, header: bool = True) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE if quote_none else csv.QUOTE_MINIMAL))
    return [r for r in rows[1 if header else 0:] if r]


def _conll(path: Path) -> list[tuple[list[str], list[str]]]:
    out: list[tuple[list[str], list[str]]] = []
    toks: list[str] = []
    tags: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if toks:
                out.append((toks, tags))
            toks, tags = [], []
            continue
        cols = line.split()
        if cols[0] == "-DOCSTART-":
            continue
        toks.append(cols[0])
        tags.append(cols[-1])
    if toks:
        out.append((toks, tags))
    return out


def _seq(dir_: Path) -> list[tuple[list[str], list[str]]]:
    a = (dir_ / "seq.in").read_text(encoding="utf-8").splitlines()
    b = (dir_ / "seq.out").read_text(encoding="utf-8").splitlines()
    return [(x.split(), y.split()) for x, y in zip(a, b, strict=True) if x.split()]


def dev_sets(data: Path, prepared: Path) -> dict[str, dict[str, Any]]:
    """Per task: the dev examples exactly as the branch's training command read them."""
    sst = _tsv(data / "SST-2" / "dev.tsv", quote_none=False)
    sts = _tsv(data / "STS-B" / "sts-dev.csv", header=False)
    mrpc = _tsv(data / "MRPC" / "dev.tsv")
    sst_names = {"0": "negative", "1": "positive"}
    mrpc_names = {"0": "not_paraphrase", "1": "paraphrase"}
    return {
        "sentiment": {"kind": "class", "texts": [r[0].strip() for r in sst], "gold": [sst_names[r[1]] for r in sst],
                      "source": "SST-2/dev.tsv"},
        "similarity": {"kind": "score", "texts": [r[5].strip() for r in sts], "pairs": [r[6].strip() for r in sts],
                       "gold": [float(r[4]) for r in sts], "source": "STS-B/sts-dev.csv"},
        "entities": {"kind": "tokens", "sents": _conll(data / "conll2003" / "valid.txt"),
                     "source": "conll2003/valid.txt"},
        "paraphrase": {"kind": "class", "texts": [r[3].strip() for r in mrpc], "pairs": [r[4].strip() for r in mrpc],
                       "gold": [mrpc_names[r[0]] for r in mrpc], "source": "MRPC/dev.tsv"},
        "intent": {"kind": "class", **_split(_jsonl(prepared / "snips-intent" / "dev.jsonl")),
                   "source": "snips/valid (seq.in + label), prepared snips-intent/dev.jsonl"},
        "slots": {"kind": "tokens", "sents": _seq(data / "snips" / "valid"), "source": "snips/valid"},
        "banking": {"kind": "class", **_split(_jsonl(prepared / "banking77" / "dev.jsonl")),
                    "source": "banking77 train.csv, seeded stratified 10% (prepared banking77/dev.jsonl)"},
        "clinc": {"kind": "class", **_split(_jsonl(prepared / "clinc150" / "dev.jsonl")),
                  "source": "clinc150 data_full.json val + oos_val (prepared clinc150/dev.jsonl)"},
    }


def _split(rows: list[tuple[str, str]]) -> dict[str, list[str]]:
    return {"texts": [t for t, _ in rows], "gold": [g for _, g in rows]}


def _word_spans(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for t in tokens:
        spans.append((pos, pos + len(t)))
        pos += len(t) + 1
    return " ".join(tokens), spans


def predict_file(mt: str, artifact: Path, name: str, rows: list[dict[str, str]], work: Path,
                 pair: bool, threads: int, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`mtbranch predict ARTIFACT --input rows.jsonl --task NAME --raw`: one result per row, in order."""
    src, dst = work / f"{name}.jsonl", work / f"{name}.out.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cmd = [mt, "predict", str(artifact), "--input", str(src), "--task", name, "--raw", "--no-progress",
           "--output", str(dst), *extra] + (["--pair-col", "pair"] if pair else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(cmd, check=True, env=env)
    out = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(out) != len(rows):
        raise SystemExit(f"{name}: {len(rows)} rows in, {len(out)} out")
    return [o["results"][name] for o in out]


def token_metrics(results: list[dict[str, Any]], sents: list[tuple[list[str], list[str]]], labels: list[str],
                  tokenizer: Any, max_length: int) -> dict[str, float]:
    from seqeval.metrics import f1_score

    gold = [tags for _, tags in sents]
    pred_raw: list[list[str]] = []
    pred_ent: list[list[str]] = []
    pred_tags: list[list[str]] = []
    gold_kept: list[list[str]] = []
    pred_kept: list[list[str]] = []
    for (tokens, sent_tags), r in zip(sents, results, strict=True):
        text, word_spans = _word_spans(tokens)
        enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        rows = np.asarray(r["raw"])
        first: dict[int, int] = {}
        for i, (s, e) in enumerate(enc["offset_mapping"]):
            if e <= s:
                continue  # [CLS], [SEP]
            w = next((k for k, (a, b) in enumerate(word_spans) if a <= s < b), None)
            if w is not None and w not in first:
                first[w] = i
        pred_raw.append([labels[int(rows[first[w]].argmax())] if w in first else "O" for w in range(len(tokens))])
        kept = [w for w in range(len(tokens)) if w in first]  # words within max_length (what the trainer scores)
        gold_kept.append([sent_tags[w] for w in kept])
        pred_kept.append([pred_raw[-1][w] for w in kept])
        tags = ["O"] * len(tokens)
        for ent in r["entities"]:
            inside = [k for k, (a, b) in enumerate(word_spans) if a < ent["end"] and b > ent["start"]]
            for j, k in enumerate(inside):
                tags[k] = ("B-" if j == 0 else "I-") + ent["label"]
        pred_ent.append(tags)
        if "tags" in r:
            pred_tags.append(r["tags"])
    kw: dict[str, Any] = {"zero_division": 0}
    return {"entity_f1": float(f1_score(gold_kept, pred_kept, **kw)),
            "entity_f1_all_words": float(f1_score(gold, pred_raw, **kw)),
            "entity_f1_from_entities": float(f1_score(gold, pred_ent, **kw)),
            **({"entity_f1_from_tags": float(f1_score(gold, pred_tags, **kw))} if pred_tags else {}),
            "truncated_sentences": sum(len(g) != len(t) for g, t in zip(gold_kept, gold, strict=True))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--prepared", type=Path, default=Path("runs/data"))
    ap.add_argument("--mtbranch", default=str(Path(sys.executable).parent / "mtbranch"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--task", action="append", default=None, help="only these tasks (default: every branch)")
    a = ap.parse_args()

    from scipy.stats import pearsonr
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoTokenizer

    lock = json.loads((a.artifact / "mtbranch.lock.json").read_text())
    manifests = {p.parent.name: json.loads(p.read_text())
                 for p in sorted((a.artifact / "branches").glob("*/manifest.json"))}
    tokenizer = AutoTokenizer.from_pretrained(str(a.artifact / "trunk"))
    sets = dev_sets(a.data, a.prepared)
    out: dict[str, Any] = {"artifact": str(a.artifact), "threads": a.threads,
                           "command": "mtbranch predict ARTIFACT --input <task>.jsonl --task <task> --raw "
                                      "--no-progress --output <task>.out.jsonl [--pair-col pair]",
                           "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in manifests.items():
            if name not in sets or (a.task and name not in a.task):
                continue
            d = sets[name]
            pair = m["tokenizer"]["input_signature"] == "pair"
            t0 = time.time()
            if d["kind"] == "tokens":
                rows = [{"text": " ".join(t)} for t, _ in d["sents"]]
                # --words: the dataset's words, one tag per word back (the text is the same words joined)
                res = predict_file(a.mtbranch, a.artifact, name, rows, Path(tmp), False, a.threads, ("--words",))
                got = token_metrics(res, d["sents"], m["head"]["labels"], tokenizer, m["tokenizer"]["max_length"])
                key = "entity_f1"
            else:
                rows = [{"text": t} | ({"pair": p} if pair else {})
                        for t, p in zip(d["texts"], d.get("pairs") or d["texts"], strict=True)]
                res = predict_file(a.mtbranch, a.artifact, name, rows, Path(tmp), pair, a.threads)
                if d["kind"] == "score":
                    pred = [r["value"] if "value" in r else r["values"][0] for r in res]
                    got = {"pearson": float(pearsonr(pred, d["gold"])[0])}
                    key = "pearson"
                else:
                    pred = [r["label"] for r in res]
                    got = {"accuracy": float(accuracy_score(d["gold"], pred))}
                    if len(m["head"]["labels"]) == 2:
                        got["f1"] = float(f1_score(d["gold"], pred, pos_label=m["head"]["labels"][1]))
                    key = "accuracy"
            manifest = m.get("metrics", {}).get(f"dev_{key}")
            out["tasks"][name] = {
                "dev_source": d["source"], "examples": len(rows), "depth": m["attach_depth"],
                "layers": m["num_layers"], "version": m["version"], "metric": key, "composed": got,
                "manifest": manifest, "abs_diff": None if manifest is None else abs(got[key] - manifest),
                "seconds": round(time.time() - t0, 1),
            }
            print(f"{name}: {key} composed {got[key]:.6f} manifest {manifest}", file=sys.stderr)
    depth = max(m["attach_depth"] for m in manifests.values())
    layers = sum(m["num_layers"] for m in manifests.values())
    out["composed_layers"] = {"trunk_depth": depth, "branch_layers": layers, "total": depth + layers,
                              "separate_models": 6 * len(manifests), "trunk": lock.get("trunk", {}).get("reference")}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
