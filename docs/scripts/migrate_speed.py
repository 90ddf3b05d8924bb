"""The speed of the composed models before and after the migration, same process, same texts: the teacher
branches on MiniLM-L6 vs the migrated branches on MiniLM-L3 (mtbranch.sdk.migrate.composed_speed).

    OMP_NUM_THREADS=1 python docs/scripts/migrate_speed.py RUNS_DIR > docs/results/migrate/speed.json
    OMP_NUM_THREADS=1 python docs/scripts/migrate_speed.py TASK=BRANCH_DIR ... > docs/results/migrate/speed-8.json

RUNS_DIR: the three first runs' output (RUNS_DIR/TASK/branches/TASK for sentiment, entities, similarity);
TASK=BRANCH_DIR: each migrated branch by name, as many as given (the teachers are the example plugins' branches).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

from mtbranch.sdk.migrate import composed_speed
from mtbranch.trunk.source import resolve_trunk

TASKS = ("sentiment", "entities", "similarity")  # RUNS_DIR's
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main(migrated: dict[str, Path], n: int = 512) -> None:
    torch.set_num_threads(1)
    lines = [r.split("\t")[0] for r in Path("/work/shared/data/SST-2/dev.tsv").read_text().splitlines()[1:] if r][:n]
    old = [EXAMPLES / f"plugin-{t}" / "src" / f"mtbranch_{t}" / "branch" for t in migrated]
    out = composed_speed(resolve_trunk("minilm-l6"), old, resolve_trunk("minilm-l3"), list(migrated.values()), lines)
    out["threads"] = torch.get_num_threads()
    out["cpu"] = platform.processor() or platform.machine()
    out["branches"] = list(migrated)
    print(json.dumps(out, indent=2))


def _args(argv: list[str]) -> dict[str, Path]:
    if len(argv) == 1 and "=" not in argv[0]:
        return {t: Path(argv[0]) / t / "branches" / t for t in TASKS}
    return {k: Path(v) for k, v in (a.split("=", 1) for a in argv)}


if __name__ == "__main__":
    main(_args(sys.argv[1:]))
