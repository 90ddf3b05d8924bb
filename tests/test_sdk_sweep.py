"""Depth sweep: selection rules, and the frozen trunk running once per example per sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
import sdk_fixtures
from sdk_fixtures import sentiment_data

from mtbranch.errors import UsageError
from mtbranch.sdk import features
from mtbranch.sdk.sweep import format_table, select_layers, sweep
from mtbranch.sdk.train import BranchInfo, TrainConfig

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the shared tiny trunk (fixture)


def test_selection_rules() -> None:
    scores = {1: 0.80, 2: 0.85, 3: 0.862, 4: 0.865, 5: 0.87}
    assert select_layers(scores, "best") == 5
    assert select_layers(scores, "within:1") == 3  # 0.862 >= 0.87 * 0.99
    assert select_layers(scores, "within:0") == 5
    assert select_layers(scores, "marginal:1.0") == 3  # +5, +1.2 points; +0.3 stops
    assert select_layers(scores, "marginal:6") == 1
    assert select_layers({1: 0.5, 2: 0.4}, "best", lower_is_better=True) == 2
    assert select_layers({1: 0.9, 2: 0.9}, "best") == 1  # ties go to the smaller branch
    for bad in ("worst", "within:", "marginal:x", "within:-1"):
        with pytest.raises(UsageError):
            select_layers(scores, bad)


def test_sweep_runs_trunk_once_per_example(sdk_trunk_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """3 values of L x 2 epochs: each trunk layer still sees every example exactly once (train + dev)."""
    calls: dict[int, int] = {}
    real_load = features.load_trunk

    def counting_load(source, depth=None, **kw):  # type: ignore[no-untyped-def]
        trunk = real_load(source, depth, **kw)
        for k, layer in enumerate(trunk.layers, start=1):
            layer.register_forward_hook(lambda m, a, o, k=k: calls.__setitem__(k, calls.get(k, 0) + a[0].shape[0]))
        trunk.embeddings.register_forward_hook(lambda m, a, o: calls.__setitem__(0, calls.get(0, 0) + o.shape[0]))
        return trunk

    monkeypatch.setattr(features, "load_trunk", counting_load)
    tr, dev = sentiment_data(tmp_path, 48, 16)
    cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=16, max_length=32, progress=False)
    res = sweep(str(sdk_trunk_dir), "classification", tr, dev, min_layers=1, max_layers=3, rule="best", cfg=cfg,
                info=BranchInfo("sent"), out_dir=tmp_path / "selected")
    n = len(tr.examples) + len(dev.examples)
    # depths 1..3 are needed; layer 4 (above the deepest depth) is never run
    assert calls == {0: n, 1: n, 2: n, 3: n}
    assert [r.layers for r in res.rows] == [1, 2, 3] and [r.depth for r in res.rows] == [3, 2, 1]
    # rule "best": the L with the highest dev metric, the smaller L on a tie (computed here from the rows)
    scores = {r.layers: r.metrics[res.metric] for r in res.rows}
    best = max(scores.values())
    assert res.selected == min(L for L, s in scores.items() if s == best)
    from mtbranch.branch.model import load_branch

    b = load_branch(tmp_path / "selected")
    assert b.manifest.num_layers == res.selected and b.manifest.training["sweep"]["selected_layers"] == res.selected
    table = format_table(res)
    assert table.count("\n") == 4 and "(selected)" in table
