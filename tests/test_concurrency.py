"""predict from many threads, and a branch swapped in a live model while threads predict.

Every threaded result must equal the sequential one; with swaps, every request must see one whole version of
the swapped branch (all its micro-batches from the same version), and the other branches never change.
docs/scripts/stress.py runs the same checks at the issue's scale on the composed example model.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from mtbranch.branch.model import load_branch
from mtbranch.composition.artifact import compose
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

WORDS = ["the", "movie", "was", "very", "good", "bad", "boring", "fun", "john", "visited", "paris", "and",
         "london", "in", "new", "york", "city"]
TEXTS = [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 9)) for i in range(48)]
PAIRS = [" ".join(reversed(t.split())) for t in TEXTS]


@pytest.fixture(scope="module")
def setup(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("concurrency")
    return {
        "v1": make_branch(tiny_bert_dir, base / "v1", name="sentiment", depth=2, layers=1, seed=1),
        "v2": make_branch(tiny_bert_dir, base / "v2", name="sentiment", depth=2, layers=1, seed=2),
        "entities": make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1,
                                head="token_classification", seed=3),
        "similarity": make_branch(tiny_bert_dir, base / "similarity", name="similarity", depth=1, layers=1,
                                  head="regression", signature="pair", seed=4),
    }


def _model(trunk: Path, setup: dict[str, Path]):
    return compose(load_trunk_source(trunk), [(setup[n], "directory") for n in ("v1", "entities", "similarity")])


@pytest.mark.slow
def test_predict_from_many_threads_equals_sequential(tiny_bert_dir: Path, setup: dict[str, Path]) -> None:
    torch.set_num_threads(1)
    model = _model(tiny_bert_dir, setup)
    reference = [model.predict([t], text_pairs=[p], raw=True)[0] for t, p in zip(TEXTS, PAIRS, strict=True)]
    calls = [(w, k) for w in range(8) for k in range(60)]

    def call(wk: tuple[int, int]) -> bool:
        i = (wk[0] * 13 + wk[1] * 5) % len(TEXTS)
        return model.predict([TEXTS[i]], text_pairs=[PAIRS[i]], raw=True)[0] == reference[i]

    with ThreadPoolExecutor(8) as pool:
        same = list(pool.map(call, calls))
    assert len(same) == 480 and all(same)
    # batched requests from many threads equal the sequential batched result too
    batched = model.predict(TEXTS, text_pairs=PAIRS, raw=True, batch_size=8)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: model.predict(TEXTS, text_pairs=PAIRS, raw=True, batch_size=8), range(16)))
    assert all(r == batched for r in results)


def test_branch_swap_while_predicting_is_never_mixed(tiny_bert_dir: Path, setup: dict[str, Path]) -> None:
    torch.set_num_threads(1)
    model = _model(tiny_bert_dir, setup)
    versions = {"v1": load_branch(setup["v1"]), "v2": load_branch(setup["v2"])}
    expected = {}
    for name, branch in versions.items():
        model.put_branch(branch)
        expected[name] = model.predict(TEXTS, tasks=["sentiment", "entities"], raw=True, batch_size=8)
    assert [r["sentiment"] for r in expected["v1"]] != [r["sentiment"] for r in expected["v2"]]
    assert [r["entities"] for r in expected["v1"]] == [r["entities"] for r in expected["v2"]]

    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            model.put_branch(versions["v2" if swaps % 2 == 0 else "v1"])
            swaps += 1

    def request(_: int) -> str:
        # 48 texts in micro-batches of 8: six forward passes, each of which could see a swap
        got = model.predict(TEXTS, tasks=["sentiment", "entities"], raw=True, batch_size=8)
        assert [r["entities"] for r in got] == [r["entities"] for r in expected["v1"]]
        for name in ("v1", "v2"):
            if [r["sentiment"] for r in got] == [r["sentiment"] for r in expected[name]]:
                return name
        return "mixed"

    t = threading.Thread(target=swapper)
    t.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            seen = list(pool.map(request, range(40)))
    finally:
        stop.set()
        t.join()
    assert "mixed" not in seen
    assert swaps > 40 and {"v1", "v2"} <= set(seen), (swaps, seen)  # the swaps really happened mid-traffic
