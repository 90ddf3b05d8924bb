"""Cost per team: FLOPs split by layer share (static and per batch), seconds split by FLOPs, counters per task and
owner in /metrics, `mtbranch inspect --cost`; and requests naming tasks by owner."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from mtbranch.serve.app import ServeSettings, create_app
from mtbranch.serve.batching import prepare_job
from mtbranch.serve.cost import Shape, row_flops, static_cost
from mtbranch.serve.schema import Limits, PredictRequest, RequestError, TaskInfo, resolve_request

from helpers import make_branch

L = Shape(hidden=32, intermediate=64)


@pytest.fixture(scope="module")
def artifact(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sentiment (team-a, depth 2, 1 layer), entities (team-b, depth 3, 1 layer), similarity (team-a, pair)."""
    from mtbranch.composition.artifact import compose, save_composed
    from mtbranch.trunk.source import load_trunk_source

    base = tmp_path_factory.mktemp("cost")
    dirs = [make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=1, seed=1,
                        owner="team-a"),
            make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1, seed=2,
                        head="token_classification", owner="team-b"),
            make_branch(tiny_bert_dir, base / "similarity", name="similarity", depth=2, layers=0, seed=3,
                        head="regression", signature="pair", pooling="mean", owner="team-a")]
    save_composed(compose(load_trunk_source(tiny_bert_dir), [(d, "directory") for d in dirs]), base / "composed")
    return base / "composed"


@pytest.fixture(scope="module")
def client(artifact: Path) -> Iterator[TestClient]:
    with TestClient(create_app(artifact=artifact, settings=ServeSettings(max_batch_wait_ms=0))) as c:
        for _ in range(200):
            if c.get("/ready").status_code == 200:
                break
            import time

            time.sleep(0.05)
        yield c


def counter(text: str, name: str, task: str) -> float:
    m = re.search(rf'^{name}_total{{owner="[^"]*",task="{task}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_row_flops_split_each_trunk_layer_among_the_branches_that_need_it() -> None:
    reads = {"a": (2, 1), "b": (3, 1), "c": (2, 0)}
    out = row_flops(L, 10, reads)
    layer = L.layer(10)
    assert out["a"] == pytest.approx((layer / 3 + layer / 3, layer))  # layers 1-2 shared three ways
    assert out["c"] == pytest.approx((2 * layer / 3, 0.0))
    assert out["b"] == pytest.approx((2 * layer / 3 + layer, layer))  # layer 3 is b's alone
    assert sum(s for s, _ in out.values()) == pytest.approx(3 * layer)  # the trunk is paid for exactly once


def test_static_cost_alone_and_shared() -> None:
    rows = {r["task"]: r for r in static_cost(L, [
        {"name": "a", "attach_depth": 2, "num_layers": 1, "owner": "team-a"},
        {"name": "b", "attach_depth": 4, "num_layers": 2}], tokens=16)}
    layer = L.layer(16)
    assert rows["a"]["alone_flops"] == pytest.approx(3 * layer) and rows["b"]["owner"] == "unowned"
    assert rows["a"]["shared_flops"] == pytest.approx(layer) and rows["b"]["shared_flops"] == pytest.approx(3 * layer)
    assert rows["b"]["own_flops"] == pytest.approx(2 * layer)


def test_metrics_charge_each_task_and_owner_its_share(client: TestClient, artifact: Path) -> None:
    model = client.app.state.mtbranch.served.model  # type: ignore[attr-defined]
    shape = Shape.of_config(model.trunk.config)
    before = client.get("/metrics").text
    text = "john visited paris"
    r = client.post("/predict", json={"texts": [text], "tasks": ["sentiment"]})
    assert r.status_code == 200, r.text
    n = len(prepare_job(model, [text], None, ["sentiment"], False).sequences[0].ids)
    after = client.get("/metrics").text
    got = counter(after, "mtbranch_task_flops", "sentiment") - counter(before, "mtbranch_task_flops", "sentiment")
    assert got == pytest.approx(3 * shape.layer(n))  # alone: trunk layers 1-2 and its own layer
    assert counter(after, "mtbranch_task_flops", "entities") == counter(before, "mtbranch_task_flops", "entities")
    assert 'mtbranch_task_flops_total{owner="team-a",task="sentiment"}' in after

    # both in one request: layers 1-2 split in two, layer 3 entities' alone; seconds split as the FLOPs are
    r = client.post("/predict", json={"texts": [text], "tasks": ["sentiment", "entities"]})
    assert r.status_code == 200
    last = client.get("/metrics").text
    d = {t: {k: counter(last, k, t) - counter(after, k, t) for k in
             ("mtbranch_task_flops", "mtbranch_task_compute_seconds", "mtbranch_task_cpu_seconds")}
         for t in ("sentiment", "entities")}
    layer = shape.layer(n)
    assert d["sentiment"]["mtbranch_task_flops"] == pytest.approx(2 * layer)
    assert d["entities"]["mtbranch_task_flops"] == pytest.approx(3 * layer)
    assert d["sentiment"]["mtbranch_task_compute_seconds"] > 0
    ratio = d["entities"]["mtbranch_task_compute_seconds"] / d["sentiment"]["mtbranch_task_compute_seconds"]
    assert ratio == pytest.approx(1.5, rel=1e-6)


def test_inspect_cost(artifact: Path) -> None:
    from mtbranch.cli.main import cli

    r = CliRunner().invoke(cli, ["inspect", str(artifact), "--cost", "--tokens", "16", "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["task"]: x for x in json.loads(r.output)["cost"]}
    assert rows["entities"]["owner"] == "team-b" and rows["sentiment"]["attach_depth"] == 2
    single = sum(x["shared_flops"] for x in rows.values() if x["signature"] == "single")
    assert single == pytest.approx(3 * L.layer(16))  # the tiny trunk: hidden 32, intermediate 64
    assert rows["similarity"]["shared_flops"] == pytest.approx(2 * L.layer(16))  # its pair row, alone
    r = CliRunner().invoke(cli, ["inspect", str(artifact), "--cost"])
    assert r.exit_code == 0 and "team-b" in r.output and "GFLOPs" in r.output


INFOS = [TaskInfo(name="sentiment", version="1", signature="single", head="c", attach_depth=2, owner="team-a"),
         TaskInfo(name="entities", version="1", signature="single", head="t", attach_depth=3, owner="team-b"),
         TaskInfo(name="similarity", version="1", signature="pair", head="r", attach_depth=2, owner="team-a"),
         TaskInfo(name="intent", version="1", signature="single", head="c", attach_depth=1)]


@pytest.mark.parametrize(("body", "want"), [
    ({"texts": ["x"], "owners": ["team-a"]}, ["sentiment"]),
    ({"texts": ["x"], "text_pairs": ["y"], "owners": ["team-a"]}, ["sentiment", "similarity"]),
    ({"texts": ["x"], "owners": ["team-b"], "tasks": ["intent"]}, ["intent", "entities"]),
    ({"texts": ["x"], "owners": ["team-a", "team-b"]}, ["sentiment", "entities"]),
])
def test_owners_name_every_task_they_ship(body: dict[str, Any], want: list[str]) -> None:
    assert resolve_request(PredictRequest.model_validate(body), INFOS, Limits()) == want


@pytest.mark.parametrize(("body", "needle"), [
    ({"texts": ["x"], "owners": ["team-z"]}, "unknown owner(s): 'team-z'"),
    ({"texts": ["x"], "owners": []}, "owners is an empty list"),
    ({"texts": ["x"], "owners": ["team-a"], "tasks": ["nope"]}, "unknown task(s): 'nope'"),
])
def test_unknown_owners_are_422_listing_the_owners(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(RequestError) as exc:
        resolve_request(PredictRequest.model_validate(body), INFOS, Limits())
    assert exc.value.status == 422 and needle in exc.value.message
    if "owner" in needle:
        assert exc.value.hint == "owners served: team-a, team-b"


TAGGED = [i.model_copy(update={"tags": tags}) for i, tags in
          zip(INFOS, [["safety"], ["pii", "safety"], ["safety"], []], strict=True)]


@pytest.mark.parametrize(("body", "want"), [
    ({"texts": ["x"], "tags": ["safety"]}, ["sentiment", "entities"]),
    ({"texts": ["x"], "text_pairs": ["y"], "tags": ["safety"]}, ["sentiment", "entities", "similarity"]),
    ({"texts": ["x"], "tags": ["pii"], "tasks": ["intent"]}, ["intent", "entities"]),
    ({"texts": ["x"], "tags": ["pii"], "owners": ["team-a"]}, ["sentiment", "entities"]),
])
def test_tags_name_every_task_they_mark(body: dict[str, Any], want: list[str]) -> None:
    assert resolve_request(PredictRequest.model_validate(body), TAGGED, Limits()) == want


def test_unknown_tags_are_422_listing_the_tags() -> None:
    for tags, needle in ((["nope"], "unknown tag(s): 'nope'"), ([], "tags is an empty list")):
        with pytest.raises(RequestError) as exc:
            resolve_request(PredictRequest.model_validate({"texts": ["x"], "tags": tags}), TAGGED, Limits())
        assert exc.value.status == 422 and needle in exc.value.message and exc.value.hint == "tags served: pii, safety"


def test_manifest_tags_are_names() -> None:
    from pydantic import ValidationError

    from mtbranch.spec.manifest import BranchManifest

    shipped = Path(__file__).parent.parent / "examples/plugin-sentiment/src/mtbranch_sentiment/branch/manifest.json"
    data = json.loads(shipped.read_text())
    assert BranchManifest.model_validate({**data, "tags": ["safety", "pii"]}).tags == ["safety", "pii"]
    assert BranchManifest.model_validate(data).tags == []  # 1.1 manifests without tags, and 1.0 ones
    for bad in (["Safety"], ["a b"], ["x", "x"]):
        with pytest.raises(ValidationError, match="tag"):
            BranchManifest.model_validate({**data, "tags": bad})


def test_owners_over_http(client: TestClient) -> None:
    assert {t["name"]: t["owner"] for t in client.get("/tasks").json()} == {
        "sentiment": "team-a", "entities": "team-b", "similarity": "team-a"}
    r = client.post("/predict", json={"texts": ["mary works at google"], "owners": ["team-b"]})
    assert r.status_code == 200 and r.json()["tasks"] == ["entities"]
    r = client.post("/predict", json={"texts": ["a"], "owners": ["support"]})
    assert r.status_code == 422 and r.json() == {"error": "unknown owner(s): 'support'",
                                                 "hint": "owners served: team-a, team-b"}


def test_static_cost_pair_tasks_share_their_own_row() -> None:
    rows = {r["task"]: r for r in static_cost(L, [
        {"name": "a", "attach_depth": 2, "num_layers": 0, "signature": "single"},
        {"name": "p", "attach_depth": 2, "num_layers": 0, "signature": "pair"}], tokens=8)}
    assert rows["a"]["shared_flops"] == rows["p"]["shared_flops"] == pytest.approx(2 * L.layer(8))
