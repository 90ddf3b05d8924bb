"""Peak RSS of ``ComposedModel.predict_iter`` under one glibc allocator setting, every 1,024 rows.

    python docs/scripts/allocator_probe.py ROWS MODE [ARTIFACT] [--data ../shared/data]

MODE: ``default`` (glibc as it comes), ``arena2`` (``mallopt(M_ARENA_MAX, 2)``), ``mmap1m`` / ``mmap64k``
(``mallopt(M_MMAP_THRESHOLD, 1 MiB / 64 KiB)``: blocks above it are mmapped and unmapped when freed, the same as
``MALLOC_MMAP_THRESHOLD_`` at start-up). Start one process per mode at the same time so they share the machine
alike; the seconds are comparable only within such a run. Results: docs/data/predict-rss-allocator.json.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import resource
import time
from pathlib import Path

MALLOPT = {"arena2": (-8, 2), "mmap1m": (-3, 1 << 20), "mmap64k": (-3, 1 << 16)}  # (param, value), malloc.h
TASKS = ["sentiment", "entities", "intent", "slots", "banking", "clinc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", type=int)
    ap.add_argument("mode", choices=["default", *MALLOPT])
    ap.add_argument("artifact", nargs="?", default="out/composed")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    a = ap.parse_args()
    if a.mode in MALLOPT:  # before torch and the model allocate anything
        ctypes.CDLL("libc.so.6").mallopt(*MALLOPT[a.mode])
    import torch

    import mtbranch

    torch.set_num_threads(1)
    with open(a.data / "SST-2" / "train.tsv", encoding="utf-8", newline="") as fh:
        texts = [r[0].strip() for i, r in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)) if i]
    model = mtbranch.load(a.artifact, backend="torch", dtype="float32")
    tasks = [t for t in TASKS if t in {b.name for b in model.branches}]

    def rss_mib() -> int:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    after_load, rss, seconds, t0 = rss_mib(), [], [], time.perf_counter()
    stream = (texts[j % len(texts)] for j in range(a.rows))
    for i, _ in enumerate(model.predict_iter(stream, tasks=tasks), 1):
        if i % 1024 == 0:
            rss.append(rss_mib())
            seconds.append(round(time.perf_counter() - t0, 1))
    print({"mode": a.mode, "rss_after_load_mib": after_load, "rss_mib_after_each_1024_rows": rss,
           "cumulative_seconds": seconds})


if __name__ == "__main__":
    main()
