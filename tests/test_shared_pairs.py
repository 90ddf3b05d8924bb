"""Shared pair branches (manifest ``pair_mode: "shared"``): each text of a pair encoded alone, the first on the
single-text pass, the head over [u, v, |u-v|, u*v]; every other branch's answers unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sdk_fixtures
import torch
from click.testing import CliRunner
from sdk_fixtures import pair_data

from mtbranch.backends.ort import groups
from mtbranch.branch.model import load_branch
from mtbranch.composition.artifact import compose
from mtbranch.errors import MtbranchError
from mtbranch.serve.batching import prepare_job, run_jobs
from mtbranch.spec.manifest import SCHEMA_VERSION, parse_manifest
from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import load_trunk_source
from mtbranch.validation.validator import Validator

from helpers import make_branch, results_close

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir

TEXTS = ["a good movie", "the plot was boring and the acting bad", "london", ""]
PAIRS = ["a great film", "boring", "paris is fun", "the movie"]


@pytest.fixture(scope="module")
def dirs(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("shared-pairs")
    return {
        "sentiment": make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=1, seed=1),
        "entities": make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1,
                                head="token_classification", seed=2),
        "similarity": make_branch(tiny_bert_dir, base / "similarity", name="similarity", depth=2, layers=1,
                                  head="regression", signature="pair", pooling="mean", seed=3),
        "paraphrase": make_branch(tiny_bert_dir, base / "paraphrase", name="paraphrase", depth=3, layers=1,
                                  signature="pair", pooling="mean", seed=4, pair_mode="shared"),
    }


def _compose(tiny_bert_dir: Path, dirs: dict[str, Path], names: list[str]):
    return compose(load_trunk_source(tiny_bert_dir), [(dirs[n], "directory") for n in names])


def test_manifest_pair_mode_needs_a_pair_signature_and_old_manifests_read_as_joint(dirs: dict[str, Path]) -> None:
    data = json.loads((dirs["paraphrase"] / "manifest.json").read_text())
    assert data["pair_mode"] == "shared" and data["schema_version"] == SCHEMA_VERSION == "1.2"
    with pytest.raises(ValueError, match="input_signature 'pair'"):
        parse_manifest({**data, "tokenizer": {**data["tokenizer"], "input_signature": "single"}})
    old = {k: v for k, v in json.loads((dirs["similarity"] / "manifest.json").read_text()).items()
           if k != "pair_mode"}
    assert parse_manifest({**old, "schema_version": "1.1"}).pair_mode == "joint"


def test_shared_branch_validates_with_a_four_times_wider_head(tiny_bert_dir: Path, dirs: dict[str, Path]) -> None:
    b = load_branch(dirs["paraphrase"])
    hidden = b.manifest.trunk.structure.hidden_size
    assert b.head.classifier.weight.shape == (2, 4 * hidden)
    report = Validator(load_trunk_source(tiny_bert_dir)).validate([(dirs["paraphrase"], "directory")])
    assert not report.errors, report.errors


def test_token_head_cannot_share_pairs(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MtbranchError, match="sequence-level head"):
        make_branch(tiny_bert_dir, tmp_path / "t", name="t", depth=2, layers=1, head="token_classification",
                    signature="pair", pair_mode="shared")


def test_predict_other_branches_bit_identical_and_shared_matches_training_path(
        tiny_bert_dir: Path, dirs: dict[str, Path]) -> None:
    without = _compose(tiny_bert_dir, dirs, ["sentiment", "entities", "similarity"])
    model = _compose(tiny_bert_dir, dirs, ["sentiment", "entities", "similarity", "paraphrase"])
    base = without.predict(TEXTS, text_pairs=PAIRS, raw=True, batch_size=2)
    got = model.predict(TEXTS, text_pairs=PAIRS, raw=True, batch_size=2)
    for a, b in zip(base, got, strict=True):
        assert {k: v for k, v in b.items() if k != "paraphrase"} == a  # exactly equal, raw outputs included
    # the training path: trunk states at the branch's depth for each text alone, then pair_forward
    branch = model.branch("paraphrase")
    trunk = load_trunk(load_trunk_source(tiny_bert_dir), 3)
    with torch.inference_mode():
        for i, (t, p) in enumerate(zip(TEXTS, PAIRS, strict=True)):
            ea, eb = (model.tokenizer([x], return_tensors="pt", truncation=True, max_length=64) for x in (t, p))
            ha = trunk(ea["input_ids"], ea["attention_mask"], ea["token_type_ids"], depth=3)[3]
            hb = trunk(eb["input_ids"], eb["attention_mask"], eb["token_type_ids"], depth=3)[3]
            want = branch.pair_forward(ha, ea["attention_mask"], hb, eb["attention_mask"])[0].tolist()
            assert got[i]["paraphrase"]["raw"] == pytest.approx(want, abs=1e-5)


def test_served_rows_give_predicts_answers(tiny_bert_dir: Path, dirs: dict[str, Path]) -> None:
    model = _compose(tiny_bert_dir, dirs, ["sentiment", "entities", "similarity", "paraphrase"])
    want = model.predict(TEXTS, text_pairs=PAIRS, raw=True)
    jobs = [prepare_job(model, TEXTS[:2], PAIRS[:2], ["paraphrase", "sentiment"], True),
            prepare_job(model, TEXTS[2:], PAIRS[2:], ["entities", "paraphrase", "similarity"], True)]
    # the shared branch's first texts ride the single-text rows; its pair texts are rows of their own
    assert [r.second for r in jobs[0].sequences] == [False, False, True, True]
    out = run_jobs(model, jobs)
    assert not any(isinstance(o, BaseException) for o in out), out
    got = [*out[0], *out[1]]  # type: ignore[misc]
    for w, g in zip(want, got, strict=True):
        assert results_close({k: w[k] for k in g}, g)
    assert list(got[0]) == ["paraphrase", "sentiment"]


def test_shared_branch_needs_pairs_and_stays_out_of_onnx(tiny_bert_dir: Path, dirs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    from mtbranch.export.onnx import export_onnx

    model = _compose(tiny_bert_dir, dirs, ["sentiment", "paraphrase"])
    with pytest.raises(MtbranchError, match="paraphrase take a text pair"):
        model.predict(TEXTS)
    with pytest.raises(MtbranchError, match="take a text pair"):
        prepare_job(model, TEXTS, None, ["paraphrase"], False)
    assert [b.name for bs in groups(model).values() for b in bs] == ["sentiment"]
    with pytest.raises(MtbranchError, match="pair_mode 'shared'"):
        export_onnx(model, tmp_path / "onnx")


def test_train_shared_pair_branch_and_served_answers_match_training(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    from mtbranch.sdk.train import BranchInfo, TrainConfig, train

    tr, dev = pair_data(tmp_path, 80, 20)
    cfg = TrainConfig(epochs=2, lr=1e-3, head_lr=1e-2, batch_size=16, max_length=32, progress=False,
                      pair_mode="shared")
    res = train(str(sdk_trunk_dir), "regression", tr, dev, layers=1, depth=2, cfg=cfg,
                info=BranchInfo("similarity"), out_dir=tmp_path / "sim")
    assert res.manifest is not None and res.manifest.pair_mode == "shared"
    assert res.manifest.training["data"]["dev_examples"] == 20 and res.dev_outputs.shape == (20, 1)
    model = compose(load_trunk_source(sdk_trunk_dir), [(tmp_path / "sim", "directory")])
    got = model.predict([e.text for e in dev.examples], text_pairs=[e.pair for e in dev.examples], raw=True)
    assert [g["similarity"]["raw"][0] for g in got] == pytest.approx(res.dev_outputs[:, 0].tolist(), abs=1e-4)


def test_cli_pair_mode_shared_refuses_single_text_data(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    from mtbranch.cli.main import cli

    data = sdk_fixtures.write_sentiment(tmp_path / "train.tsv", 20, 1)
    r = CliRunner().invoke(cli, ["train", "--trunk", str(sdk_trunk_dir), "--task", "classification", "--train",
                                 str(data), "--dev-split", "0.25", "--text-col", "sentence", "--label-col", "label",
                                 "--pair-mode", "shared", "--name", "s", "--no-progress", "-o",
                                 str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    assert "pair_mode 'shared' needs text-pair data" in r.output and not (tmp_path / "out").exists()
