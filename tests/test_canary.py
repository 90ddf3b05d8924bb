"""Canary per branch on a live `mtbranch serve`: shadow -> split -> promote -> rollback under load, other branches
bit-identical, the lock on disk at each step, the admin API's errors and the CLI over it."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from test_serve import Server

from mtbranch.branch.model import load_branch
from mtbranch.composition.artifact import load, read_lock
from mtbranch.serve.app import ServeSettings, create_app
from mtbranch.serve.canary import Canary
from mtbranch.spec.lock import LockBranch

from helpers import make_branch, make_serving_artifact, results_close

TOKEN = "s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}
TEXTS = ["the movie was very good !", "bad", "john visited paris and london in the new york city .",
         "a terrible , boring film", "mary works at google in berlin", "it was fun", "not good", "the actor"]
PAIRS = ["a great film", "terrible acting", "mary works at google", "good", "the city", "fun", "bad", "an actor"]


@pytest.fixture(scope="module")
def setup(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("canary")
    artifact = make_serving_artifact(tiny_bert_dir, base)
    # version B of sentiment forks at another depth (3, A's is 2), with other weights and labels it predicts
    b_dir = make_branch(tiny_bert_dir, base / "sentiment-b", name="sentiment", depth=3, layers=1, seed=11,
                        version="0.2.0")
    with_b = load(artifact)
    with_b.put_branch(load_branch(b_dir))
    return {"artifact": artifact, "b_dir": b_dir, "with_b": with_b, "lock_a": read_lock(artifact)}


@pytest.fixture(scope="module")
def server(setup: dict[str, Any]) -> Iterator[Server]:
    app = create_app(artifact=setup["artifact"], settings=ServeSettings(admin_token=TOKEN, max_batch_wait_ms=2))
    with Server(app) as s:
        yield s


def ask(s: Server, text: str, pair: str, key: str | None = None) -> tuple[dict[str, Any], str]:
    """One text to every task; the results and the version header."""
    r = httpx.post(s.url + "/predict", json={"texts": [text], "text_pairs": [pair]},
                   headers={"x-user": key} if key else {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["results"][0], r.headers["x-mtbranch-version"]


def sweep(s: Server, key: str | None = None) -> list[dict[str, Any]]:
    return [ask(s, t, p, key)[0] for t, p in zip(TEXTS, PAIRS, strict=True)]


def others(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "sentiment"} for r in results]


def admin(s: Server, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(s.url + path, json=body, headers=AUTH, timeout=120)


def lock_entry(artifact: Path, name: str) -> LockBranch:
    return read_lock(artifact).branch(name)


class Load:
    """Requests sent back to back from a thread while the canary moves: every status is recorded.

    ``paused`` holds it while the test compares answers: a request merged into another's batch pads it
    differently, and bit-identity is about the canary, not about padding."""

    def __init__(self, s: Server) -> None:
        self.s, self.codes, self.stop = s, [], threading.Event()
        self.paused = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        k = 0
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                with self.paused:
                    r = c.post(self.s.url + "/predict", headers={"x-user": f"user-{k}"},
                               json={"texts": [TEXTS[k % 8]], "tasks": ["sentiment", "entities"]})
                self.codes.append(r.status_code)
                k += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.mark.slow
def test_shadow_split_promote_rollback_under_load(server: Server, setup: dict[str, Any]) -> None:
    s, artifact, with_b = server, setup["artifact"], setup["with_b"]
    before = sweep(s)
    lock_before = (artifact / "mtbranch.lock.json").read_bytes()
    b_want = with_b.predict(TEXTS, tasks=["sentiment"])
    with Load(s) as load_thread:
        # shadow: A answers, B runs in the same pass; every answer (A's included) is bit-identical
        r = admin(s, "/admin/canary", {"branch_dir": str(setup["b_dir"]), "mode": "shadow"})
        assert r.status_code == 200, r.text
        assert r.json()["canary_version"] == "0.2.0" and r.json()["live_version"] == "0.1.0"
        with load_thread.paused:
            assert sweep(s) == before
        status = httpx.get(s.url + "/admin/canary", headers=AUTH).json()["canaries"][0]
        assert status["compared"] >= len(TEXTS) and status["canary_forward_s"] > 0
        metrics = httpx.get(s.url + "/metrics").text
        assert 'mtbranch_branch_requests_total{role="shadow",task="sentiment",version="0.2.0"}' in metrics
        assert 'mtbranch_canary_agreement_total{result=' in metrics
        # latency per version while a canary runs (both versions); none for the other tasks (task_latency has it)
        assert 'mtbranch_branch_latency_seconds_count{role="shadow",task="sentiment",version="0.2.0"}' in metrics
        assert 'mtbranch_branch_latency_seconds_count{role="live",task="sentiment",version="0.1.0"}' in metrics
        assert 'mtbranch_branch_latency_seconds_count{role="live",task="entities"' not in metrics
        assert 'mtbranch_branch_requests_total{role="live",task="entities",version="0.1.0"}' in metrics
        labels = re.findall(r'^mtbranch_branch_labels_total\{label="(\w+)",role="(\w+)",task="sentiment",'
                            r'version="([\d.]+)"\} (\S+)$', metrics, re.M)
        # A's answers, and B's labels on the same requests (shadow): the two distributions side by side
        assert {(role, version) for _, role, version, _ in labels} == {("live", "0.1.0"), ("shadow", "0.2.0")}
        assert {label for label, *_ in labels} <= {"negative", "positive"}

        # split 50%, sticky by the x-user header: a key's requests all go to one version
        r = admin(s, "/admin/canary/sentiment", {"mode": "split", "fraction": 0.5, "key_header": "x-user"})
        assert r.status_code == 200, r.text
        canary = Canary("sentiment", None, Path(), "0.1.0", "split", 0.5)  # type: ignore[arg-type]
        keys = [f"k{i}" for i in range(12)]
        assert {canary.takes(k) for k in keys} == {True, False}
        for key in keys:
            with load_thread.paused:
                got = sweep(s, key)
            assert others(got) == others(before)  # the other branches stay bit-identical
            want = [{"sentiment": x["sentiment"]} for x in (b_want if canary.takes(key) else before)]
            assert results_close([{"sentiment": g["sentiment"]} for g in got], want), key
        assert 'role="canary"' in httpx.get(s.url + "/metrics").text

        # promote: B live, the lock on disk records it (B's sha256, version), the response header follows
        r = admin(s, "/admin/canary/sentiment/promote")
        assert r.status_code == 200, r.text
        entry = lock_entry(artifact, "sentiment")
        b_sha = json.loads((setup["b_dir"] / "manifest.json").read_text())["weights"]["sha256"]
        assert entry.version == "0.2.0" and entry.sha256 == b_sha
        lock_sha = hashlib.sha256((artifact / "mtbranch.lock.json").read_bytes()).hexdigest()
        with load_thread.paused:
            got, version = ask(s, TEXTS[0], PAIRS[0])
            assert others(sweep(s)) == others(before)
        assert version == lock_sha == r.json()["lock_sha256"]
        assert results_close(got["sentiment"], b_want[0]["sentiment"])
        assert {t["name"]: t["version"] for t in httpx.get(s.url + "/tasks").json()}["sentiment"] == "0.2.0"

        # rollback after promotion: A back, on disk too
        r = admin(s, "/admin/canary/sentiment/rollback")
        assert r.status_code == 200, r.text
        assert r.json()["version"] == "0.1.0"
        assert lock_entry(artifact, "sentiment") == setup["lock_a"].branch("sentiment")
        with load_thread.paused:
            assert sweep(s) == before
    assert load_thread.codes and set(load_thread.codes) == {200}  # no request failed throughout
    assert (artifact / "mtbranch.lock.json").read_bytes() != lock_before  # rewritten (new created time)
    assert httpx.get(s.url + "/admin/canary", headers=AUTH).json() == {"canaries": [], "promoted": []}


def test_admin_canary_errors(server: Server, setup: dict[str, Any], tiny_roberta_dir: Path, tmp_path: Path) -> None:
    s = server
    assert httpx.post(s.url + "/admin/canary", json={"branch_dir": str(setup["b_dir"])}).status_code == 401
    r = admin(s, "/admin/canary", {"branch_dir": str(tmp_path / "nowhere")})
    assert r.status_code == 422 and "manifest.json" in r.json()["error"]
    new_task = make_branch(tiny_roberta_dir, tmp_path / "intent", name="intent", depth=1, layers=1)
    r = admin(s, "/admin/canary", {"branch_dir": str(new_task)})
    assert r.status_code == 422 and "not served" in r.json()["error"] and "sentiment" in r.json()["hint"]
    other_trunk = make_branch(tiny_roberta_dir, tmp_path / "sentiment", name="sentiment", depth=1, layers=1)
    r = admin(s, "/admin/canary", {"branch_dir": str(other_trunk)})  # the validator refuses another trunk
    assert r.status_code == 422 and "validation failed" in r.json()["error"], r.text
    assert admin(s, "/admin/canary/sentiment/rollback").status_code == 404
    assert admin(s, "/admin/canary/sentiment/promote").status_code == 404
    r = admin(s, "/admin/canary", {"branch_dir": str(setup["b_dir"]), "mode": "sideways"})
    assert r.status_code == 422
    assert httpx.get(s.url + "/admin/canary", headers=AUTH).json()["canaries"] == []


def test_split_is_sticky_and_close_to_its_fraction() -> None:
    c = Canary("sentiment", None, Path(), "0.1.0", "split", 0.1)  # type: ignore[arg-type]
    keys = [f"user-{i}" for i in range(4000)]
    taken = {k for k in keys if c.takes(k)}
    assert 0.08 < len(taken) / len(keys) < 0.12
    assert taken == {k for k in keys if c.takes(k)}  # sticky
    c.fraction = 0.3
    assert taken <= {k for k in keys if c.takes(k)}  # raising the fraction only moves keys to B


def test_cli_canary_over_http(server: Server, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from mtbranch.cli.main import cli

    monkeypatch.setenv("MTBRANCH_ADMIN_TOKEN", TOKEN)
    runner = CliRunner()
    url = ["--url", server.url]
    r = runner.invoke(cli, ["canary", "start", str(setup["b_dir"]), "--mode", "shadow", *url])
    assert r.exit_code == 0, r.output
    assert "shadow" in r.output and "0.2.0" in r.output
    r = runner.invoke(cli, ["canary", "status", "--json", *url])
    assert r.exit_code == 0 and json.loads(r.output)["canaries"][0]["task"] == "sentiment"
    r = runner.invoke(cli, ["canary", "start", str(setup["b_dir"]), *url])  # a second one: the server's 409
    assert r.exit_code == 1 and "already has a canary" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["canary", "rollback", "sentiment", *url])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("MTBRANCH_ADMIN_TOKEN", "wrong")
    r = runner.invoke(cli, ["canary", "status", *url])
    assert r.exit_code == 1 and "401" in r.output
    r = runner.invoke(cli, ["canary", "status", "--url", "http://127.0.0.1:9"])
    assert r.exit_code == 1 and "cannot reach" in r.output


def test_promote_refuses_a_branch_changed_since_it_was_loaded(server: Server, setup: dict[str, Any],
                                                              tmp_path: Path) -> None:
    import shutil

    b_copy = shutil.copytree(setup["b_dir"], tmp_path / "sentiment-b")
    lock = (setup["artifact"] / "mtbranch.lock.json").read_bytes()
    assert admin(server, "/admin/canary", {"branch_dir": str(b_copy)}).status_code == 200
    weights = b_copy / "branch.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # edited after the canary was loaded
    r = admin(server, "/admin/canary/sentiment/promote")
    assert r.status_code == 409 and "changed since the canary was loaded" in r.json()["error"]
    assert (setup["artifact"] / "mtbranch.lock.json").read_bytes() == lock  # nothing written
    assert admin(server, "/admin/canary/sentiment/rollback").json()["status"] == "rolled back"


def test_a_canary_replaced_while_a_request_ran_leaks_nothing_into_the_answer() -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from mtbranch.serve.canary import Canaries, CanaryModule

    def canary() -> Canary:
        module = SimpleNamespace(manifest=SimpleNamespace(version="0.2.0", attach_depth=1))
        return Canary("s", CanaryModule(module, ""), Path(), "0.1.0")

    reg = Canaries(CollectorRegistry())
    first = canary()
    reg.start(first)
    route = reg.route(["s"], {}, ["x"])
    results = [{"s": {"label": "a"}, first.key: {"label": "b"}}]
    reg.stop("s")
    second = canary()
    reg.start(second)  # rolled back and started again while the request was in the batch
    assert second.key != first.key and second.module.name == second.key
    assert reg.settle(route, {"s": "0.1.0"}, results, 0.01) == [{"s": {"label": "a"}}]  # A answered
    assert second.requests == 0
