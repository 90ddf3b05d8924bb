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

Backends compared the same way (issue 31: the default, auto, vs the old default, torch float32), a dtype written
``BACKEND:DTYPE``:

    python docs/scripts/loadtest.py out/composed --compare-dtypes auto:auto,torch:float32 --requests 200 \
        --dtype-rounds 2 --concurrency 16 --threads 1

Two checkouts of mtbranch compared (a change's before and after): one composed server per checkout, run from this
venv with ``PYTHONPATH`` pointing at the checkout's own ``mtbranch`` package, the composed scenarios (all tasks,
one task) taking turns round by round:

    python docs/scripts/loadtest.py out/composed --compare-code before=../wt-base,after=. --requests 300 \
        --dtype-rounds 3 --concurrency 16 --threads 1
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
    def __init__(self, artifact: str, tasks: list[str], args: argparse.Namespace, dtype: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.label = ",".join(tasks) or "all"
        # a dtype "BACKEND:DTYPE" also names the backend (--compare-dtypes auto:auto,torch:float32); a plain dtype
        # runs torch, as every figure measured before the backends existed (by the environment: a checkout older
        # than --backend ignores it)
        backend, _, dtype = (dtype or args.dtype).rpartition(":")
        cmd = [sys.executable, "-m", "mtbranch.cli.main", "serve", artifact, "--port", str(self.port),
               "--threads", str(args.threads), "--max-batch-size", str(args.max_batch_size),
               "--max-batch-wait-ms", str(args.max_batch_wait_ms), "--log-level", "warning",
               "--dtype", dtype, *(["--backend", backend] if backend else [])]
        for t in tasks:
            cmd += ["--task", t]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
               **({} if backend else {"MTBRANCH_BACKEND": "torch"}), **(env or {})}
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


def code_overlay(checkout: Path, into: Path) -> Path:
    """A ``PYTHONPATH`` entry importing ``mtbranch`` from ``checkout``, laid out as its pyproject's ``package-dir``
    says (core/ is the package, plugins/, sdk/, cli/ its subpackages), so one venv serves two checkouts."""
    import tomllib

    dirs = tomllib.loads((checkout / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    package = into / "mtbranch"
    package.mkdir(parents=True)
    for entry in (checkout / dirs["mtbranch"]).iterdir():
        (package / entry.name).symlink_to(entry.resolve())
    for name, folder in dirs.items():
        if name != "mtbranch":
            (package / name.split(".", 1)[1]).symlink_to((checkout / folder).resolve())
    return into


def checkout_info(checkout: Path, env: dict[str, str]) -> dict[str, Any]:
    """The commit of ``checkout`` and where a server started with ``env`` imports the engine from."""
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    where = subprocess.run([sys.executable, "-c", "import os, mtbranch.serve.batching as b; "
                            "print(os.path.realpath(b.__file__))"], env={**os.environ, **env},
                           capture_output=True, text=True, check=True).stdout.strip()
    return {"checkout": str(checkout.resolve()), "commit": commit.stdout.strip(), "dirty": bool(dirty),
            "imports": where}


def lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Hypervisor vendor")
    rows = (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
    return {k.strip(): v.strip() for k, v in rows if k.strip() in keep}


def compare_code(args: argparse.Namespace) -> None:
    """One composed server per checkout (``NAME=DIR``), every server on the same artifact, dtype and settings; per
    round, each checkout runs the composed scenarios (all tasks; ``--one-task``) in turn, the order alternating."""
    import tempfile

    from mtbranch.composition.artifact import read_lock
    from mtbranch.spec.precision import cpu_report

    variants = dict(item.split("=", 1) for item in args.compare_code.split(",") if item.strip())
    lock = read_lock(args.artifact).to_dict()
    pair_tasks = {e["name"] for e in lock["branches"]
                  if json.loads((Path(args.artifact) / "branches" / e["name"] / "manifest.json").read_text())
                  ["tokenizer"]["input_signature"] == "pair"}
    one = args.one_task
    bodies = {"composed, all tasks": lambda a, b: {"texts": [a], "text_pairs": [b]},
              f"composed, one task ({one})": lambda a, b: {"texts": [a], "tasks": [one],
                                                           **({"text_pairs": [b]} if one in pair_tasks else {})}}
    data = sentences(max(args.requests, 64))
    servers: dict[str, Server] = {}
    info: dict[str, Any] = {}
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {v: {s: [] for s in bodies} for v in variants}
    latencies: dict[str, dict[str, list[float]]] = {v: {s: [] for s in bodies} for v in variants}
    with tempfile.TemporaryDirectory(prefix="mtbranch-code-") as tmp:
        try:
            for name, checkout in variants.items():
                env = {"PYTHONPATH": str(code_overlay(Path(checkout), Path(tmp) / name))}
                info[name] = checkout_info(Path(checkout), env)
                servers[name] = Server(args.artifact, [], args, env=env)
            for srv in servers.values():
                srv.wait_ready()
            rss = {k: round(srv.rss_mb()) for k, srv in servers.items()}
            names = list(variants)
            for r in range(args.dtype_rounds):
                for name in (names if r % 2 == 0 else names[::-1]):
                    for scenario, make in bodies.items():
                        url = servers[name].url

                        async def fire(c: httpx.AsyncClient, i: int, url: str = url, make: Any = make) -> None:
                            await post(c, url, make(*data[i % len(data)]))

                        before = servers[name].stats()
                        res = asyncio.run(run_scenario(fire, args.requests, args.concurrency,
                                                       warmup=args.concurrency, keep=latencies[name][scenario]))
                        after = servers[name].stats()
                        calls = after["predict_calls"] - before["predict_calls"]
                        res["requests_per_model_call"] = round((after["requests"] - before["requests"]) / calls, 2) \
                            if calls else None
                        rounds[name][scenario].append(res)
                        print(f"round {r + 1} {name} {scenario}: {res}", file=sys.stderr)
        finally:
            for srv in servers.values():
                srv.stop()
    summary: dict[str, dict[str, Any]] = {}
    first = next(iter(variants))
    for name in variants:
        summary[name] = {}
        for scenario in bodies:
            lat = sorted(latencies[name][scenario])
            secs = sum(x["seconds"] for x in rounds[name][scenario])
            summary[name][scenario] = {
                "throughput": round(len(lat) / secs, 1) if secs else None,
                "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None,
                "errors": sum(x["errors"] for x in rounds[name][scenario]),
                "round_throughputs": [x["throughput"] for x in rounds[name][scenario]]}
    for name in variants:
        for scenario in bodies:
            base = summary[first][scenario]["throughput"]
            summary[name][scenario]["throughput_vs_" + first] = \
                round(summary[name][scenario]["throughput"] / base, 3) if base else None
    report = {"command": "python docs/scripts/loadtest.py " + " ".join(sys.argv[1:]), "artifact": args.artifact,
              "variants": info, "requests_per_round": args.requests, "rounds": args.dtype_rounds,
              "concurrency": args.concurrency, "threads_per_server": args.threads, "dtype": args.dtype,
              "max_batch_size": args.max_batch_size, "max_batch_wait_ms": args.max_batch_wait_ms,
              "cpus": os.cpu_count(), "python": platform.python_version(), "lscpu": lscpu(),
              "machine": cpu_report(), "loadavg_end": os.getloadavg(), "rss_mb": rss, "summary": summary,
              "rounds_detail": rounds}
    print(json.dumps(report, indent=2))
    print(f"\n| code | scenario | sentences/s | p50 ms | p99 ms | errors | throughput vs {first} |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, per in summary.items():
        for scenario, x in per.items():
            print(f"| {name} | {scenario} | {x['throughput']} | {x['p50_ms']} | {x['p99_ms']} | {x['errors']} | "
                  f"{x['throughput_vs_' + first]}x |")
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
    ap.add_argument("--compare-code", default=None, metavar="NAME=DIR,...",
                    help="instead: one composed server per mtbranch checkout (e.g. before=../base,after=.), the "
                         "composed scenarios taking turns for --dtype-rounds rounds")
    ap.add_argument("--dtype-rounds", type=int, default=2, help="rounds of --compare-dtypes / --compare-code")
    args = ap.parse_args()
    if args.compare_dtypes:
        compare_dtypes(args)
        return
    if args.compare_code:
        compare_code(args)
        return

    from mtbranch.composition.artifact import read_lock

    lock = read_lock(args.artifact).to_dict()
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
