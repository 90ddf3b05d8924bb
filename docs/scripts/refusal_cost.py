"""What one refused (429, over quota) request costs the server: refused at the edge vs in the route.

    python docs/scripts/refusal_cost.py /tmp/fleet/composed --json docs/benchmarks/refusal-cost.json

Starts ``mtbranch serve ARTIFACT --threads 1 --quota team-sentiment=0.001`` (every request of team-sentiment is
over its quota after the first), sends 30 requests to warm up, then 300 one at a time (one keep-alive connection)
and reads the server process's CPU seconds (``/proc/PID/stat``) around them. Two setups, alternated ``--rounds``
times: ``edge`` (as shipped: the Guard refuses from the raw body, :func:`mtbranch.serve.fair.edge_refusal`) and
``route`` (the edge check switched off by a monkeypatch in the launcher: FastAPI routes the request and the
``/predict`` route refuses it, the code before the edge check).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fleet_load import cpu_seconds  # the scripts beside this one
from loadtest import free_port

LAUNCH = """
import sys
if sys.argv[1] == "route":
    import mtbranch.serve.http as h
    h.Guard._over_quota = lambda self, scope, body: None
from mtbranch.cli.main import cli
cli(sys.argv[2:])
"""


def block(artifact: str, mode: str, n: int) -> float:
    """Server CPU milliseconds per refused request."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, mode, "serve", artifact, "--port", str(port), "--threads",
                             "1", "--quota", "team-sentiment=0.001", "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        body = {"texts": ["the movie was fine and the popcorn too"], "owners": ["team-sentiment"]}
        with httpx.Client() as client:
            for _ in range(30):
                client.post(url + "/predict", json=body)
            cpu0 = cpu_seconds(proc.pid)
            codes = [client.post(url + "/predict", json=body).status_code for _ in range(n)]
            ms = 1000 * (cpu_seconds(proc.pid) - cpu0) / n
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    if set(codes) != {429}:
        raise SystemExit(f"{mode}: expected only 429s, got {sorted(set(codes))}")
    return round(ms, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"route": [], "edge": []}
    for _ in range(args.rounds):
        for mode in runs:
            runs[mode].append(block(args.artifact, mode, args.requests))
            print(mode, runs[mode][-1], flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    out = {"command": " ".join(["python", *sys.argv]), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
           "server_cpu_ms_per_refusal": runs, "median": med, "edge_over_route": round(med["edge"] / med["route"], 3)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
