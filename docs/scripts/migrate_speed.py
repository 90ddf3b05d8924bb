"""The speed of the composed models before and after the migration, same process, same texts: the three teacher
branches on MiniLM-L6 vs the three migrated branches on MiniLM-L3 (mtbranch.sdk.migrate.composed_speed).

    OMP_NUM_THREADS=1 python docs/scripts/migrate_speed.py RUNS_DIR > docs/results/migrate/speed.json
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

from mtbranch.sdk.migrate import composed_speed
from mtbranch.trunk.source import resolve_trunk

TASKS = {"sentiment": "mtbranch_sentiment", "entities": "mtbranch_entities", "similarity": "mtbranch_similarity"}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main(runs: Path, n: int = 512) -> None:
    torch.set_num_threads(1)
    lines = [r.split("\t")[0] for r in Path("/work/shared/data/SST-2/dev.tsv").read_text().splitlines()[1:] if r][:n]
    old = [EXAMPLES / f"plugin-{t}" / "src" / pkg / "branch" for t, pkg in TASKS.items()]
    new = [runs / t / "branches" / t for t in TASKS]
    out = composed_speed(resolve_trunk("minilm-l6"), old, resolve_trunk("minilm-l3"), new, lines)
    out["threads"] = torch.get_num_threads()
    out["cpu"] = platform.processor() or platform.machine()
    out["branches"] = list(TASKS)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
