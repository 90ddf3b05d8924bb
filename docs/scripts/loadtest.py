"""Load test: `mtbranch serve` on loopback, the composed model vs one server per task, in the same run.

    python docs/scripts/loadtest.py out/composed --requests 400 --concurrency 16 --threads 1

Starts one server for the composed artifact (every task) and one per task (``--task NAME``: only that branch,
the trunk only as deep as it needs), waits until each is ready, then fires a bounded number of requests (one
sentence each, STS-B dev pairs from ../shared/data) with a fixed concurrency (httpx async) per scenario:

* composed, all tasks      one request per sentence (with its pair), every task
* composed, one task       one request per sentence, ``tasks=[TASK]``
* per-task, one task       the same requests to TASK's own server
* per-task, all tasks      one request per task to each task's server, concurrently; latency = the slowest

Reports throughput (sentences/s, each answered with the scenario's tasks), p50/p99 latency, errors, the
servers' merged-batch statistics and resident memory. Every server is stopped at the end (also on errors).
Every server runs ``--dtype`` (default float32, the figures in docs/serving.md).

Compute dtypes compared (docs/benchmarks.md, "Compute dtype"): one composed server per dtype, all tasks, the same
requests at the same concurrency, the dtypes taking turns round by round:

    python docs/scripts/loadtest.py out/composed --compare-dtypes float32,bfloat16 --requests 200 \
        --dtype-rounds 2 --concurrency 16 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "STS-B" / "sts-dev.csv"


def sentences(n: int) -> list[tuple[str, str]]:
    with DATA.open(encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    return [(r[5], r[6]) for r in rows[:n]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, artifact: str, tasks: list[str], args: argparse.Namespace, dtype: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.label = ",".join(tasks) or "all"
        cmd = [sys.executable, "-m", "mtbranch.cli.main", "serve", artifact, "--port", str(self.port),
               "--threads", str(args.threads), "--max-batch-size", str(args.max_batch_size),
               "--max-batch-wait-ms", str(args.max_batch_wait_ms), "--log-level", "warning",
               "--dtype", dtype or args.dtype]
        for t in tasks:
            cmd += ["--task", t]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.label} exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server {self.label} not ready after {timeout}s")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/stats", timeout=10).json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def run_scenario(fire: Callable[[httpx.AsyncClient, int], Awaitable[None]], n: int, concurrency: int,
                       warmup: int, keep: list[float] | None = None) -> dict[str, Any]:
    """``n`` calls of ``fire(client, i)`` with ``concurrency`` in flight; latency per call."""
    limits = httpx.Limits(max_connections=concurrency * 4, max_keepalive_connections=concurrency * 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(fire(client, i) for i in range(warmup)))
        latencies: list[float] = []
        errors = 0
        queue = iter(range(n))

        async def worker() -> None:
            nonlocal errors
            for i in queue:
                t0 = time.perf_counter()
                try:
                    await fire(client, i)
                except (httpx.HTTPError, AssertionError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    if keep is not None:
        keep.extend(latencies)
    return {"requests": n, "errors": errors, "seconds": round(wall, 2),
            "throughput": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)
            if latencies else None}


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> None:
    r = await client.post(url + "/predict", json=body)
    assert r.status_code == 200, r.text


def compare_dtypes(args: argparse.Namespace) -> None:
    """One composed server per dtype (every task), the same requests at the same concurrency; the dtypes take
    turns (``--dtype-rounds`` rounds of ``--requests`` each) so a busy machine slows them alike."""
    from mtbranch.spec.precision import cpu_report

    dtypes = [d.strip() for d in args.compare_dtypes.split(",") if d.strip()]
    data = sentences(max(args.requests, 64))
    servers: dict[str, Server] = {}
    rounds: dict[str, list[dict[str, Any]]] = {d: [] for d in dtypes}
    latencies: dict[str, list[float]] = {d: [] for d in dtypes}
    try:
        for d in dtypes:
            servers[d] = Server(args.artifact, [], args, dtype=d)
        for s in servers.values():
            s.wait_ready()
        rss = {k: round(s.rss_mb()) for k, s in servers.items()}
        for r in range(args.dtype_rounds):
            for d in (dtypes if r % 2 == 0 else dtypes[::-1]):
                url = servers[d].url

                async def fire(c: httpx.AsyncClient, i: int, url: str = url) -> None:
                    a, b = data[i % len(data)]
                    await post(c, url, {"texts": [a], "text_pairs": [b]})

                before = servers[d].stats()
                res = asyncio.run(run_scenario(fire, args.requests, args.concurrency, warmup=args.concurrency,
                                               keep=latencies[d]))
                after = servers[d].stats()
                calls = after["predict_calls"] - before["predict_calls"]
                res["requests_per_model_call"] = round((after["requests"] - before["requests"]) / calls, 2) \
                    if calls else None
                rounds[d].append(res)
                print(f"round {r + 1} {d}: {res}", file=sys.stderr)
    finally:
        for s in servers.values():
            s.stop()
    summary = {}
    for d in dtypes:
        lat = sorted(latencies[d])
        secs = sum(x["seconds"] for x in rounds[d])
        summary[d] = {"throughput": round(len(lat) / secs, 1) if secs else None,
                      "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                      "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None,
                      "errors": sum(x["errors"] for x in rounds[d]), "rss_mb": rss[d]}
    base = summary[dtypes[0]]["throughput"]
    for d in dtypes:
        summary[d]["throughput_vs_" + dtypes[0]] = round(summary[d]["throughput"] / base, 2) if base else None
    report = {"command": "python docs/scripts/loadtest.py " + " ".join(sys.argv[1:]), "artifact": args.artifact,
              "requests_per_round": args.requests, "rounds": args.dtype_rounds, "concurrency": args.concurrency,
              "threads_per_server": args.threads, "max_batch_size": args.max_batch_size,
              "max_batch_wait_ms": args.max_batch_wait_ms, "cpus": os.cpu_count(), "python": platform.python_version(),
              "machine": cpu_report(), "loadavg_end": os.getloadavg(), "summary": summary, "rounds_detail": rounds}
    print(json.dumps(report, indent=2))
    print("\n| server dtype | sentences/s | p50 ms | p99 ms | errors | throughput vs " + dtypes[0] + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for d, x in summary.items():
        print(f"| {d} | {x['throughput']} | {x['p50_ms']} | {x['p99_ms']} | {x['errors']} | "
              f"{x['throughput_vs_' + dtypes[0]]}x |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", nargs="?", default="out/composed")
    ap.add_argument("--requests", type=int, default=400, help="requests per scenario (bounded)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per server")
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--max-batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--one-task", default="sentiment", help="the task of the one-task scenarios")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--dtype", default="float32", help="every server's --dtype (the figures below: float32)")
    ap.add_argument("--compare-dtypes", default=None, metavar="LIST",
                    help="instead: one composed server per dtype (e.g. float32,bfloat16), all tasks, same "
                         "concurrency, the dtypes taking turns for --dtype-rounds rounds")
    ap.add_argument("--dtype-rounds", type=int, default=2)
    args = ap.parse_args()
    if args.compare_dtypes:
        compare_dtypes(args)
        return

    from mtbranch.composition.artifact import read_lock

    lock = read_lock(args.artifact)
    tasks = [e["name"] for e in lock["branches"]]
    pair_tasks = {e["name"] for e in lock["branches"]
                  if json.loads((Path(args.artifact) / "branches" / e["name"] / "manifest.json").read_text())
                  ["tokenizer"]["input_signature"] == "pair"}
    data = sentences(max(args.requests, 64))
    servers: dict[str, Server] = {}
    try:
        servers["all"] = Server(args.artifact, [], args)
        for t in tasks:
            servers[t] = Server(args.artifact, [t], args)
        t0 = time.time()
        for s in servers.values():
            s.wait_ready()
        print(f"{len(servers)} servers ready in {time.time() - t0:.1f}s", file=sys.stderr)
        rss = {k: round(s.rss_mb()) for k, s in servers.items()}

        def body(i: int, task: str | None) -> dict[str, Any]:
            a, b = data[i % len(data)]
            if task is None:
                return {"texts": [a], "text_pairs": [b]}
            return {"texts": [a], "tasks": [task], **({"text_pairs": [b]} if task in pair_tasks else {})}

        async def composed_all(c: httpx.AsyncClient, i: int) -> None:
            await post(c, servers["all"].url, body(i, None))

        async def composed_one(c: httpx.AsyncClient, i: int) -> None:
            await post(c, servers["all"].url, body(i, args.one_task))

        async def single_one(c: httpx.AsyncClient, i: int) -> None:
            await post(c, servers[args.one_task].url, body(i, args.one_task))

        async def single_all(c: httpx.AsyncClient, i: int) -> None:
            await asyncio.gather(*(post(c, servers[t].url, body(i, t)) for t in tasks))

        scenarios = {"composed, all tasks": (composed_all, ["all"]),
                     f"composed, one task ({args.one_task})": (composed_one, ["all"]),
                     f"per-task server, one task ({args.one_task})": (single_one, [args.one_task]),
                     "per-task servers, all tasks": (single_all, tasks)}
        results: dict[str, Any] = {}
        for name, (fire, used) in scenarios.items():
            before = {k: servers[k].stats() for k in used}
            res = asyncio.run(run_scenario(fire, args.requests, args.concurrency, warmup=args.concurrency))
            after = {k: servers[k].stats() for k in used}
            calls = sum(after[k]["predict_calls"] - before[k]["predict_calls"] for k in used)
            reqs = sum(after[k]["requests"] - before[k]["requests"] for k in used)
            res["requests_per_model_call"] = round(reqs / calls, 2) if calls else None
            results[name] = res
            print(f"{name}: {res}", file=sys.stderr)
    finally:
        for s in servers.values():
            s.stop()

    report = {"artifact": args.artifact, "tasks": tasks, "requests": args.requests,
              "concurrency": args.concurrency, "threads_per_server": args.threads,
              "max_batch_size": args.max_batch_size, "max_batch_wait_ms": args.max_batch_wait_ms,
              "rss_mb": rss, "cpus": os.cpu_count(), "python": platform.python_version(), "results": results}
    print(json.dumps(report, indent=2))
    print("\n| scenario | sentences/s | p50 ms | p99 ms | errors | requests per model call |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['throughput']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | "
              f"{r['requests_per_model_call']} |")
    print(f"\nresident memory (MB): composed {rss['all']}; per-task "
          + ", ".join(f"{t} {rss[t]}" for t in tasks) + f" (sum {sum(rss[t] for t in tasks)})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
