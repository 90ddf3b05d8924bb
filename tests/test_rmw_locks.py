"""Read-modify-write under one lock (issue 30, item 2): two concurrent ``update`` of one artifact keep both
changes; a second ``build`` of one output fails at once instead of overwriting the first one's state."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest
import sdk_fixtures
from sdk_fixtures import write_sentiment

import mtbranch.composition.artifact as artifact_mod
from mtbranch.composition.artifact import compose, read_lock, save_composed, update_composed, verify_artifact
from mtbranch.errors import MtbranchError
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir


def test_two_concurrent_updates_keep_both_changes(tiny_bert_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_branch(tiny_bert_dir, tmp_path / "a", name="sentiment", depth=2, layers=1, seed=1)
    b = make_branch(tiny_bert_dir, tmp_path / "b", name="intent", depth=2, layers=1, seed=2)
    c = make_branch(tiny_bert_dir, tmp_path / "c", name="topic", depth=2, layers=1, seed=3)
    art = tmp_path / "composed"
    save_composed(compose(load_trunk_source(tiny_bert_dir), [(a, "directory")]), art)
    # both updaters have read the artifact before either writes (without the lock): the barrier lines them up;
    # with the lock the second cannot read before the first has written, the barrier times out and both go on
    barrier = threading.Barrier(2, timeout=3)
    original = artifact_mod.save_composed

    def save_after_both_read(model: Any, out: Any) -> dict[str, Any]:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return original(model, out)

    monkeypatch.setattr(artifact_mod, "save_composed", save_after_both_read)
    errors: list[BaseException] = []

    def put(branch: Path) -> None:
        try:
            update_composed(art, put=[branch])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(d,)) for d in (b, c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(read_lock(art).names) == ["intent", "sentiment", "topic"]
    assert verify_artifact(art) == []


RECIPE = """
out = "out"
[branch]
name = "tiny"
[task]
type = "classification"
trunk = "{trunk}"
[data]
train = "train.tsv"
dev = "dev.tsv"
[sweep]
min_layers = 1
max_layers = 1
[plugin]
enabled = false
"""


class _SecondEntered(Exception):
    """The second build reached the sweep stage while the first was still in it."""


def test_second_build_of_one_output_fails_while_the_first_runs(sdk_trunk_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import mtbranch.sdk.sweep as sweep_mod
    from mtbranch.sdk.build import run_build

    write_sentiment(tmp_path / "train.tsv", 40, seed=1)
    write_sentiment(tmp_path / "dev.tsv", 20, seed=2)
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(trunk=sdk_trunk_dir))
    inside, release = threading.Event(), threading.Event()
    calls = []

    def fake_sweep(*_args: Any, **_kw: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise _SecondEntered
        inside.set()
        release.wait(60)
        raise RuntimeError("first build stopped by the test")

    monkeypatch.setattr(sweep_mod, "sweep", fake_sweep)
    first_error: list[BaseException] = []

    def first() -> None:
        try:
            run_build(recipe, progress=False, on_event=lambda _m: None)
        except BaseException as exc:
            first_error.append(exc)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(60)
        with pytest.raises(MtbranchError, match="another `mtbranch build` is writing this output"):
            run_build(recipe, progress=False, on_event=lambda _m: None)
    finally:
        release.set()
        t.join(60)
    assert len(calls) == 1 and isinstance(first_error[0], RuntimeError)
    # the lock goes with the first build: a later build of the output runs again
    with pytest.raises(_SecondEntered):
        calls.append(1)
        run_build(recipe, progress=False, on_event=lambda _m: None)
