"""Fleet load test: what each team costs of one shared `mtbranch serve`, and whether quotas keep teams apart.

    python docs/scripts/fleet_load.py /tmp/fleet/composed --json docs/benchmarks/fleet.json

One server (``mtbranch serve --threads 1 --dtype float32 --quota team-sentiment=2``) on loopback, the example
artifact of eight teams (``mtbranch compose``: the example plugins). Each request is one STS-B dev sentence (with
its pair for the pair teams) and names its team's tasks with ``"owners": [TEAM]``; arrivals are open-loop at fixed
rates (httpx async). Two parts, one server process:

* **cost**: every team at its rate for ``--cost-s`` seconds; then the server's ``/metrics`` counters per owner
  (``mtbranch_task_cpu_seconds_total``, ``mtbranch_task_compute_seconds_total``, ``mtbranch_task_flops_total``)
  against the server process's own CPU time (what the model thread did not spend: HTTP, JSON, tokenizing).
  Monthly cost = the team's CPU-seconds per second of traffic x 730 h x ``--usd-per-cpu-hour`` (an assumed price).
* **fairness**: ``--rounds`` rounds, each three windows: quiet (the victim team alone at its rate), at quota (the
  noisy team also sends at its quota) and burst (the noisy team at 10x its quota). The victim's p50/p99 per kind of
  window (all rounds pooled), and the noisy team's 200s and 429s. Where the victim's time went, per kind of window
  (``diagnosis``): the server's CPU per second (the model thread's, the rest of the process's: HTTP, JSON,
  refusals), the model thread's wall time per batch, the victim's p99 split by whether its request overlapped an
  admitted noisy one, the victim's server-side latency (the server's histogram: share slower than each bound) and
  this client's own event-loop lag. ``--separate-clients``: the noisy team sends from a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from loadtest import free_port, sentences  # the script beside this one (STS-B dev sentences)

PAIR_TEAMS = {"team-paraphrase", "team-similarity"}


def start_server(artifact: str, port: int, quota: str, burst: float | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(Path(sys.executable).parent / "mtbranch"), "serve", artifact, "--port", str(port), "--threads", "1",
           "--dtype", "float32", "--max-batch-wait-ms", "2", "--quota", quota, "--log-level", "warning",
           *(["--quota-burst", f"{burst:g}"] if burst is not None else [])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become ready")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counters(text: str, name: str) -> dict[str, float]:
    """Sum of ``name``'s samples per owner label."""
    out: dict[str, float] = {}
    for owner, value in re.findall(rf'^{name}_total{{owner="([^"]*)",task="[^"]*"}} (\S+)$', text, re.M):
        out[owner] = out.get(owner, 0.0) + float(value)
    return out


async def traffic(url: str, rates: dict[str, float], seconds: float, texts: list[tuple[str, str]],
                  log: list[dict[str, Any]], phases: dict[str, float] | None = None) -> None:
    """Open-loop arrivals: each team at its rate (requests/s), for ``seconds``; ``phases``: each team's offset
    (a fraction of its interval; default: teams spread evenly)."""
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=256)) as client:
        async def one(team: str, k: int) -> None:
            text, pair = texts[k % len(texts)]
            body: dict[str, Any] = {"texts": [text], "owners": [team]}
            if team in PAIR_TEAMS:
                body["text_pairs"] = [pair]
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/predict", json=body)
                code = r.status_code
            except httpx.HTTPError:
                code = -1
            log.append({"team": team, "code": code, "ms": 1000 * (time.perf_counter() - t0), "at": t0})

        async def team_loop(team: str, rate: float, phase: float) -> None:
            """Arrivals at ``(k + phase) / rate``: teams staggered, never all at the same instant."""
            start, k, pending = time.perf_counter(), 0, []
            while (due := start + (k + phase) / rate) < start + seconds:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                pending.append(asyncio.create_task(one(team, k)))
                k += 1
            await asyncio.gather(*pending)

        async def lag_probe() -> None:
            """How late this client's own event loop wakes (a 10 ms sleep's overshoot): time the victim's measured
            latency spends in the load generator, not in the server."""
            end = time.perf_counter() + seconds
            while (t := time.perf_counter()) < end:
                await asyncio.sleep(0.01)
                log.append({"team": "_client_lag", "code": 0, "ms": 1000 * (time.perf_counter() - t - 0.01), "at": t})

        live = [(t, r) for t, r in rates.items() if r > 0]
        phase = phases or {t: (i + 0.5) / len(live) for i, (t, _) in enumerate(live)}
        await asyncio.gather(lag_probe(), *(team_loop(t, r, phase[t]) for t, r in live))


def traffic_apart(url: str, rates: dict[str, float], seconds: float, texts: list[tuple[str, str]],
                  log: list[dict[str, Any]], apart: str) -> None:
    """As :func:`traffic`, with the team ``apart`` sending from a process of its own (its own client, as another
    team would be): its client's work does not delay this process's measurements."""
    live = [t for t, r in rates.items() if r > 0]
    phases = {t: (i + 0.5) / len(live) for i, t in enumerate(live)}
    if apart not in live:
        asyncio.run(traffic(url, rates, seconds, texts, log, phases))
        return
    child = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(
        {"url": url, "team": apart, "rate": rates[apart], "phase": phases[apart], "seconds": seconds})],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    asyncio.run(traffic(url, {t: r for t, r in rates.items() if t != apart}, seconds, texts, log, phases))
    out, _ = child.communicate(timeout=seconds + 120)
    log.extend(r for r in json.loads(out) if r["team"] == apart)


def child_main(spec: dict[str, Any]) -> None:
    print("ready", flush=True)
    log: list[dict[str, Any]] = []
    asyncio.run(traffic(spec["url"], {spec["team"]: spec["rate"]}, spec["seconds"], sentences(400), log,
                        {spec["team"]: spec["phase"]}))
    print(json.dumps(log))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--cost-s", type=float, default=60)
    ap.add_argument("--rate", type=float, default=1.0, help="cost part: requests/s per team")
    ap.add_argument("--usd-per-cpu-hour", type=float, default=0.05, help="assumed price of one vCPU-hour")
    ap.add_argument("--victim", default="team-intent")
    ap.add_argument("--victim-rate", type=float, default=4.0)
    ap.add_argument("--noisy", default="team-sentiment")
    ap.add_argument("--quota", type=float, default=2.0, help="the noisy team's quota (texts/s)")
    ap.add_argument("--quota-burst", type=float, default=None,
                    help="serve --quota-burst: seconds of its quota a bucket holds (default: serve's, 2)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--window-s", type=float, default=15)
    ap.add_argument("--separate-clients", action="store_true",
                    help="fairness: the noisy team sends from a process of its own (default: one client process)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    texts = sentences(400)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.artifact, port, f"{args.noisy}={args.quota:g}", args.quota_burst)
    try:
        tasks = httpx.get(url + "/tasks").json()
        teams = sorted({t["owner"] for t in tasks})
        owners = {team: [t["name"] for t in tasks if t["owner"] == team] for team in teams}
        cost: dict[str, Any] = {}
        if args.cost_s > 0:
            cost = measure_cost(url, server.pid, teams, owners, texts, args)
        fairness = measure_fairness(url, texts, args, server.pid, owners[args.victim][0])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    models = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    out = {"command": " ".join(["python", *sys.argv]), "cpu": models[0] if models else platform.machine(),
           "cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
           "cost": cost, "fairness": fairness}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def measure_cost(url: str, pid: int, teams: list[str], owners: dict[str, list[str]], texts: list[tuple[str, str]],
                 args: argparse.Namespace) -> dict[str, Any]:
    before, cpu0 = httpx.get(url + "/metrics").text, cpu_seconds(pid)
    log: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    asyncio.run(traffic(url, dict.fromkeys(teams, args.rate), args.cost_s, texts, log))
    wall = time.perf_counter() - t0
    after, cpu1 = httpx.get(url + "/metrics").text, cpu_seconds(pid)
    diff = {k: {o: v - counters(before, k).get(o, 0.0) for o, v in counters(after, k).items()}
            for k in ("mtbranch_task_cpu_seconds", "mtbranch_task_compute_seconds", "mtbranch_task_flops")}
    attributed = sum(diff["mtbranch_task_cpu_seconds"].values())
    rows = []
    for team in teams:
        mine = [r for r in log if r["team"] == team]
        ok = [r for r in mine if r["code"] == 200]
        cpu = diff["mtbranch_task_cpu_seconds"].get(team, 0.0)
        rows.append({"team": team, "tasks": owners[team], "requests": len(mine), "ok": len(ok),
                     "p50_ms": round(pct([r["ms"] for r in ok], 50), 1),
                     "cpu_s": round(cpu, 3),
                     "compute_s": round(diff["mtbranch_task_compute_seconds"].get(team, 0.0), 3),
                     "gflops": round(diff["mtbranch_task_flops"].get(team, 0.0) / 1e9, 2),
                     "cpu_ms_per_request": round(1000 * cpu / max(1, len(ok)), 2),
                     "share_of_model_cpu": round(cpu / attributed, 4) if attributed else None,
                     "usd_per_month": round(cpu / wall * 730 * args.usd_per_cpu_hour, 2),
                     "usd_per_million_requests": round(cpu / max(1, len(ok)) * 1e6 / 3600
                                                       * args.usd_per_cpu_hour, 2)})
    return {"seconds": round(wall, 1), "rate_per_team": args.rate, "usd_per_cpu_hour": args.usd_per_cpu_hour,
            "server_process_cpu_s": round(cpu1 - cpu0, 2), "attributed_model_cpu_s": round(attributed, 2),
            "teams": rows}


def server_counters(url: str, pid: int, victim_task: str) -> dict[str, float]:
    """What the server spent so far: process CPU, the model thread's wall and CPU seconds (all tasks), batches,
    and the victim task's server-side latency histogram (route entry to answer: no HTTP parsing, no client)."""
    text = httpx.get(url + "/metrics").text
    stats = httpx.get(url + "/stats").json()
    buckets = {}
    for labels, value in re.findall(r"^mtbranch_task_latency_seconds_bucket{([^}]*)} (\S+)$", text, re.M):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs.get("task") == victim_task:
            buckets[f"le_{pairs['le']}"] = float(value)
    return {"process_cpu_s": cpu_seconds(pid), "batches": stats["batches"],
            "model_wall_s": sum(counters(text, "mtbranch_task_compute_seconds").values()),
            "model_cpu_s": sum(counters(text, "mtbranch_task_cpu_seconds").values()), **buckets}


def overlaps(req: dict[str, Any], others: list[dict[str, Any]]) -> bool:
    end = req["at"] + req["ms"] / 1000
    return any(o["at"] < end and req["at"] < o["at"] + o["ms"] / 1000 for o in others)


def diagnosis(windows: list[dict[str, Any]], kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Where the victim's time went in one kind of window: the server's time per second (model thread's wall and
    CPU, the rest of the process's CPU: HTTP, JSON, tokenizing, refusals), the mean batch, and the victim's p99 split
    by whether its request overlapped an admitted (200) noisy request."""
    mine = [w for w in windows if w["kind"] == kind]
    seconds = sum(w["seconds"] for w in mine)
    spent = {k: sum(w["spent"].get(k, 0.0) for w in mine) for k in {k for w in mine for k in w["spent"]}}
    victims, hit = [], []
    for w in mine:
        admitted = [r for r in w["log"] if r["team"] == args.noisy and r["code"] == 200]
        for r in w["log"]:
            if r["team"] == args.victim and r["code"] == 200:
                (hit if overlaps(r, admitted) else victims).append(r["ms"])
    slowest = sorted([(ms, True) for ms in hit] + [(ms, False) for ms in victims], reverse=True)
    top = slowest[: max(1, len(slowest) // 100)]
    lag = [r["ms"] for w in mine for r in w["log"] if r["team"] == "_client_lag"]
    total = spent.get("le_+Inf", 0.0)
    server_side = {k.removeprefix("le_"): round(1 - v / total, 4) for k, v in spent.items()
                   if k.startswith("le_") and k != "le_+Inf" and 0.05 <= float(k[3:]) <= 0.5} if total else {}
    return {"client_loop_lag_ms_p50": round(pct(lag, 50), 1), "client_loop_lag_ms_p99": round(pct(lag, 99), 1),
            "victim_server_side_share_slower_than_s": server_side,
            "model_wall_ms_per_s": round(1000 * spent["model_wall_s"] / seconds, 1),
            "model_cpu_ms_per_s": round(1000 * spent["model_cpu_s"] / seconds, 1),
            "other_process_cpu_ms_per_s": round(1000 * (spent["process_cpu_s"] - spent["model_cpu_s"]) / seconds, 1),
            "batches": int(spent["batches"]),
            "model_wall_ms_per_batch": round(1000 * spent["model_wall_s"] / max(1, spent["batches"]), 2),
            "victim_overlapping_admitted_noisy": len(hit), "victim_p99_ms_overlapping": round(pct(hit, 99), 1),
            "victim_p99_ms_not_overlapping": round(pct(victims, 99), 1),
            "slowest_1pct_victim_overlapping_admitted_noisy": f"{sum(o for _, o in top)} of {len(top)}"}


def measure_fairness(url: str, texts: list[tuple[str, str]], args: argparse.Namespace,
                     pid: int, victim_task: str) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for kind, noisy_rate in (("quiet", 0.0), ("at_quota", args.quota), ("burst", 10 * args.quota)):
            wlog: list[dict[str, Any]] = []
            rates = {args.victim: args.victim_rate, args.noisy: noisy_rate}
            before, t0 = server_counters(url, pid, victim_task), time.perf_counter()
            if args.separate_clients:
                traffic_apart(url, rates, args.window_s, texts, wlog, args.noisy)
            else:
                asyncio.run(traffic(url, rates, args.window_s, texts, wlog))
            seconds, after = time.perf_counter() - t0, server_counters(url, pid, victim_task)
            windows.append({"round": rnd, "kind": kind, "log": wlog, "seconds": seconds,
                            "spent": {k: after[k] - before.get(k, 0.0) for k in after}})  # a task's first bucket

    def summary(kind: str) -> dict[str, Any]:
        logs = [r for w in windows if w["kind"] == kind for r in w["log"]]
        victim = [r["ms"] for r in logs if r["team"] == args.victim and r["code"] == 200]
        noisy = [r for r in logs if r["team"] == args.noisy]
        per_round = [pct([r["ms"] for r in w["log"] if r["team"] == args.victim and r["code"] == 200], 99)
                     for w in windows if w["kind"] == kind]
        return {"victim_requests": len([r for r in logs if r["team"] == args.victim]),
                "victim_ok": len(victim), "victim_p50_ms": round(pct(victim, 50), 1),
                "victim_p95_ms": round(pct(victim, 95), 1), "victim_p99_ms": round(pct(victim, 99), 1),
                "victim_p99_ms_median_of_windows": round(statistics.median(per_round), 1),
                "noisy_requests": len(noisy), "noisy_200": sum(r["code"] == 200 for r in noisy),
                "noisy_429": sum(r["code"] == 429 for r in noisy),
                "noisy_other": sum(r["code"] not in (200, 429) for r in noisy),
                "diagnosis": diagnosis(windows, kind, args)}

    quiet, at_quota, burst = summary("quiet"), summary("at_quota"), summary("burst")
    fairness = {"victim": args.victim, "victim_rate": args.victim_rate, "noisy": args.noisy,
                "noisy_quota_texts_per_s": args.quota, "quota_burst_s": args.quota_burst,
                "noisy_rate": 10 * args.quota, "rounds": args.rounds,
                "separate_clients": args.separate_clients,
                "window_s": args.window_s, "quiet": quiet, "at_quota": at_quota, "burst": burst,
                "p99_burst_over_quiet": round(burst["victim_p99_ms"] / quiet["victim_p99_ms"], 3),
                "p99_burst_over_at_quota": round(burst["victim_p99_ms"] / at_quota["victim_p99_ms"], 3)}
    return fairness


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(json.loads(sys.argv[2]))
    else:
        main()
