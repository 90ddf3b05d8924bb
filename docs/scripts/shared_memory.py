"""Memory of N processes serving one artifact: do they share one copy of the weights?

    python docs/scripts/shared_memory.py /tmp/fleet/composed --workers 1,4 --json docs/benchmarks/shared-memory.json

For each N, starts N Python processes that each ``mtbranch.load`` the artifact (``OMP_NUM_THREADS=1``), answer one
request, and wait; then reads each one's ``/proc/PID/smaps_rollup``: RSS (counts shared pages in every process),
PSS (shared pages divided among the processes mapping them), private and shared bytes, the part backed by files,
and, from ``/proc/PID/smaps``, the RSS and PSS of the ``*.safetensors`` mappings alone (the weights). If the
weights stay memory-mapped, N processes' summed PSS grows by the private part only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHILD = """
import sys, mtbranch
m = mtbranch.load(sys.argv[1], backend="torch", dtype="float32")
m.predict(["warm-up text"], tasks=[b.name for b in m.branches if b.manifest.tokenizer.input_signature == "single"])
print("ready", flush=True)
sys.stdin.read()
"""


def rollup(pid: int) -> dict[str, int]:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return {"rss_mb": kb["Rss"] // 1024, "pss_mb": kb["Pss"] // 1024,
            "private_mb": (kb["Private_Clean"] + kb["Private_Dirty"]) // 1024,
            "shared_mb": (kb["Shared_Clean"] + kb["Shared_Dirty"]) // 1024,
            "file_backed_pss_mb": kb.get("Pss_File", 0) // 1024, "anon_pss_mb": kb.get("Pss_Anon", 0) // 1024}


def weights_mapped(pid: int) -> dict[str, int]:
    """RSS and PSS of the mappings of ``*.safetensors`` files (the weights, memory-mapped) in ``/proc/PID/smaps``."""
    rss = pss = 0
    current = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            current = line.rstrip().endswith(".safetensors")
        elif current and head[:1] == ["Rss:"]:
            rss += int(head[1])
        elif current and head[:1] == ["Pss:"]:
            pss += int(head[1])
    return {"weights_rss_mb": rss // 1024, "weights_pss_mb": pss // 1024}


def run(artifact: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, artifact], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(1)
        each = [{**rollup(p.pid), **weights_mapped(p.pid)} for p in procs]
    finally:
        for p in procs:
            p.communicate("")
    return {"workers": n, "each": each, "sum_rss_mb": sum(e["rss_mb"] for e in each),
            "sum_pss_mb": sum(e["pss_mb"] for e in each)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    weights = sum(p.stat().st_size for p in Path(args.artifact).rglob("*.safetensors")) // 2**20
    out = {"command": " ".join(["python", *sys.argv]), "weights_mb": weights,
           "runs": [run(args.artifact, int(n)) for n in args.workers.split(",")]}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
