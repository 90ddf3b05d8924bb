"""Ray Serve: a real local Ray instance deploys a composed artifact and answers like predict (same schema)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from mtbranch.composition.artifact import load, update_composed
from mtbranch.serve.ray_app import build_app
from mtbranch.serve.schema import Limits

from helpers import free_port, make_branch, make_serving_artifact, results_close

TEXTS = ["the movie was very good !", "bad", "john visited paris and london in the new york city .",
         "a terrible , boring film", "mary works at google in berlin", "it was fun"]
PAIRS = ["a great film", "terrible acting", "mary works at google", "good", "the city", "fun"]




@pytest.fixture(scope="module")
def artifact(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("ray"))


@pytest.mark.slow
def test_ray_serve_deployment_answers_like_predict(artifact: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = load(artifact)
    port = free_port()
    t0 = time.time()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, log_to_driver=False,
             configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(str(artifact), num_replicas=1, max_batch_size=16, batch_wait_timeout_s=0.05,
                        limits=Limits(max_body_bytes=4000, max_texts=10, max_chars=300),
                        dtype="float32")  # the default is auto (bf16 on some CPUs); compared with float32 predict
        serve.run(app, name="mtbranch", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        v1 = hashlib.sha256((artifact / "mtbranch.lock.json").read_bytes()).hexdigest()
        assert httpx.get(url + "/ready", timeout=30).json() == {"status": "ready", "tasks": model.task_names,
                                                                "version": v1}
        started = time.time() - t0

        # one request at a time: exactly predict's results
        for body in ({"texts": TEXTS[:3]}, {"texts": TEXTS[:2], "tasks": ["entities"], "raw": True},
                     {"texts": TEXTS[:2], "text_pairs": PAIRS[:2]}):
            r = httpx.post(url + "/predict", json=body, timeout=30)
            assert r.status_code == 200, r.text
            names = r.json()["tasks"]
            assert results_close(r.json()["results"], model.predict(
                body["texts"], tasks=names, text_pairs=body.get("text_pairs"), raw=body.get("raw", False)))
            assert r.headers["x-mtbranch-version"] == v1

        # concurrent requests: merged by @serve.batch, results still predict's
        bodies = [{"texts": [t]} for t in TEXTS] + [{"texts": [t], "text_pairs": [p], "tasks": ["similarity"]}
                                                    for t, p in zip(TEXTS, PAIRS, strict=True)]
        before = httpx.get(url + "/stats").json()

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))

        responses = asyncio.run(fire())
        after = httpx.get(url + "/stats").json()
        for b, r in zip(bodies, responses, strict=True):
            assert r.status_code == 200, r.text
            want = model.predict(b["texts"], tasks=r.json()["tasks"], text_pairs=b.get("text_pairs"))
            assert results_close(r.json()["results"], want), (b, r.json(), want)
        assert after["requests"] - before["requests"] == len(bodies)
        assert after["predict_calls"] - before["predict_calls"] < len(bodies), (before, after)

        # the same 4xx errors as `mtbranch serve`, and the deployment keeps serving
        for kwargs, status, needle in [
            ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "JSON"),
            ({"json": {"texts": [1]}}, 422, "texts[0]"),
            ({"json": {"texts": ["a"], "tasks": ["nope"]}}, 422, "'nope'"),
            ({"json": {"texts": ["a"], "tasks": ["similarity"]}}, 422, "text_pairs"),
            ({"json": {"texts": ["a"] * 11}}, 413, "limit is 10"),
            ({"content": b'{"texts": ["a"]}', "headers": {"content-type": "text/plain"}}, 415, "not JSON"),
            ({"content": b'{"texts": ' + b"[" * 1000 + b"]" * 1000 + b"}",
              "headers": {"content-type": "application/json"}}, 400, "recursion limit"),
            ({"json": {"texts": ['"' * 250] * 9}}, 413, "limit is 4000"),  # each text fits, the body does not
        ]:
            r = httpx.post(url + "/predict", timeout=30, **kwargs)
            assert r.status_code == status and needle in r.json()["error"], (kwargs, r.status_code, r.text)
        assert httpx.post(url + "/predict", json={"texts": ["good"]}, timeout=30).status_code == 200
        assert "PredictRequest" in httpx.get(url + "/openapi.json").json()["components"]["schemas"]
        assert set(httpx.get(url + "/nope").json()) == {"error", "hint"}

        # hot swap by redeploy: `mtbranch update` on a copy, then serve.run with it and one more replica (Ray starts
        # the new replicas before it stops the old one): no request fails, each answer is one version's
        v2_art = tmp_path / "composed-v2"
        shutil.copytree(artifact, v2_art)
        update_composed(v2_art, put=[make_branch(tiny_bert_dir, tmp_path / "sentiment-v2", name="sentiment", depth=2,
                                                 layers=1, seed=11, version="0.2.0")])
        v2 = hashlib.sha256((v2_art / "mtbranch.lock.json").read_bytes()).hexdigest()
        m2 = load(v2_art)
        want = {v1: model.predict(TEXTS[:2], tasks=["sentiment"]), v2: m2.predict(TEXTS[:2], tasks=["sentiment"])}
        stop = threading.Event()
        seen: list[httpx.Response] = []

        def traffic() -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                while not stop.is_set():
                    seen.append(c.post("/predict", json={"texts": TEXTS[:2], "tasks": ["sentiment"]}))
                    time.sleep(0.05)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            serve.run(build_app(str(v2_art), num_replicas=2, max_batch_size=16, dtype="float32",
                                ray_actor_options={"num_cpus": 0.5}), name="mtbranch", route_prefix="/")
            deadline = time.time() + 60
            while httpx.get(url + "/health").json()["version"] != v2 or any(
                    httpx.get(url + "/health").json()["version"] != v2 for _ in range(4)):
                assert time.time() < deadline, "old replica still serving"
                time.sleep(0.5)
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join()
        assert seen and all(r.status_code == 200 for r in seen), [r.text for r in seen if r.status_code != 200]
        versions = [r.headers["x-mtbranch-version"] for r in seen]
        assert set(versions) <= {v1, v2} and versions[-1] == v2, set(versions)
        for r in seen:
            assert results_close(r.json()["results"], want[r.headers["x-mtbranch-version"]])
        print(f"ray serve ready after {started:.1f}s; {len(seen)} requests across the redeploy, "
              f"{versions.count(v1)} answered by v1, {versions.count(v2)} by v2")
    finally:
        serve.shutdown()
        ray.shutdown()
