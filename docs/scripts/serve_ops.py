"""Operations load test for `mtbranch serve` (loopback only, bounded): hot swap, SIGTERM drain, overload.

    mtbranch compose -o out/composed                      # the example branches (see `make demo`)
    python docs/scripts/serve_ops.py out/composed --load 0.4 --max-queue 32 --json docs/benchmarks/serve-ops.json

1. **Capacity**: a closed loop (16 in flight) for ``--probe-s`` seconds; capacity = answered requests/s.
2. **Hot swap + drain**: requests at a fixed arrival rate (``--load`` x capacity, open loop) for ``--duration-s``.
   Before it, ``mtbranch update WORK --put sentiment-v2`` rewrites the served artifact on disk (a copy of the
   input; sentiment-v2 is the sentiment branch with its head bias shifted, so its answers differ; the server
   keeps serving the version in memory); half-way, ``POST /admin/reload`` verifies and swaps it in.
   Every answer is checked against the reference of the version named in its ``x-mtbranch-version`` header
   (references computed before the run by loading both versions here): 0 failed requests, p50/p99 before,
   during (reload start to end + 1 s) and after. At the end SIGTERM is sent while arrivals continue: each request
   sent before the listener closed must get 200 or 503 JSON; later ones find the port closed (connection refused:
   a load balancer's readiness check has moved them to another replica by then).
3. **Overload**: a fresh server; ``--overload`` x capacity for ``--overload-s`` seconds: answers must be 200 or
   503 JSON with Retry-After, the server's resident memory is sampled each second; then ``--load`` x capacity
   for ``--recover-s`` seconds: every request 200.

Requests carry one STS-B dev sentence each and rotate over task subsets ({sentiment}, {entities},
{sentiment, entities}, {similarity} with its pair), so batches mix subsets. Prints and writes one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "STS-B" / "sts-dev.csv"
TOKEN = "loadtest-token"
STARTS: dict[str, float] = {}  # url -> perf_counter at the last open loop's start
SUBSETS: list[tuple[list[str], bool]] = [(["sentiment"], False), (["entities"], False),
                                         (["sentiment", "entities"], False), (["similarity"], True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bodies(n: int) -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7][:n]
    out = []
    for i, r in enumerate(rows):
        tasks, pair = SUBSETS[i % len(SUBSETS)]
        out.append({"texts": [r[5]], "tasks": tasks, **({"text_pairs": [r[6]]} if pair else {})})
    return out


def close(a: Any, b: Any, tol: float = 1e-4) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def make_v2(artifact: Path, work: Path) -> Path:
    """sentiment-v2: the sentiment branch with its head's bias shifted by 0.5 (and version 0.2.0.dev1)."""
    import torch

    from mtbranch.branch.model import load_branch, save_branch
    from mtbranch.plugins.manager import get_plugin_manager

    src = artifact / "branches" / "sentiment"
    manifest = json.loads((src / "manifest.json").read_text())
    branch = load_branch(src, get_plugin_manager().head_type(manifest["head"]["type"]))
    with torch.no_grad():
        bias = next(p for n, p in branch.named_parameters() if n.startswith("head") and n.endswith("bias"))
        bias[0] += 0.5
    branch.manifest = branch.manifest.model_copy(update={"version": "0.2.0.dev1"})
    save_branch(branch, work / "sentiment-v2")
    return work / "sentiment-v2"


class Served:
    def __init__(self, artifact: Path, args: argparse.Namespace, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
               "MTBRANCH_ADMIN_TOKEN": TOKEN}
        cmd = [sys.executable, "-m", "mtbranch.cli.main", "serve", str(artifact), "--port", str(self.port),
               "--threads", str(args.threads), "--max-queue", str(args.max_queue), "--grace", str(args.grace),
               "--drain-delay", str(args.drain_delay),
               "--max-batch-size", "32", "--max-batch-wait-ms", "5", "--dtype", "float32", "--log-level", "info"]
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise TimeoutError("server not ready")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def one(client: httpx.AsyncClient, url: str, body: dict[str, Any], t_sched: float,
              records: list[dict[str, Any]], idx: int) -> None:
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"i": idx, "sent": t0 - t_sched}
    try:
        r = await client.post(url + "/predict", json=body)
        rec.update(status=r.status_code, version=r.headers.get("x-mtbranch-version"),
                   retry_after=r.headers.get("retry-after"))
        try:
            rec["json"] = r.json()
        except ValueError:
            rec["json"] = None
    except httpx.ConnectError as exc:
        rec.update(status="refused", error=type(exc).__name__)
    except httpx.HTTPError as exc:
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
    rec["latency"] = time.perf_counter() - t0
    records.append(rec)


async def open_loop(url: str, data: list[dict[str, Any]], rate: float, seconds: float,
                    events: dict[float, Any] | None = None, sampler: Any = None) -> list[dict[str, Any]]:
    """Requests at ``rate``/s for ``seconds`` (arrival times fixed in advance); ``events``: {t: coroutine fn}."""
    records: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = STARTS[url] = time.perf_counter()
        pending = []
        side = [asyncio.create_task(_at(start + t, fn)) for t, fn in (events or {}).items()]
        if sampler is not None:
            side.append(asyncio.create_task(sampler(start, seconds)))
        n = int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(client, url, data[i % len(data)], start, records, i)))
        await asyncio.gather(*pending)
        await asyncio.gather(*side)
    records.sort(key=lambda r: r["i"])
    return records


async def _at(when: float, fn: Any) -> None:
    await asyncio.sleep(max(0.0, when - time.perf_counter()))
    await fn()


def raw_get(port: int, path: str) -> float:
    """Milliseconds for one GET on a fresh socket (no client pool): the server's own responsiveness."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        while sock.recv(65536):
            pass
    return 1000 * (time.perf_counter() - t0)


def histogram_quantiles(text: str) -> dict[str, Any]:
    """p50/p99 upper bucket bounds of the server's own latency histogram (all tasks; handler start to answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[float, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "mtbranch_task_latency_seconds":
            for smp in fam.samples:
                if smp.name.endswith("_bucket"):
                    le = float(smp.labels["le"])
                    buckets[le] = buckets.get(le, 0) + smp.value
    total = buckets.get(float("inf"), 0)
    out: dict[str, Any] = {"observations": int(total)}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}_le_s"] = next((le for le in sorted(buckets) if buckets[le] >= q * total), None)
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(1000 * v[min(len(v) - 1, int(q * len(v)))], 1)


def summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r["latency"] for r in recs if r.get("status") == 200]
    statuses: dict[str, int] = {}
    for r in recs:
        key = str(r.get("status")) + (f" {r['json'].get('error', '')[:40]}" if isinstance(r.get("json"), dict)
                                      and r.get("status") != 200 else "")
        statuses[key] = statuses.get(key, 0) + 1
    return {"requests": len(recs), "answered_200": len(ok), "p50_ms": pct(ok, 0.5), "p99_ms": pct(ok, 0.99),
            "statuses": statuses}


def capacity(url: str, data: list[dict[str, Any]], seconds: float) -> float:
    async def run() -> float:
        done = 0
        stop = time.perf_counter() + seconds
        async with httpx.AsyncClient(timeout=60) as client:
            async def worker(k: int) -> None:
                nonlocal done
                i = k
                while time.perf_counter() < stop:
                    r = await client.post(url + "/predict", json=data[i % len(data)])
                    assert r.status_code == 200, r.text
                    done += 1
                    i += 16
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(16)))
            return done / (time.perf_counter() - t0)
    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--duration-s", type=float, default=120)
    ap.add_argument("--probe-s", type=float, default=10)
    ap.add_argument("--load", type=float, default=0.5, help="arrival rate of the steady phases, x capacity")
    ap.add_argument("--overload", type=float, default=3.0)
    ap.add_argument("--overload-s", type=float, default=30)
    ap.add_argument("--recover-s", type=float, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-queue", type=int, default=64)
    ap.add_argument("--grace", type=float, default=10)
    ap.add_argument("--drain-delay", type=float, default=1.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    import mtbranch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="serve-ops-"))
    art = work / "composed"
    shutil.copytree(args.artifact, art)
    v2_dir = make_v2(args.artifact, work)
    data = bodies(256)
    import hashlib

    def references() -> str:
        m = mtbranch.load(art, backend="torch", dtype="float32")
        version = hashlib.sha256((art / "mtbranch.lock.json").read_bytes()).hexdigest()
        refs[version] = [m.predict(b["texts"], tasks=b["tasks"], text_pairs=b.get("text_pairs")) for b in data]
        return version

    refs: dict[str, list[Any]] = {}
    v1 = references()
    report: dict[str, Any] = {"artifact": str(args.artifact), "cpus": os.cpu_count(),
                              "python": platform.python_version(), "torch_threads_per_server": args.threads,
                              "max_queue": args.max_queue,
                              "grace_s": args.grace, "drain_delay_s": args.drain_delay, "v1": v1}

    # 1-2: capacity, then the steady run with a hot swap half-way and SIGTERM at the end
    srv = Served(art, args, work / "server1.log")
    try:
        cap = capacity(srv.url, data, args.probe_s)
        rate = args.load * cap
        report["capacity_rps"] = round(cap, 1)
        report["steady_rate_rps"] = round(rate, 1)
        print(f"capacity {cap:.1f} req/s; steady {rate:.1f} req/s", file=sys.stderr)
        marks: dict[str, float] = {}
        # `mtbranch update` rewrites the served artifact on disk (atomically) before the run: the server keeps
        # answering from the version in memory until POST /admin/reload half-way through
        subprocess.run([sys.executable, "-m", "mtbranch.cli.main", "update", str(art), "--put", str(v2_dir)],
                       check=True, capture_output=True)
        v2 = references()
        report["v2"] = v2

        async def swap() -> None:
            marks["swap_start"] = time.perf_counter()
            async with httpx.AsyncClient(timeout=120) as c:
                r = await c.post(srv.url + "/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
            marks["swap_end"] = time.perf_counter()
            report["reload"] = r.json()
            swapped.set()

        burst_recs: list[dict[str, Any]] = []

        async def burst() -> None:  # 24 requests in flight when SIGTERM comes
            async with httpx.AsyncClient(timeout=60) as c:
                t0 = time.perf_counter()
                await asyncio.gather(*(one(c, srv.url, data[k], t0, burst_recs, k) for k in range(24)))

        async def term() -> None:
            await swapped.wait()  # a short --duration-s: SIGTERM waits for the swap
            marks["sigterm"] = time.perf_counter()
            srv.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with httpx.AsyncClient(timeout=10) as c:
                report["ready_status_0.2s_after_sigterm"] = (await c.get(srv.url + "/ready")).status_code

        swapped = asyncio.Event()
        total = args.duration_s + 3  # arrivals continue 3 s past SIGTERM
        started = time.perf_counter()
        recs = asyncio.run(open_loop(srv.url, data, rate, total,
                                     {args.duration_s / 2: swap, args.duration_s - 0.05: burst,
                                      args.duration_s: term}))
        srv.proc.wait(60)
        report["server_exit_code"] = srv.proc.returncode
        log = (work / "server1.log").read_text()
        report["traceback_in_log"] = "Traceback" in log
    finally:
        srv.stop()
    del started
    # the run's own clock: record "sent" is seconds after the open loop's start
    t_swap0 = marks["swap_start"] - STARTS[srv.url]
    t_swap1 = marks["swap_end"] - STARTS[srv.url]
    t_term = marks["sigterm"] - STARTS[srv.url]
    before = [r for r in recs if r["sent"] < t_swap0]
    during = [r for r in recs if t_swap0 <= r["sent"] < t_swap1 + 1]
    after = [r for r in recs if t_swap1 + 1 <= r["sent"] < t_term]
    steady = before + during + after
    wrong, versions = 0, {v1: 0, v2: 0}
    for r in steady:
        if r.get("status") == 200:
            versions[r["version"]] = versions.get(r["version"], 0) + 1
            if r["version"] not in refs or not close(r["json"]["results"], refs[r["version"]][r["i"] % len(data)]):
                wrong += 1
    tail = [r for r in recs if r["sent"] >= t_term]
    report["hot_swap"] = {
        "duration_s": args.duration_s, "sigterm_at_s": round(t_term, 2), "swap_at_s": round(t_swap0, 2),
        "swap_s": round(t_swap1 - t_swap0, 2),
        "failed": sum(1 for r in steady if r.get("status") != 200),
        "answers_not_matching_their_version": wrong, "answers_by_version": versions,
        "v2_answers_before_swap_started": sum(1 for r in before if r.get("version") == v2),
        "v1_answers_after_swap": sum(1 for r in after if r.get("version") == v1),
        "before": summary(before), "during": summary(during), "after": summary(after)}
    flight = [r for r in recs if r["sent"] < t_term < r["sent"] + r["latency"]]
    report["sigterm"] = {
        "in_flight_at_sigterm": len(flight),
        "in_flight_answered_200": sum(1 for r in flight if r.get("status") == 200),
        "in_flight_other": [r.get("status") for r in flight if r.get("status") != 200],
        "burst_24_just_before_sigterm": {
            "answered_200": sum(1 for r in burst_recs if r.get("status") == 200),
            "answered_503_json": sum(1 for r in burst_recs
                                     if r.get("status") == 503 and isinstance(r.get("json"), dict)),
            "other": [r.get("status") for r in burst_recs if r.get("status") not in (200, 503)]},
        "requests_sent_after_sigterm": len(tail),
        "answered_200": sum(1 for r in tail if r.get("status") == 200),
        "answered_503_json": sum(1 for r in tail if r.get("status") == 503 and isinstance(r.get("json"), dict)
                                 and "error" in r["json"]),
        "refused_after_listener_closed": sum(1 for r in tail if r.get("status") == "refused"),
        "other": [r.get("status") for r in tail if r.get("status") not in (200, 503, "refused")][:10]}
    print(json.dumps({k: report[k] for k in ("hot_swap", "sigterm")}, indent=1), file=sys.stderr)

    # 3: overload on a fresh server, then recovery
    srv = Served(art, args, work / "server2.log")
    try:
        rss: list[float] = [srv.rss_mb()]
        health_ms: list[float] = []

        async def sample(start: float, seconds: float) -> None:
            loop = asyncio.get_running_loop()
            while time.perf_counter() - start < seconds:
                rss.append(srv.rss_mb())
                health_ms.append(await loop.run_in_executor(None, raw_get, srv.port, "/health"))
                await asyncio.sleep(1)

        over = asyncio.run(open_loop(srv.url, data, args.overload * cap, args.overload_s, sampler=sample))
        server_side = histogram_quantiles(httpx.get(srv.url + "/metrics", timeout=30).text)
        rec = asyncio.run(open_loop(srv.url, data, rate, args.recover_s))
        log = (work / "server2.log").read_text()
    finally:
        srv.stop()
    busy = [r for r in over if r.get("status") == 503]
    report["overload"] = {
        "rate_rps": round(args.overload * cap, 1), "seconds": args.overload_s, "requests": len(over),
        "answered_200": sum(1 for r in over if r.get("status") == 200),
        "answered_503": len(busy), "503_with_retry_after_and_json": sum(
            1 for r in busy if r.get("retry_after") and isinstance(r.get("json"), dict) and "error" in r["json"]),
        "other": [r.get("status") for r in over if r.get("status") not in (200, 503)][:10],
        "p50_ms_200": pct([r["latency"] for r in over if r.get("status") == 200], 0.5),
        "p99_ms_200": pct([r["latency"] for r in over if r.get("status") == 200], 0.99),
        "p99_ms_503": pct([r["latency"] for r in busy], 0.99),
        "server_side_latency_200": server_side,
        "health_probe_ms": {"p50": round(sorted(health_ms)[len(health_ms) // 2], 1), "max": round(max(health_ms), 1)},
        "rss_mb_start": round(rss[0]), "rss_mb_max": round(max(rss)), "rss_mb_end": round(rss[-1]),
        "recovery": {**summary(rec), "failed": sum(1 for r in rec if r.get("status") != 200)},
        "traceback_in_log": "Traceback" in log}
    print(json.dumps(report["overload"], indent=1), file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
