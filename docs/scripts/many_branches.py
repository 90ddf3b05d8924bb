"""Hundreds of branches in one model: compose, load, latency, /metrics and inspect at N branches.

    python docs/scripts/many_branches.py --n 500 --json docs/benchmarks/many-branches.json

N copies of the example ``banking`` branch (a feature-based head at depth 6 of MiniLM-L6, 0 own layers) under
new names (``banking-000`` ...), owned by N/10 teams, are composed into one artifact on the example trunk (in a
temporary directory, removed at the end), with ``OMP_NUM_THREADS=1``. Recorded: compose seconds and artifact size,
load seconds (verified) and RSS, one text to one task and to every task (median of 5), the size of ``/metrics``
after one request per task, and ``mtbranch inspect`` (seconds, lines).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import mtbranch_banking
    import torch
    from fastapi.testclient import TestClient

    from mtbranch.composition.artifact import compose, load, save_composed
    from mtbranch.serve.app import create_app
    from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest
    from mtbranch.trunk.source import resolve_trunk

    torch.set_num_threads(1)
    src = Path(mtbranch_banking.__file__).parent / "branch"
    work = Path(tempfile.mkdtemp(prefix="mtbranch-many-"))
    out: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "n": args.n, "branch": "banking (depth 6, 0 "
                           "layers, 77 labels)"}
    try:
        dirs = []
        for i in range(args.n):
            d = work / "branches" / f"banking-{i:03d}"
            d.mkdir(parents=True)
            m = read_manifest(src / MANIFEST_NAME)
            shutil.copyfile(src / m.weights.path, d / m.weights.path)
            (d / MANIFEST_NAME).write_text(m.model_copy(update={"name": f"banking-{i:03d}",
                                                                "owner": f"team-{i % max(1, args.n // 10):03d}"}
                                                        ).to_json())
            dirs.append((d, "directory"))
        trunk = resolve_trunk("minilm-l6")
        t0 = time.perf_counter()
        model = compose(trunk, dirs)
        save_composed(model, work / "composed")
        out["compose_s"] = round(time.perf_counter() - t0, 1)
        out["artifact_mb"] = round(sum(p.stat().st_size for p in (work / "composed").rglob("*") if p.is_file())
                                   / 2**20, 1)
        del model
        gc.collect()
        t0 = time.perf_counter()
        model = load(work / "composed", backend="torch", dtype="float32")
        out["load_s"] = round(time.perf_counter() - t0, 1)
        out["peak_rss_mb_compose_and_load"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        status = Path("/proc/self/status").read_text()
        out["rss_mb_after_load"] = int(status.split("VmRSS:")[1].split()[0]) // 1024
        names = model.task_names
        text = ["Can I change my card's PIN at an ATM?"]

        def timed(tasks: list[str]) -> float:
            times = []
            for _ in range(5):
                t = time.perf_counter()
                model.predict(text, tasks=tasks)
                times.append(time.perf_counter() - t)
            return round(1000 * statistics.median(times), 1)

        model.predict(text, tasks=names[:1])
        out["one_task_ms"] = timed(names[:1])
        out["all_tasks_ms"] = timed(names)
        with TestClient(create_app(model)) as c:
            while c.get("/ready").status_code != 200:
                time.sleep(0.05)
            before = len(c.get("/metrics").content)
            r = c.post("/predict", json={"texts": text})
            assert r.status_code == 200, r.text
            out["http_all_tasks_response_kb"] = round(len(r.content) / 1024, 1)
            out["metrics_kb_before"] = round(before / 1024, 1)
            body = c.get("/metrics").text
            out["metrics_kb_after_one_request_per_task"] = round(len(body.encode()) / 1024, 1)
            families: dict[str, int] = {}
            for line in body.splitlines():
                if not line.startswith("#"):
                    name = line.split("{", 1)[0].split(" ", 1)[0]
                    for suffix in ("_bucket", "_count", "_sum", "_created", "_total"):
                        name = name.removesuffix(suffix)
                    families[name] = families.get(name, 0) + len(line) + 1
            out["metrics_kb_by_family"] = {k: round(v / 1024, 1) for k, v in
                                           sorted(families.items(), key=lambda kv: -kv[1])[:8]}
        t0 = time.perf_counter()
        shown = subprocess.run([str(Path(sys.executable).parent / "mtbranch"), "inspect", str(work / "composed")],
                               capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "120"})
        out["inspect_s"] = round(time.perf_counter() - t0, 1)
        out["inspect_lines"] = len(shown.stdout.splitlines())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text_out = json.dumps(out, indent=2)
    print(text_out)
    if args.json:
        args.json.write_text(text_out + "\n")


if __name__ == "__main__":
    main()
