"""Ship an example branch at another max_length: the same weights, its dev metric re-measured.

    python docs/scripts/relength.py BRANCH_DIR TASK --max-length 128 [--prepared runs/data] > record.json

A branch trained at max_length 64 runs unchanged at 128 (the weights do not depend on it); only the texts that
were cut at 64 tokens now reach the branch whole, so the dev metric can change. This script recomputes the
dev metric the way the trainer computes it (trunk features at the attach depth, then the branch, on the task's
dev set as its training command read it), writes ``tokenizer.max_length``, ``metrics`` and
``training.dev_metric`` in place, keeps the old value under ``training.max_length_change`` and bumps the
patch version. It prints the record as JSON. The composed model then tokenizes once at one length for every
branch (no K004 warning), and docs/scripts/remeasure_composed.py checks the new metric through ``predict``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"

# task -> (SDK task, dev file relative to ../shared/data or --prepared, load_task_data options)
DEV = {
    "sentiment": ("classification", "SST-2/dev.tsv", {"text_col": "sentence", "label_col": "label"}),
    "similarity": ("regression", "STS-B/sts-dev.csv",
                   {"text_col": "5", "pair_col": "6", "label_col": "4", "header": False, "quote_none": True}),
    "entities": ("token_classification", "conll2003/valid.txt", {}),
    "paraphrase": ("classification", "MRPC/dev.tsv",
                   {"text_col": "3", "pair_col": "4", "label_col": "0", "quote_none": True}),
    "intent": ("classification", "prepared:snips-intent/dev.jsonl", {"text_col": "text", "label_col": "label"}),
    "slots": ("token_classification", "snips/valid", {}),
    "banking": ("classification", "prepared:banking77/dev.jsonl", {"text_col": "text", "label_col": "label"}),
    "clinc": ("classification", "prepared:clinc150/dev.jsonl", {"text_col": "text", "label_col": "label"}),
}
NAMED_LABELS = {"sentiment": ["negative", "positive"], "paraphrase": ["not_paraphrase", "paraphrase"]}


def dev_set(task_name: str, prepared: Path) -> tuple[str, Any]:
    """(SDK task, dev set) of an example task, read as its training command read it."""
    from dataclasses import replace

    from mtbranch.sdk.data import load_task_data

    task, rel, opts = DEV[task_name]
    path = prepared / rel.removeprefix("prepared:") if rel.startswith("prepared:") else DATA / rel
    dev = load_task_data(task, path, **opts)
    names = NAMED_LABELS.get(task_name)
    if names is not None:  # trained with --label-names: the file's 0/1 are these names
        dev.examples = [replace(e, label=names[int(str(e.label))]) for e in dev.examples]
    return task, dev


def dev_metrics(branch: Any, trunk: Any, task: str, dev: Any, max_length: int) -> tuple[str, dict[str, float]]:
    """(main metric, every dev metric) of the branch at ``max_length``, as the trainer computes them."""
    from mtbranch.sdk.distill import _metrics_of, branch_outputs
    from mtbranch.sdk.metrics import compute_metrics
    from mtbranch.sdk.train import TrainConfig, prepare

    m = branch.manifest
    cfg = TrainConfig(max_length=max_length, progress=False)
    prep = prepare(trunk, task, dev, dev, cfg, [m.attach_depth], labels=getattr(m.head, "labels", None))
    metric = str(m.training.get("metric") or prep.metric)
    values = _metrics_of(prep, branch_outputs(branch, prep, "dev"), compute_metrics)
    return metric, {k: float(v) for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("branch", type=Path)
    ap.add_argument("task", choices=sorted(DEV))
    ap.add_argument("--max-length", type=int, required=True)
    ap.add_argument("--prepared", type=Path, default=ROOT / "runs" / "data",
                    help="docs/scripts/prepare_data.py output (SNIPS intent, Banking77, CLINC150 dev files)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    manifest_path = args.branch / "manifest.json"
    data = json.loads(manifest_path.read_text())
    old_len = data["tokenizer"]["max_length"]
    from mtbranch.branch.model import load_branch
    from mtbranch.trunk.source import resolve_trunk

    branch = load_branch(args.branch)  # loaded once: only the tokenization length differs between the two passes
    trunk = resolve_trunk(branch.manifest.trunk.reference)
    task, dev = dev_set(args.task, args.prepared)
    n = len(dev.examples)
    metric, old = dev_metrics(branch, trunk, task, dev, old_len)
    before = old[metric]
    recorded = data["training"]["dev_metric"]
    if abs(before - recorded) > 1e-6:
        sys.exit(f"{manifest_path}: recomputed dev {metric} at max_length {old_len} is {before}, the manifest "
                 f"says {recorded}: not the branch's own data or recipe; nothing changed")
    metric, new = dev_metrics(branch, trunk, task, dev, args.max_length)
    after = new[metric]
    major, minor, patch = (int(x) for x in data["version"].split("."))
    record = {"from": old_len, "to": args.max_length, "metric": metric, "dev_examples": n,
              "dev_metric_before": before, "dev_metric_after": after,
              "command": f"python docs/scripts/relength.py BRANCH {args.task} --max-length {args.max_length}",
              "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "weights_sha256": hashlib.sha256((args.branch / data["weights"]["path"]).read_bytes()).hexdigest()}
    if old_len != args.max_length:
        data["tokenizer"]["max_length"] = args.max_length
        data["version"] = f"{major}.{minor}.{patch + 1}"
        data["metrics"] = {f"dev_{k}": round(v, 6) for k, v in new.items()}  # as the trainer writes them
        data["training"]["dev_metric"] = after
        data["training"]["max_length_change"] = record
        tmp = manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(manifest_path)
    print(json.dumps({"task": args.task, "version": data["version"], **record}, indent=1))


if __name__ == "__main__":
    main()
