"""`mtbranch serve` operations: /metrics, backpressure, timeouts, hot swap, SIGTERM drain (real subprocess)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_serve import Server

from mtbranch.composition.artifact import load, update_composed
from mtbranch.serve.app import ServeSettings, create_app

from helpers import free_port, make_branch, make_serving_artifact, results_close

TEXTS = ["the movie was very good !", "bad", "john visited paris and london .", "a terrible , boring film"]
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def base(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ops")
    make_serving_artifact(tiny_bert_dir, base)
    make_branch(tiny_bert_dir, base / "sentiment-v2", name="sentiment", depth=2, layers=1, seed=11, version="0.2.0")
    return base


def fresh_artifact(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "composed"
    shutil.copytree(base / "composed", out)
    return out


class SlowModel:
    """The loaded model with every trunk layer delayed (so requests pile up); other attributes pass through."""

    def __init__(self, model: Any, delay: float) -> None:
        self._model = model
        self.trunk = _SlowTrunk(model.trunk, delay)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class _SlowTrunk:
    def __init__(self, trunk: Any, delay: float) -> None:
        self._trunk, self.delay = trunk, delay

    def run_layer(self, k: int, hidden: Any, mask4d: Any) -> Any:
        time.sleep(self.delay)
        return self._trunk.run_layer(k, hidden, mask4d)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trunk, name)


def families(url: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(httpx.get(url + "/metrics").text)}


def sample(fams: dict[str, Any], name: str, **labels: str) -> float:
    total = 0.0
    for fam in fams.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_metrics_scraped_by_prometheus_parser(base: Path, tmp_path: Path) -> None:
    art = fresh_artifact(base, tmp_path)
    with Server(create_app(load(art), artifact=art)) as s:
        for body in ({"texts": TEXTS[:2], "tasks": ["sentiment"]}, {"texts": TEXTS, "tasks": ["entities"]}):
            assert httpx.post(s.url + "/predict", json=body).status_code == 200
        assert httpx.post(s.url + "/predict", json={"texts": [1]}).status_code == 422
        assert httpx.post(s.url + "/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        fams = families(s.url)
    assert sample(fams, "mtbranch_requests_total", path="/predict", code="200") == 2
    assert sample(fams, "mtbranch_requests_total", path="/predict", code="422") == 1
    assert sample(fams, "mtbranch_requests_total", path="/predict", code="415") == 1
    assert sample(fams, "mtbranch_task_latency_seconds_count", task="sentiment") == 1
    assert sample(fams, "mtbranch_task_latency_seconds_count", task="entities") == 1
    assert sample(fams, "mtbranch_batch_sequences_sum") == 2 + 4  # every sequence went through one pass
    assert sample(fams, "mtbranch_batch_tokens_count") == sample(fams, "mtbranch_batch_sequences_count") >= 1
    assert sample(fams, "mtbranch_queue_depth") == 0 and sample(fams, "mtbranch_ready") == 1
    version = hashlib.sha256((art / "mtbranch.lock.json").read_bytes()).hexdigest()
    assert sample(fams, "mtbranch_model_info", lock_sha256=version) == 1


def test_backpressure_503_with_retry_after_then_recovers(base: Path, tmp_path: Path) -> None:
    settings = ServeSettings(max_queue=2, max_batch_size=1, max_batch_wait_ms=0)
    with Server(create_app(SlowModel(load(base / "composed"), 0.3), settings=settings)) as s:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
                return await asyncio.gather(*(c.post("/predict", json={"texts": [t], "tasks": ["sentiment"]})
                                              for t in TEXTS * 2))

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 2 and set(codes) <= {200, 503}, codes
        busy = [r for r in responses if r.status_code == 503]
        assert busy and all(int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"] for r in busy)
        assert httpx.post(s.url + "/predict", json={"texts": ["good"], "tasks": ["sentiment"]}).status_code == 200
        assert sample(families(s.url), "mtbranch_rejected_total", reason="queue_full") == len(busy)


def test_request_timeout_is_503_and_the_request_is_dropped(base: Path) -> None:
    settings = ServeSettings(request_timeout_s=0.2, max_batch_size=1, max_batch_wait_ms=0)
    with Server(create_app(SlowModel(load(base / "composed"), 0.3), settings=settings)) as s:
        r = httpx.post(s.url + "/predict", json={"texts": ["good"], "tasks": ["sentiment"]}, timeout=30)
        assert r.status_code == 503 and "timeout" in r.json()["error"] and r.headers["retry-after"]


def test_slow_body_gets_408_and_silent_connection_is_closed(base: Path) -> None:
    settings = ServeSettings(read_timeout_s=0.5)
    app = create_app(load(base / "composed"), settings=settings)
    port = free_port()
    import uvicorn

    from mtbranch.serve.server import h11_with_read_timeout

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           http=h11_with_read_timeout(0.5)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # headers, then half a body
            sock.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: 40\r\n\r\n{\"texts\":")
            t0 = time.time()
            reply = sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408") and b"not received within" in reply, reply
            assert time.time() - t0 < 5
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # a head that never ends
            sock.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\n")
            t0 = time.time()
            assert sock.recv(4096) == b""  # closed by the server
            assert time.time() - t0 < 5
    finally:
        server.should_exit = True
        thread.join(10)


def test_hot_swap_verified_one_version_per_response(base: Path, tmp_path: Path) -> None:
    art = fresh_artifact(base, tmp_path)
    v1 = hashlib.sha256((art / "mtbranch.lock.json").read_bytes()).hexdigest()
    m1 = load(art)
    settings = ServeSettings(admin_token=TOKEN, max_batch_wait_ms=20)
    with Server(create_app(m1, artifact=art, settings=settings)) as s:
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.post(s.url + "/admin/reload").status_code == 401
        assert httpx.post(s.url + "/admin/reload", headers={"authorization": "Bearer nope"}).status_code == 401
        assert httpx.post(s.url + "/admin/reload", headers=auth, timeout=60).json()["status"] == "unchanged"

        update_composed(art, put=[base / "sentiment-v2"])  # `mtbranch update`, while serving
        v2 = hashlib.sha256((art / "mtbranch.lock.json").read_bytes()).hexdigest()
        m2 = load(art)
        stop = threading.Event()
        seen: list[httpx.Response] = []

        def traffic() -> None:
            with httpx.Client(base_url=s.url, timeout=30) as c:
                while not stop.is_set():
                    seen.append(c.post("/predict", json={"texts": TEXTS[:2], "tasks": ["sentiment", "entities"]}))

        threads = [threading.Thread(target=traffic) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        r = httpx.post(s.url + "/admin/reload", headers=auth, timeout=60)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert r.status_code == 200 and r.json()["status"] == "swapped", r.text
        assert r.json()["previous"] == v1 and r.json()["version"] == v2
        health = httpx.get(s.url + "/health").json()
        assert health["version"] == v2 and health["last_reload"]["ok"] is True
        want = {v: m.predict(TEXTS[:2], tasks=["sentiment", "entities"]) for v, m in ((v1, m1), (v2, m2))}
        assert want[v1][0]["sentiment"] != want[v2][0]["sentiment"]  # the versions answer differently
        versions = [x.headers["x-mtbranch-version"] for x in seen]
        assert all(x.status_code == 200 for x in seen) and {v1, v2} == set(versions), (len(seen), set(versions))
        for x in seen:  # each answer is entirely the version its header names
            assert results_close(x.json()["results"], want[x.headers["x-mtbranch-version"]])

        # a failed verification keeps the old version serving and says why
        weights = art / "branches" / "sentiment" / "branch.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        (tmp := weights.with_suffix(".tmp")).write_bytes(bytes(data))  # a new file: the served one is memory-mapped
        os.replace(tmp, weights)
        bad = httpx.post(s.url + "/admin/reload", headers=auth, timeout=60)
        assert bad.status_code == 409 and "sha256" in bad.json()["error"] and v2 in bad.json()["error"], bad.text
        health = httpx.get(s.url + "/health").json()
        assert health["version"] == v2 and health["last_reload"]["ok"] is False
        assert "branch.safetensors" in health["last_reload"]["error"]
        ok = httpx.post(s.url + "/predict", json={"texts": TEXTS[:2], "tasks": ["sentiment", "entities"]})
        assert ok.headers["x-mtbranch-version"] == v2 and results_close(ok.json()["results"], want[v2])
        assert sample(families(s.url), "mtbranch_reloads_total", result="failed") == 1


def test_admin_endpoint_off_without_token(base: Path) -> None:
    with Server(create_app(load(base / "composed"), artifact=base / "composed")) as s:
        r = httpx.post(s.url + "/admin/reload")
        assert r.status_code == 403 and "disabled" in r.json()["error"]


def _start(artifact: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mtbranch.cli.main", "serve", str(artifact), "--port", str(port),
                             "--threads", "1", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "serve did not become ready"
        time.sleep(0.1)


def _fire(url: str, n: int) -> tuple[list[Any], list[threading.Thread]]:
    out: list[Any] = [None] * n

    def one(i: int) -> None:
        try:
            out[i] = httpx.post(url + "/predict", json={"texts": [TEXTS[i % 4]], "tasks": ["sentiment"]}, timeout=30)
        except httpx.HTTPError as exc:
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return out, threads


@pytest.mark.slow
@pytest.mark.parametrize(("grace", "expect"), [("10", 200), ("0.3", 503)])
def test_sigterm_drains_in_flight_requests(base: Path, grace: str, expect: int) -> None:
    """Requests held in the batcher (a 2 s batch wait) when SIGTERM comes: readiness goes 503 first; with a long
    grace every one is answered 200, with a short one 503 JSON; exit 0, no traceback in the log."""
    proc, url = _start(base / "composed", "--max-batch-wait-ms", "2000", "--grace", grace, "--drain-delay", "0.5")
    try:
        out, threads = _fire(url, 4)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        ready = httpx.get(url + "/ready", timeout=5)  # the listener is still open during the drain delay
        assert ready.status_code == 503 and ready.json()["error"] == "shutting down"
        for t in threads:
            t.join(30)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "CancelledError" not in err, err
    assert [r.status_code for r in out] == [expect] * 4, [getattr(r, "text", r) for r in out]
    if expect == 503:
        assert all(r.json()["error"] == "the server is shutting down" and r.headers["retry-after"] for r in out)
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)
