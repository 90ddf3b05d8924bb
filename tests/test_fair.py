"""Fairness: quotas per owner (429 + Retry-After in the error shape), the fair queue (round-robin per tenant),
`mtbranch serve --quota` parsing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_cost import artifact  # noqa: F401 (the fixture: sentiment and similarity team-a, entities team-b)

from mtbranch.errors import UsageError
from mtbranch.serve.app import ServeSettings, create_app
from mtbranch.serve.batcher import Batcher
from mtbranch.serve.batching import Budget, Job, Outcome, PassHook, Row, Stats
from mtbranch.serve.fair import FairQueue, Quotas, owners_of, parse_quotas, tenant_of
from mtbranch.serve.metrics import Metrics
from mtbranch.serve.schema import RequestError, TaskInfo
from mtbranch.serve.state import Served


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_quota_refuses_over_the_bucket_and_refills() -> None:
    clock = Clock()
    q = Quotas({"team-a": 2.0, "*": 100.0}, burst_s=2.0, clock=clock)  # team-a: 4 texts at once, 2 a second
    q.admit(["team-a"], 3)
    q.admit(["team-a"], 1)
    with pytest.raises(RequestError) as exc:
        q.admit(["team-a", "team-b"], 2)
    assert exc.value.status == 429 and exc.value.retry_after == 1 and "team-a" in exc.value.message
    assert exc.value.headers() == {"retry-after": "1"}
    q.admit(["team-b"], 150)  # the refused request took nothing from team-b's bucket (200 texts)
    clock.now += 0.5
    q.admit(["team-a"], 1)  # half a second: one more text
    with pytest.raises(RequestError):
        q.admit(["team-a"], 1)
    q.admit(["unlisted"], 1)  # '*': every owner without a quota of its own
    assert Quotas({}).rate("team-a") is None


def test_fair_queue_serves_tenants_round_robin() -> None:
    q: FairQueue[str] = FairQueue(lambda s: s[0])
    for item in ["a1", "a2", "a3", "b1", "c1", "b2"]:
        q.append(item)
    assert len(q) == 6 and list(q)[:3] == ["a1", "a2", "a3"]
    order = []
    while q:
        head = q[0]
        order.append(q.popleft())
        assert order[-1] == head  # peeking names what popleft takes
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3"]
    with pytest.raises(IndexError):
        q.popleft()


def test_batcher_lets_a_quiet_tenant_pass_a_burst() -> None:
    """Ten queued requests of tenant a, then one of b: b runs in the second batch, not the eleventh."""
    ran: list[str] = []

    def run(_model: Any, js: list[Job], _stats: Stats, _budget: Budget, _on_pass: PassHook) -> list[Outcome]:
        ran.extend(j.texts[0] for j in js)
        return [[{} for _ in j.texts] for j in js]

    def job(name: str) -> Job:
        return Job([name], None, ("t",), sequences=(Row(0, [1, 2], None, None, ("t",), 1),))

    async def main() -> None:
        batcher = Batcher(Served(object(), "v1", [], 0.0), ServeSettings(max_batch_size=1, max_batch_wait_ms=0),
                          Metrics(), run=run)
        subs = [batcher.submit(job(f"a{i}"), "team-a") for i in range(10)] + [batcher.submit(job("b"), "team-b")]
        tasks = [asyncio.ensure_future(s) for s in subs]
        await asyncio.sleep(0)  # every request queued before the collector starts
        batcher.start()
        try:
            await asyncio.gather(*tasks)
        finally:
            await batcher.stop()

    asyncio.run(main())
    assert ran.index("b") == 1 and sorted(ran) == sorted([f"a{i}" for i in range(10)] + ["b"])


def test_owners_and_tenants() -> None:
    infos = [TaskInfo(name="x", version="1", signature="single", head="c", attach_depth=1, owner="team-b"),
             TaskInfo(name="y", version="1", signature="single", head="c", attach_depth=1)]
    assert owners_of(["x", "y"], infos) == ["team-b", "unowned"]
    assert tenant_of(["team-b", "unowned"]) == "team-b+unowned"


@pytest.mark.parametrize("spec", ["team-a", "team-a=", "=3", "team-a=-1", "team-a=fast", "team-a=nan"])
def test_parse_quotas_refuses_malformed(spec: str) -> None:
    with pytest.raises(UsageError, match="OWNER=TEXTS_PER_S"):
        parse_quotas([spec])
    assert parse_quotas(["team-a=2.5", "*=10"]) == {"team-a": 2.5, "*": 10.0}


def test_quota_over_http(artifact: Path) -> None:  # noqa: F811
    settings = ServeSettings(quotas={"team-a": 1.0}, max_batch_wait_ms=0)
    with TestClient(create_app(artifact=artifact, settings=settings)) as c:
        while c.get("/ready").status_code != 200:
            pass
        codes = [c.post("/predict", json={"texts": ["good"], "tasks": ["sentiment"]}) for _ in range(4)]
        assert [r.status_code for r in codes[:2]] == [200, 200]  # the burst: two seconds of one text a second
        refused = codes[2]
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json() == {"error": "owner 'team-a' is over its quota of 1 texts/s",
                                  "hint": "slow down and retry after Retry-After seconds, or ask the operator "
                                          "for a larger --quota"}
        assert c.post("/predict", json={"texts": ["mary"], "tasks": ["entities"]}).status_code == 200  # team-b
        metrics = c.get("/metrics").text
        assert 'mtbranch_quota_rejected_total{owner="team-a"} 2.0' in metrics
        assert "429" in c.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]


def test_quota_burst_sets_what_an_idle_owner_may_send_at_once(artifact: Path) -> None:  # noqa: F811
    """``quota_burst_s`` (serve --quota-burst) is the bucket's size: 0 leaves one text, so a team that idled sends
    no more above its quota than while it was busy."""
    settings = ServeSettings(quotas={"team-a": 1.0}, quota_burst_s=0.0, max_batch_wait_ms=0)
    with TestClient(create_app(artifact=artifact, settings=settings)) as c:
        while c.get("/ready").status_code != 200:
            pass
        codes = [c.post("/predict", json={"texts": ["good"], "tasks": ["sentiment"]}).status_code for _ in range(2)]
        assert codes == [200, 429]  # the default (2 s) lets two through: test_quota_over_http


def test_over_quota_is_refused_at_the_edge(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A request over its owner's quota is refused by the Guard from the raw body, before FastAPI routes it (the
    route's parsing never runs: the event loop's cost of a refusal, docs/serving.md); the edge takes no texts (two
    requests of the bucket's two still pass) and leaves every other error to the route."""
    import mtbranch.serve.routes as routes

    parsed: list[bytes] = []
    real = routes.parse_request

    def counting(raw: Any, limits: Any) -> Any:
        parsed.append(raw)
        return real(raw, limits)

    monkeypatch.setattr(routes, "parse_request", counting)
    settings = ServeSettings(quotas={"team-a": 1.0}, max_batch_wait_ms=0)
    with TestClient(create_app(artifact=artifact, settings=settings)) as c:
        while c.get("/ready").status_code != 200:
            pass
        ok = [c.post("/predict", json={"texts": ["good"], "owners": ["team-a"]}) for _ in range(2)]
        assert [r.status_code for r in ok] == [200, 200] and len(parsed) == 2
        refused = [c.post("/predict", json={"texts": ["good"], "tasks": ["sentiment"]}) for _ in range(3)]
        assert [r.status_code for r in refused] == [429] * 3 and len(parsed) == 2  # the route never saw them
        assert refused[0].json()["error"] == "owner 'team-a' is over its quota of 1 texts/s"
        assert int(refused[0].headers["retry-after"]) >= 1
        # not the quota's to answer: the route's own errors, in its words
        assert c.post("/predict", content=b"{not json", headers={"content-type": "application/json"}
                      ).status_code == 400
        assert c.post("/predict", json={"texts": ["good"], "tasks": ["nope"]}).status_code == 422
        assert c.post("/predict", json={"texts": ["x"]}, headers={"content-type": "text/plain"}).status_code == 415
        assert 'mtbranch_quota_rejected_total{owner="team-a"} 3.0' in c.get("/metrics").text


def test_quota_check_without_taking() -> None:
    q = Quotas({"team-a": 1.0}, burst_s=2.0, clock=Clock())
    for _ in range(5):
        q.admit(["team-a"], 2, take=False)  # the edge's check: nothing taken
    q.admit(["team-a"], 2)
    with pytest.raises(RequestError):
        q.admit(["team-a"], 1, take=False)


def test_cli_serve_refuses_a_malformed_quota(artifact: Path) -> None:  # noqa: F811
    from click.testing import CliRunner

    from mtbranch.cli.main import cli

    r = CliRunner().invoke(cli, ["serve", str(artifact), "--quota", "team-a=lots"])
    assert r.exit_code == 2 and "OWNER=TEXTS_PER_S" in r.output  # a usage error (UsageError: click's code)
    assert "internal error" not in r.output and "Traceback" not in r.output
