"""Length buckets (mtbranch.composition.buckets): serve's batches and predict's inputs run in passes of near-equal
lengths, and every answer comes back in request order, equal to the input run alone: the same labels and spans,
scores within float rounding (not bit for bit: the CPU GEMM rounds differently with the number of rows in a pass,
even for rows of equal length without padding, measured ~1e-6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtbranch.composition.buckets import buckets, padded_tokens
from tests.helpers import make_serving_artifact, results_close

# mixed lengths as real traffic has them: short commands next to long sentences
TEXTS = ["good", "the movie was very good and the acting was great", "bad", "john visited paris",
         "this film is not fun , it is boring and the plot is bad and the actor is terrible", "love it",
         "mary works at google in new york city", "it was great", "hate", "the company of john in london"]


def test_buckets_cut_where_a_pass_would_be_mostly_padding() -> None:
    lengths = [5, 30, 6, 31, 5, 29]
    assert buckets(lengths, 32, max_padding=None) == [[0, 4, 2, 5, 1, 3]]  # one pass: 50% padding
    assert buckets(lengths, 32, max_padding=0.2) == [[0, 4, 2], [5, 1, 3]]
    assert buckets(lengths, 32, max_padding=0.0) == [[0, 4], [2], [5], [1], [3]]
    assert buckets(lengths, 2, max_padding=None) == [[0, 4], [2, 5], [1, 3]]  # the row limit still holds
    assert buckets([4, 4, 50], 32, max_tokens=60) == [[0, 1], [2]]  # the token limit too; 50 alone
    assert padded_tokens([5, 6, 5]) == 18


@pytest.fixture(scope="module")
def model(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from mtbranch.composition.artifact import load

    return load(make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("buckets")))


def test_predict_in_buckets_equals_each_text_alone(model) -> None:  # type: ignore[no-untyped-def]
    pairs = list(reversed(TEXTS))
    together = model.predict(TEXTS, text_pairs=pairs, raw=True, batch_size=32)
    alone = [model.predict([t], text_pairs=[p], raw=True)[0] for t, p in zip(TEXTS, pairs, strict=True)]
    assert results_close(together, alone)  # in input order; padding is masked


def test_serve_passes_are_buckets_and_answers_equal_each_request_alone(model) -> None:  # type: ignore[no-untyped-def]
    from mtbranch.serve.batching import Budget, prepare_job, run_jobs

    jobs = [prepare_job(model, [t], None, ["sentiment", "entities"], True) for t in TEXTS]
    passes: list[tuple[int, int]] = []
    merged = run_jobs(model, jobs, budget=Budget(32, None, 0.2), on_pass=lambda n, tokens: passes.append((n, tokens)))
    real = sum(len(s.ids) for j in jobs for s in j.sequences)
    assert len(passes) > 1 and sum(t for _, t in passes) <= real / 0.8  # the batch ran as buckets
    alone = [run_jobs(model, [j])[0] for j in jobs]
    assert results_close(merged, alone)
