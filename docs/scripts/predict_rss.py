"""Peak memory of ``mtbranch predict ARTIFACT --input FILE --output preds.jsonl`` at growing input sizes.

Each size runs in a fresh process under ``/usr/bin/time -v`` (its "Maximum resident set size"), so the
figure is the whole process: Python, torch, the model and the streamed rows. Flat across sizes means the
rows are not accumulated. Writes one JSON document (the raw figures) to --json.

    python docs/scripts/predict_rss.py --mtbranch .venv/bin/mtbranch --artifact out/composed \
        --lines 1000 10000 100000 --json docs/data/predict-rss.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path


def sst2_lines(n: int, source: Path) -> list[str]:
    with open(source, encoding="utf-8", newline="") as fh:
        rows = [r[0].strip() for i, r in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)) if i]
    return [rows[i % len(rows)] for i in range(n)]


def run(mtbranch: str, artifact: str, lines: int, source: Path, threads: int,
        malloc: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{lines}-lines.txt"
        src.write_text("\n".join(sst2_lines(lines, source)) + "\n", encoding="utf-8")
        out = Path(tmp) / "preds.jsonl"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), **malloc}
        t0 = time.time()
        r = subprocess.run(["/usr/bin/time", "-v", mtbranch, "predict", artifact, "--input", str(src), "--output",
                            str(out), "--no-progress"], capture_output=True, text=True, env=env, check=True)
        seconds = time.time() - t0
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))  # type: ignore[union-attr]
        with open(out, encoding="utf-8") as fh:
            rows = sum(1 for _ in fh)
    return {"lines": lines, "rows_out": rows, "peak_rss_mib": round(rss_kb / 1024, 1), "seconds": round(seconds, 1),
            "rows_per_second": round(rows / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mtbranch", default="mtbranch")
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--lines", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--source", type=Path, default=Path("../shared/data/SST-2/train.tsv"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--malloc-mmap-threshold", type=int, default=None,
                    help="run with MALLOC_MMAP_THRESHOLD_=N (glibc: blocks above N bytes are mmapped and unmapped "
                         "when freed, instead of being kept in the heap)")
    a = ap.parse_args()
    malloc = {} if a.malloc_mmap_threshold is None else {"MALLOC_MMAP_THRESHOLD_": str(a.malloc_mmap_threshold)}
    lock = json.loads((Path(a.artifact) / "mtbranch.lock.json").read_text())
    result = {"command": f"mtbranch predict {a.artifact} --input N-lines.txt --output preds.jsonl --no-progress",
              "artifact": {"trunk": lock["trunk"]["reference"], "branches": [b["name"] for b in lock["branches"]]},
              "input": f"SST-2 train sentences ({a.source}), cycled to N lines", "threads": a.threads,
              "environment": malloc,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
              "runs": [run(a.mtbranch, a.artifact, n, a.source, a.threads, malloc) for n in a.lines]}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
