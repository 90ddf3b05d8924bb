"""`mtbranch serve`: a real uvicorn on a free loopback port; batching, equality with predict, 4xx for bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mtbranch.composition.artifact import load
from mtbranch.serve.app import ServeSettings, create_app
from mtbranch.serve.schema import Limits

from helpers import Server, free_port, make_serving_artifact, results_close

TEXTS = ["the movie was very good !", "bad", "john visited paris and london in the new york city .",
         "a terrible , boring film", "mary works at google in berlin", "it was fun", "not good", "the actor"]
PAIRS = ["a great film", "terrible acting", "mary works at google", "good", "the city", "fun", "bad", "an actor"]
LIMITS = Limits(max_body_bytes=4000, max_texts=20, max_chars=300)


@pytest.fixture(scope="module")
def artifact(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("serve"))



class CountingModel:
    """The loaded model with predict calls counted (every other attribute passes through)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.calls: list[int] = []

    def predict(self, texts: list[str], **kw: Any) -> list[dict[str, Any]]:
        self.calls.append(len(texts))
        return self._model.predict(texts, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def model(artifact: Path) -> Any:
    return load(artifact)


@pytest.fixture(scope="module")
def server(model: Any) -> Iterator[tuple[Server, CountingModel]]:
    counting = CountingModel(model)
    app = create_app(counting, settings=ServeSettings(max_batch_size=64, max_batch_wait_ms=50, limits=LIMITS))
    with Server(app) as s:
        yield s, counting



def test_health_ready_tasks_openapi(server: tuple[Server, CountingModel]) -> None:
    s, _ = server
    health = httpx.get(s.url + "/health").json()
    assert health["status"] == "ok" and len(health["version"]) == 64 and health["last_reload"] is None
    ready = httpx.get(s.url + "/ready").json()
    assert ready["status"] == "ready" and set(ready["tasks"]) == {"sentiment", "entities", "similarity"}
    tasks = {t["name"]: t for t in httpx.get(s.url + "/tasks").json()}
    assert tasks["similarity"]["signature"] == "pair" and tasks["entities"]["head"] == "token_classification"
    spec = httpx.get(s.url + "/openapi.json").json()
    assert spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"}
    assert set(spec["components"]["schemas"]["PredictRequest"]["properties"]) == {"texts", "words", "tasks",
                                                                                  "owners", "tags", "text_pairs", "raw"}
    assert {"422", "413", "400"} <= set(spec["paths"]["/predict"]["post"]["responses"])


@pytest.mark.parametrize("body", [
    {"texts": TEXTS[:3]},                                                # default: every single-text task
    {"texts": TEXTS[:2], "tasks": ["entities"]},
    {"texts": TEXTS[:2], "text_pairs": PAIRS[:2]},                       # default with pairs: every task
    {"texts": TEXTS[:2], "text_pairs": PAIRS[:2], "tasks": ["similarity"], "raw": True},
])
def test_predict_equals_model_predict(server: tuple[Server, CountingModel], model: Any, body: dict) -> None:
    s, _ = server
    r = httpx.post(s.url + "/predict", json=body)
    assert r.status_code == 200, r.text
    tasks = body.get("tasks") or [b.name for b in model.branches
                                  if "text_pairs" in body or b.manifest.tokenizer.input_signature == "single"]
    assert set(r.json()["tasks"]) == set(tasks)
    want = model.predict(body["texts"], tasks=tasks, text_pairs=body.get("text_pairs"), raw=body.get("raw", False))
    # a shared trunk pass pads single and pair sequences together: equal up to float rounding
    assert results_close(r.json()["results"], want), (r.json()["results"], want)
    assert r.headers["x-mtbranch-version"] == httpx.get(s.url + "/health").json()["version"]


def test_concurrent_requests_are_batched(server: tuple[Server, CountingModel], model: Any) -> None:
    s, counting = server
    bodies = [{"texts": [t]} for t in TEXTS] + [{"texts": [t], "tasks": ["sentiment"]} for t in TEXTS]
    bodies += [{"texts": [t], "text_pairs": [p], "tasks": ["similarity"]} for t, p in zip(TEXTS, PAIRS, strict=True)]
    before_calls = len(counting.calls)
    before = httpx.get(s.url + "/stats").json()

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))

    responses = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert counting.calls[before_calls:] == []  # served by shared trunk passes, not by predict
    after = httpx.get(s.url + "/stats").json()
    assert after["requests"] - before["requests"] == len(bodies)
    passes = after["predict_calls"] - before["predict_calls"]
    assert 1 <= passes < len(bodies) / 2, (before, after)  # 24 requests of 3 task sets: a few shared passes
    assert after["texts"] - before["texts"] == len(bodies)
    for b, r in zip(bodies, responses, strict=True):
        want = model.predict(b["texts"], tasks=b.get("tasks") or ["sentiment", "entities"],
                             text_pairs=b.get("text_pairs"))
        assert results_close(r.json()["results"], want), (b, r.json(), want)


BAD: list[tuple[str, dict[str, Any], int, str]] = [
    ("bad json", {"content": b'{"texts": ["a"', "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ("not json at all", {"content": b"hello", "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ("texts not a list", {"json": {"texts": "a film"}}, 422, "texts"),
    ("number in texts", {"json": {"texts": ["ok", 3]}}, 422, "texts[1]"),
    ("null text", {"json": {"texts": [None]}}, 422, "texts[0]"),
    ("raw not a bool", {"json": {"texts": ["a"], "raw": "yes"}}, 422, "raw"),
    ("tasks not a list", {"json": {"texts": ["a"], "tasks": "sentiment"}}, 422, "tasks"),
    ("misspelt texts", {"json": {"text": ["a"]}}, 422, "text: Extra inputs"),
    ("neither texts nor words", {"json": {"raw": True}}, 422, "texts or words"),
    ("texts and words", {"json": {"texts": ["a"], "words": [["a"]]}}, 422, "texts or words"),
    ("a word with a space", {"json": {"words": [["new york"]]}}, 422, "not a word"),
    ("body is a list", {"json": ["a", "b"]}, 422, "body"),
    ("empty texts", {"json": {"texts": []}}, 422, "empty"),
    ("empty tasks", {"json": {"texts": ["a"], "tasks": []}}, 422, "tasks"),
    ("unknown task", {"json": {"texts": ["a"], "tasks": ["sentiment", "nope"]}}, 422, "'nope'"),
    ("pair task without pairs", {"json": {"texts": ["a"], "tasks": ["similarity"]}}, 422, "text_pairs"),
    ("pairs length", {"json": {"texts": ["a", "b"], "text_pairs": ["c"]}}, 422, "text_pairs"),
    ("too many texts", {"json": {"texts": ["a"] * 21}}, 413, "limit is 20"),
    ("too long text", {"json": {"texts": ["a", "b" * 301]}}, 413, "texts[1]"),
    ("too long pair", {"json": {"texts": ["a"], "text_pairs": ["b" * 301]}}, 413, "text_pairs[0]"),
    ("oversized body", {"json": {"texts": ["word " * 50] * 19}}, 413, "limit is 4000"),
    ("wrong content type", {"content": b'{"texts": ["a"]}', "headers": {"content-type": "text/plain"}}, 415,
     "not JSON"),
    ("form body", {"data": {"texts": "a"}}, 415, "application/x-www-form-urlencoded"),
    ("latin-1 charset", {"content": b"{}", "headers": {"content-type": "application/json; charset=latin-1"}},
     415, "charset"),
    ("empty body", {"content": b"", "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ("deep nesting", {"content": b'{"texts": ' + b"[" * 1000 + b"]" * 1000 + b"}",
                      "headers": {"content-type": "application/json"}}, 400, "recursion limit"),
    ("huge integer", {"content": b'{"texts": [' + b"9" * 3000 + b"]}", "headers": {"content-type": "application/json"}},
     422, "texts[0]"),
    ("invalid utf-8", {"content": b'{"texts": ["\xff\xfe"]}', "headers": {"content-type": "application/json"}},
     400, "JSON"),
    ("oversized chunked body", {"content": iter([b'{"texts": ["', b"x" * 5000, b'"]}']),
                                "headers": {"content-type": "application/json"}}, 413, "limit is 4000"),
]


@pytest.mark.parametrize(("case", "kwargs", "status", "needle"), BAD, ids=[b[0] for b in BAD])
def test_malformed_requests_get_4xx_and_server_keeps_serving(server: tuple[Server, CountingModel], case: str,
                                                              kwargs: dict[str, Any], status: int,
                                                              needle: str) -> None:
    s, _ = server
    r = httpx.post(s.url + "/predict", **kwargs)
    assert r.status_code == status, (case, r.status_code, r.text)
    body = r.json()
    assert needle in body["error"], body
    ok = httpx.post(s.url + "/predict", json={"texts": ["the movie was good"], "tasks": ["sentiment"]})
    assert ok.status_code == 200 and ok.json()["results"][0]["sentiment"]["label"] in ("negative", "positive")


def test_wrong_method_and_path(server: tuple[Server, CountingModel]) -> None:
    s, _ = server
    for r, code in ((httpx.get(s.url + "/predict"), 405), (httpx.post(s.url + "/nope", json={}), 404)):
        assert r.status_code == code and set(r.json()) == {"error", "hint"}, r.text


def test_every_error_status_is_in_the_openapi_document(server: tuple[Server, CountingModel]) -> None:
    s, _ = server
    spec = httpx.get(s.url + "/openapi.json").json()
    documented = set(spec["paths"]["/predict"]["post"]["responses"])
    assert {str(status) for _, _, status, _ in BAD} | {"503"} <= documented
    for code in documented - {"200"}:
        assert spec["paths"]["/predict"]["post"]["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}


def test_readiness_follows_background_load(artifact: Path, tmp_path: Path) -> None:
    app = create_app(artifact=str(artifact))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        deadline = time.time() + 30
        while client.get("/ready").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.05)
        assert client.post("/predict", json={"texts": ["good"]}).status_code == 200
    broken = tmp_path / "broken"
    broken.mkdir()
    with TestClient(create_app(artifact=str(broken))) as client:
        assert client.get("/health").status_code == 200
        deadline = time.time() + 10
        while "failed" not in (r := client.get("/ready")).json()["error"]:
            assert time.time() < deadline
            time.sleep(0.05)
        assert r.status_code == 503 and "mtbranch.lock.json" in r.json()["error"]
        p = client.post("/predict", json={"texts": ["good"]})
        assert p.status_code == 503 and "failed to load" in p.json()["error"]


@pytest.mark.slow
def test_cli_serve_process(artifact: Path) -> None:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mtbranch.cli.main", "serve", str(artifact), "--port", str(port),
                             "--task", "sentiment", "--threads", "1", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "serve did not become ready"
            time.sleep(0.1)
        assert httpx.get(url + "/ready").json()["tasks"] == ["sentiment"]  # --task: only that branch loaded
        r = httpx.post(url + "/predict", json={"texts": ["a good film"]})
        assert r.status_code == 200 and set(r.json()["results"][0]) == {"sentiment"}
        assert httpx.post(url + "/predict", json={"texts": ["a"], "tasks": ["entities"]}).status_code == 422
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "needle"), [
    (["--task", "nope"], "unknown --task nope"),
    (["--classify-task", "nope"], "unknown --classify-task nope"),
    (["--max-batch-size", "0"], "max-batch-size"),
])
def test_cli_serve_bad_arguments(artifact: Path, args: list[str], needle: str) -> None:
    r = subprocess.run([sys.executable, "-m", "mtbranch.cli.main", "serve", str(artifact), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_cli_serve_missing_artifact(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mtbranch.cli.main", "serve", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "mtbranch.lock.json" in r.stderr and "Traceback" not in r.stderr


def test_cli_help_is_light() -> None:
    code = ("import sys; from mtbranch.cli.main import cli\n"
            "try: cli(['serve', '--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
            "print(json.dumps([m for m in ('torch', 'fastapi', 'onnx', 'ray') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_task_subsets_share_one_trunk_pass_up_to_the_depth_they_need(model: Any) -> None:
    """sentiment (depth 2), entities (depth 3) and similarity (depth 2, pair) requests in one batch: one pass,
    trunk layers 1-3 run once each (grouping by task set would run 2 + 3 + 2 = 7 layers), rows leave after depth 2."""
    from mtbranch.serve.batching import Budget, Stats, prepare_job, run_jobs

    rows_per_layer: list[int] = []
    run_layer = model.trunk.run_layer

    def counted(k: int, hidden: Any, mask4d: Any) -> Any:
        rows_per_layer.append(hidden.shape[0])
        return run_layer(k, hidden, mask4d)

    jobs = [prepare_job(model, TEXTS[:3], None, ["sentiment"], False),
            prepare_job(model, TEXTS[3:5], None, ["entities"], True),
            prepare_job(model, TEXTS[:2], PAIRS[:2], ["similarity"], False)]
    stats = Stats()
    model.trunk.run_layer = counted
    try:
        out = run_jobs(model, jobs, stats, Budget(max_padding=None))  # one pass: no length buckets
    finally:
        del model.trunk.run_layer
    assert stats.predict_calls == 1 and stats.layer_calls == 3
    assert rows_per_layer == [7, 7, 2]  # 3 + 2 + 2 sequences; only the 2 entities rows go on to layer 3
    for job, res in zip(jobs, out, strict=True):
        want = model.predict(job.texts, tasks=list(job.tasks), text_pairs=job.pairs, raw=job.raw)
        assert results_close(res, want), (job.tasks, res, want)


def test_predict_forward_and_serving_run_the_one_trunk_pass(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One engine: predict (through forward) and the serving batches (run_rows) both run composition's trunk_pass;
    serving's passes name each row's branches, forward's do not (every row reads every branch)."""
    import mtbranch.composition.model as composed
    from mtbranch.serve.batching import Budget, prepare_job, run_jobs

    real = composed.trunk_pass
    per_row: list[bool] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        per_row.append(len(args) > 5 or kwargs.get("reads") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(composed, "trunk_pass", counted)
    want = model.predict(TEXTS[:2], tasks=["sentiment", "entities"], max_padding=None)  # one pass each
    got = run_jobs(model, [prepare_job(model, TEXTS[:2], None, ["sentiment", "entities"], False)],
                   budget=Budget(max_padding=None))[0]
    assert per_row == [False, True]
    assert results_close(got, want)


def test_token_budget_splits_passes_and_a_failing_request_is_isolated(model: Any) -> None:
    from mtbranch.serve.batching import Budget, Job, Stats, prepare_job, run_jobs

    assert Budget(8, max_padding=None).passes([5, 3, 9, 4]) == [[1, 3, 0, 2]]
    assert Budget(2, max_padding=None).passes([5, 3, 9, 4]) == [[1, 3], [0, 2]]
    # rows x longest <= 12: [3, 4] (8), [5] (5 + 9 would be 18), [9]; a row over the budget is a pass alone
    assert Budget(8, 12, None).passes([5, 3, 9, 4]) == [[1, 3], [0], [2]]
    assert Budget(8).passes([5, 3, 9, 4]) == [[1, 3, 0], [2]]  # length buckets: 9 joining would be 42% padding
    seen: list[tuple[int, int]] = []
    jobs = [prepare_job(model, [t], None, ["sentiment"], False) for t in TEXTS]
    stats = Stats()
    longest = max(r.longest for r in jobs)
    out = run_jobs(model, jobs, stats, Budget(32, 2 * longest), on_pass=lambda n, tok: seen.append((n, tok)))
    assert all(tok <= 2 * longest for _, tok in seen) and sum(n for n, _ in seen) == len(TEXTS) and len(seen) > 1
    assert all(not isinstance(o, BaseException) for o in out)
    bad = Job(["x"], None, ("nope",))  # not tokenized, unknown task: fails alone
    out = run_jobs(model, [jobs[0], bad, jobs[1]], Stats())
    assert isinstance(out[1], Exception) and "nope" in str(out[1])
    assert results_close(out[0], model.predict([TEXTS[0]], tasks=["sentiment"]))


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b'{"texts": [' + b"9" * 5000 + b"]}", 400, "number out of range"),  # past Python's int digit limit
    (b'{"texts": ["a"], "raw": ' + b"1" * 5000 + b"}", 400, "number out of range"),
    (b'{"texts": ' + b"[" * 100_000 + b"}", 400, "recursion limit"),
    (b'{"texts": ["\xc3\x28"]}', 400, "JSON"),  # invalid UTF-8 sequence
    (b'\xef\xbb\xbf{"texts": ["a"]}', 400, "JSON"),  # a byte-order mark is not JSON
])
def test_parse_failures_are_request_errors(body: bytes, status: int, needle: str) -> None:
    from mtbranch.serve.schema import RequestError, parse_request

    with pytest.raises(RequestError) as info:
        parse_request(body, Limits(max_body_bytes=1_000_000))
    assert info.value.status == status and needle in info.value.message, info.value.message
