"""MRPC training data for the distilled `paraphrase` branch: every labelled pair also in swapped order.

    python docs/scripts/augment_mrpc.py ../shared/data/MRPC/train.tsv runs/data/mrpc/train-swap.tsv

Paraphrase is symmetric, so (#2, #1) carries the label of (#1, #2); the branch encodes the pair as one
sequence, so the swapped order is a new input. Dev pairs are never used. Output: the MRPC layout (5
tab-separated columns with a header), read with `--quote-none --text-col 3 --pair-col 4 --label-col 0`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train", type=Path, help="MRPC train.tsv")
    ap.add_argument("out", type=Path, help="output .tsv")
    a = ap.parse_args()
    lines = a.train.read_text(encoding="utf-8-sig").splitlines()
    header, rows = lines[0], [line.split("\t") for line in lines[1:] if line.strip()]
    swapped = [[r[0], r[2], r[1], r[4], r[3]] for r in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join([header] + ["\t".join(r) for r in rows + swapped]) + "\n", encoding="utf-8")
    print(f"{a.out}: {len(rows)} pairs + {len(swapped)} swapped")


if __name__ == "__main__":
    main()
