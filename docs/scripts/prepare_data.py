"""Convert the SNIPS intent labels, Banking77 and CLINC150 files into JSONL tables the SDK reads.

    python docs/scripts/prepare_data.py [--data ../shared/data] [--out runs/data]

Writes, under --out (one ``{"text": ..., "label": ...}`` object per line):

- ``snips-intent/{train,dev}.jsonl``: SNIPS ``seq.in`` (tokens joined by one space) + ``label``
  (train = ``train/``, dev = ``valid/``).
- ``banking77/{train,dev,test}.jsonl``: Banking77 has no dev split. A stratified 10% of ``train.csv``
  (scikit-learn ``train_test_split(test_size=0.1, stratify=label, random_state=42)``) is the dev set, the
  other 90% the training set; ``test.csv`` is copied unchanged. Read with the csv module (quoted fields).
- ``clinc150/{train,dev,test}.jsonl``: ``data_full.json``; train = ``train`` + ``oos_train``, dev = ``val``
  + ``oos_val``, test = ``test`` + ``oos_test``: 151 classes, the out-of-scope class is ``oos``.

MRPC and the SNIPS slots are read in place (``--quote-none`` TSV; a ``seq.in``/``seq.out`` directory).
Prints a JSON summary (row counts, sha256 of every file written). The data itself is never committed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from collections import Counter
from pathlib import Path


def _write(path: Path, rows: list[tuple[str, str]]) -> dict[str, object]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in rows:
            fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    return {"rows": len(rows), "classes": len({lab for _, lab in rows}),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def snips_intent(data: Path, out: Path) -> dict[str, object]:
    res: dict[str, object] = {}
    for split, name in (("train", "train"), ("valid", "dev"), ("test", "test")):
        d = data / "snips" / split
        texts = (d / "seq.in").read_text(encoding="utf-8").splitlines()
        labels = (d / "label").read_text(encoding="utf-8").splitlines()
        if len(texts) != len(labels):
            raise SystemExit(f"{d}: {len(texts)} utterances but {len(labels)} labels")
        rows = [(" ".join(t.split()), lab.strip()) for t, lab in zip(texts, labels, strict=True)]
        res[name] = _write(out / "snips-intent" / f"{name}.jsonl", rows)
    return res


def _read_banking(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return [(" ".join(r["text"].split()), r["category"].strip()) for r in reader]


def banking77(data: Path, out: Path, seed: int, dev_fraction: float) -> dict[str, object]:
    from sklearn.model_selection import train_test_split

    rows = _read_banking(data / "banking77" / "train.csv")
    train, dev = train_test_split(rows, test_size=dev_fraction, random_state=seed,
                                  stratify=[lab for _, lab in rows])
    res: dict[str, object] = {
        "split": f"stratified {dev_fraction:.0%} of train.csv as dev, sklearn train_test_split random_state={seed}",
        "train": _write(out / "banking77" / "train.jsonl", train),
        "dev": _write(out / "banking77" / "dev.jsonl", dev),
        "test": _write(out / "banking77" / "test.jsonl", _read_banking(data / "banking77" / "test.csv")),
    }
    counts = Counter(lab for _, lab in dev)
    res["dev_per_class_min_max"] = [min(counts.values()), max(counts.values())]
    return res


def clinc150(data: Path, out: Path) -> dict[str, object]:
    full = json.loads((data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    res: dict[str, object] = {}
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        rows = [(" ".join(str(t).split()), str(lab)) for t, lab in full[split] + full[f"oos_{split}"]]
        res[name] = _write(out / "clinc150" / f"{name}.jsonl", rows)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/data"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dev-fraction", type=float, default=0.1)
    a = ap.parse_args()
    summary = {
        "snips-intent": snips_intent(a.data, a.out),
        "banking77": banking77(a.data, a.out, a.seed, a.dev_fraction),
        "clinc150": clinc150(a.data, a.out),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
