"""The request queue of `mtbranch serve` on its own (asyncio, no model): batches are gathered with the same
budget that cuts trunk passes (padded tokens), so a gathered batch is one pass unless one request alone is over,
or its lengths are mixed enough for length buckets (--max-padding) to cut it."""

from __future__ import annotations

import asyncio
from typing import Any

from mtbranch.serve.batcher import Batcher
from mtbranch.serve.batching import Budget, Job, Outcome, PassHook, Row, Stats
from mtbranch.serve.metrics import Metrics
from mtbranch.serve.schema import ServeSettings
from mtbranch.serve.state import Served


def job(name: str, *lengths: int) -> Job:
    rows = tuple(Row(i, [1] * n, None, None, ("t",), 1) for i, n in enumerate(lengths))
    return Job([name] * len(lengths), None, ("t",), sequences=rows)


def gathered(settings: ServeSettings, jobs: list[Job]) -> tuple[list[list[str]], list[int]]:
    """The batches the queue ran (job names) and the passes the budget cut each into."""
    batches: list[list[str]] = []
    passes: list[int] = []

    def run(_model: Any, js: list[Job], _stats: Stats, budget: Budget, _on_pass: PassHook) -> list[Outcome]:
        batches.append([j.texts[0] for j in js])
        passes.append(len(budget.passes([len(s.ids) for j in js for s in j.sequences])))
        return [[{} for _ in j.texts] for j in js]

    async def main() -> None:
        batcher = Batcher(Served(object(), "v1", [], 0.0), settings, Metrics(), run=run)
        batcher.start()
        try:
            answers = await asyncio.gather(*(batcher.submit(j) for j in jobs))
        finally:
            await batcher.stop()
        assert all(version == "v1" for _, version in answers)

    asyncio.run(main())
    return batches, passes


def test_gathering_counts_padded_tokens_as_pass_cutting_does() -> None:
    # a: one 20-token sequence; b: two 2-token ones. Unpadded they are 24 tokens (under 40), padded to the longest
    # 3 x 20 = 60 (over): b waits for the next batch, and every batch is one pass
    settings = ServeSettings(max_batch_size=32, max_batch_tokens=40, max_batch_wait_ms=200)
    batches, passes = gathered(settings, [job("a", 20), job("b", 2, 2), job("c", 2)])
    assert batches == [["a"], ["b", "c"]] and passes == [1, 1]


def test_gathering_stops_at_the_sequence_limit_and_an_oversized_request_runs_alone() -> None:
    settings = ServeSettings(max_batch_size=3, max_batch_tokens=None, max_batch_wait_ms=200)
    batches, passes = gathered(settings, [job("a", 5, 5), job("b", 5, 5), job("c", 5, 5, 5, 5), job("d", 5)])
    assert batches == [["a"], ["b"], ["c"], ["d"]] and passes == [1, 1, 2, 1]


def test_budget_fits_rows_times_the_longest() -> None:
    b = Budget(4, 40)
    assert b.fits(2, 20) and not b.fits(3, 20) and not b.fits(5, 1) and Budget(4).fits(4, 10_000)


def test_a_gathered_batch_of_mixed_lengths_runs_as_length_buckets() -> None:
    jobs = [job("a", 5), job("b", 30), job("c", 6), job("d", 31)]
    bucketed = ServeSettings(max_batch_size=32, max_batch_wait_ms=200)  # the default --max-padding 0.2
    assert gathered(bucketed, jobs) == ([["a", "b", "c", "d"]], [2])  # one batch, two passes: 5,6 and 30,31
    one_pass = ServeSettings(max_batch_size=32, max_batch_wait_ms=200, max_padding=1.0)
    assert gathered(one_pass, jobs) == ([["a", "b", "c", "d"]], [1])
