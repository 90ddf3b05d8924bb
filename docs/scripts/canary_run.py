"""A canary of one branch on a live `mtbranch serve` under load: shadow -> split 10% -> promote -> rollback.

    python docs/scripts/canary_run.py /tmp/fleet/composed /tmp/fleet/sentiment-v2 --json docs/benchmarks/canary.json

Serves a copy of ARTIFACT (promotion rewrites it) with ``--threads 1 --dtype float32`` on loopback. Each step's
admin call (``mtbranch canary ...``: the CLI, over HTTP) is made while open-loop traffic runs (``--rate`` requests/s
for ``--window-s`` seconds, every single-text task, one STS-B dev sentence each, a rotating ``x-user`` key); then,
with the traffic stopped, a probe: the same ``--probes`` sentences sent one by one (so no request shares a pass
with another) with a fixed key each, every task. Recorded per step: the failed requests of the window, whether
every other branch's answers are bit-identical to the probe before the canary, how many sentiment answers came
from B, the lock's sentiment entry and sha256, the canary status and the per-version /metrics lines.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from loadtest import free_port, sentences  # the script beside this one (STS-B dev sentences)

TOKEN = "canary-run-token"
TASK = "sentiment"


def mtbranch(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "mtbranch"), *args]


async def traffic(url: str, rate: float, seconds: float, texts: list[tuple[str, str]], codes: list[int]) -> None:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=128)) as client:
        async def one(k: int) -> None:
            try:
                r = await client.post(url + "/predict", json={"texts": [texts[k % len(texts)][0]]},
                                      headers={"x-user": f"user-{k % 50}"})
                codes.append(r.status_code)
            except httpx.HTTPError:
                codes.append(-1)

        start, k, pending = time.perf_counter(), 0, []
        while (due := start + k / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            pending.append(asyncio.create_task(one(k)))
            k += 1
        await asyncio.gather(*pending)


def probe(url: str, texts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(timeout=60) as c:
        for i, (a, b) in enumerate(texts):
            r = c.post(url + "/predict", json={"texts": [a], "text_pairs": [b]}, headers={"x-user": f"probe-{i}"})
            r.raise_for_status()
            out.append(r.json()["results"][0])
    return out


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("branch_b")
    ap.add_argument("--rate", type=float, default=8.0)
    ap.add_argument("--window-s", type=float, default=15)
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    texts = sentences(400)
    probes = texts[:args.probes]
    work = Path(tempfile.mkdtemp(prefix="mtbranch-canary-run-"))
    artifact = work / "composed"
    shutil.copytree(args.artifact, artifact)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MTBRANCH_ADMIN_TOKEN": TOKEN,
           "MTBRANCH_URL": url}
    server = subprocess.Popen(mtbranch("serve", str(artifact), "--port", str(port), "--threads", "1", "--dtype",
                                       "float32", "--max-batch-wait-ms", "2", "--log-level", "warning"),
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps: list[dict[str, Any]] = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        before = probe(url, probes)

        def step(name: str, cli: list[str]) -> None:
            codes: list[int] = []
            load = threading.Thread(target=lambda: asyncio.run(traffic(url, args.rate, args.window_s, texts, codes)))
            load.start()
            time.sleep(args.window_s / 3)  # the admin call lands in the middle of the traffic
            t0 = time.perf_counter()
            done = subprocess.run(mtbranch("canary", *cli, "--json"), env=env, capture_output=True, text=True)
            admin_s = time.perf_counter() - t0
            load.join()
            now = probe(url, probes)
            others_same = all({k: v for k, v in a.items() if k != TASK} == {k: v for k, v in b.items() if k != TASK}
                              for a, b in zip(before, now, strict=True))
            lock_bytes = (artifact / "mtbranch.lock.json").read_bytes()
            entry = next(e for e in json.loads(lock_bytes)["branches"] if e["name"] == TASK)
            metrics = [line for line in httpx.get(url + "/metrics").text.splitlines()
                       if line.startswith(("mtbranch_branch_requests_total", "mtbranch_canary_agreement_total",
                                           "mtbranch_canary_forward_seconds_total"))
                       and f'task="{TASK}"' in line]
            status = httpx.get(url + "/admin/canary", headers={"authorization": f"Bearer {TOKEN}"}).json()
            steps.append({"step": name, "command": "mtbranch canary " + " ".join(cli), "exit": done.returncode,
                          "answer": json.loads(done.stdout) if done.returncode == 0 else done.stdout + done.stderr,
                          "admin_s": round(admin_s, 2), "requests": len(codes),
                          "failed": sum(c != 200 for c in codes), "other_branches_bit_identical": others_same,
                          "sentiment_identical_to_before": [a[TASK] for a in now] == [b[TASK] for b in before],
                          "sentiment_changed": sum(a[TASK] != b[TASK] for a, b in zip(now, before, strict=True)),
                          "lock_sha256": hashlib.sha256(lock_bytes).hexdigest(),
                          "lock_sentiment": {k: entry[k] for k in ("version", "attach_depth", "num_layers", "sha256")},
                          "status": status, "metrics": metrics})

        step("shadow", ["start", str(Path(args.branch_b).absolute()), "--mode", "shadow"])
        step("split 10%", ["set", TASK, "--mode", "split", "--fraction", "0.1", "--key-header", "x-user"])
        step("promote", ["promote", TASK])
        step("rollback", ["rollback", TASK])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    models = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    out = {"command": " ".join(["python", *sys.argv]), "cpu": models[0] if models else None, "cpus": os.cpu_count(),
           "load_average": os.getloadavg(), "rate": args.rate, "window_s": args.window_s, "probes": args.probes,
           "steps": steps}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
