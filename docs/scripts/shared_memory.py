"""Memory of N processes serving one artifact: do they share one copy of the weights?

    python docs/scripts/shared_memory.py /tmp/fleet/composed --workers 1,4 --json docs/benchmarks/shared-memory.json
    python docs/scripts/shared_memory.py --copies 500 --serve --workers 1,4 --json docs/benchmarks/workers-500.json

For each N, starts N Python processes that each ``mtbranch.load`` the artifact (``OMP_NUM_THREADS=1``), answer one
request, and wait; then reads each one's ``/proc/PID/smaps_rollup``: RSS (counts shared pages in every process),
PSS (shared pages divided among the processes mapping them), private and shared bytes, the part backed by files,
and, from ``/proc/PID/smaps``, the RSS and PSS of the ``*.safetensors`` mappings alone (the weights). If the
weights stay memory-mapped, N processes' summed PSS grows by the private part only.

``--copies N``: instead of ARTIFACT, N copies of the example ``banking`` branch under new names composed into a
temporary artifact (as many_branches.py does; removed at the end). ``--serve``: each process is a server worker,
``mtbranch serve ARTIFACT --threads 1`` on its own port, asked one text for every task once it is ready.
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


def run_servers(artifact: str, n: int) -> dict[str, Any]:
    """N ``mtbranch serve`` workers, each asked one text for every task (the single-text ones) once ready."""
    import httpx
    from loadtest import free_port  # the script beside this one

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    exe = str(Path(sys.executable).parent / "mtbranch")
    ports = [free_port() for _ in range(n)]
    procs = [subprocess.Popen([exe, "serve", artifact, "--port", str(port), "--threads", "1", "--log-level",
                               "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for port in ports]
    try:
        for port in ports:
            deadline = time.time() + 600
            while time.time() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            else:
                raise SystemExit(f"worker on port {port} did not become ready")
            r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"texts": ["Can I change my PIN?"]}, timeout=120)
            r.raise_for_status()
        time.sleep(1)
        each = [{**rollup(p.pid), **weights_mapped(p.pid)} for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    return {"workers": n, "serve": True, "each": each, "sum_rss_mb": sum(e["rss_mb"] for e in each),
            "sum_pss_mb": sum(e["pss_mb"] for e in each)}


def compose_copies(n: int, work: Path) -> Path:
    """N copies of the example banking branch under new names, composed on the example trunk (many_branches.py)."""
    import shutil

    import mtbranch_banking

    from mtbranch.composition.artifact import compose, save_composed
    from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest
    from mtbranch.trunk.source import resolve_trunk

    src = Path(mtbranch_banking.__file__).parent / "branch"
    dirs = []
    for i in range(n):
        d = work / "branches" / f"banking-{i:03d}"
        d.mkdir(parents=True)
        m = read_manifest(src / MANIFEST_NAME)
        shutil.copyfile(src / m.weights.path, d / m.weights.path)
        (d / MANIFEST_NAME).write_text(m.model_copy(update={"name": f"banking-{i:03d}",
                                                            "owner": f"team-{i % max(1, n // 10):03d}"}).to_json())
        dirs.append((d, "directory"))
    save_composed(compose(resolve_trunk("minilm-l6"), dirs), work / "composed")
    return work / "composed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", nargs="?")
    ap.add_argument("--copies", type=int, default=0, help="compose N banking copies instead of ARTIFACT")
    ap.add_argument("--serve", action="store_true", help="workers are `mtbranch serve` processes")
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="mtbranch-shm-"))
    try:
        artifact = str(compose_copies(args.copies, work)) if args.copies else args.artifact
        weights = sum(p.stat().st_size for p in Path(artifact).rglob("*.safetensors")) // 2**20
        each_run = run_servers if args.serve else run
        out = {"command": " ".join(["python", *sys.argv]), "weights_mb": weights, "branches": args.copies or None,
               "load_average": os.getloadavg(), "runs": [each_run(artifact, int(n)) for n in args.workers.split(",")]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
