"""Per-branch int8 (mtbranch.sdk.int8_gate, `mtbranch quantize`): a branch is kept int8 only where its dev metric
drops at most the bound, the lock records it, and the float32 branches of the mixed model answer bit for bit as
in the all-float32 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mtbranch.cli.main import cli
from mtbranch.composition.artifact import LOCK_NAME, compose, load, save_composed
from mtbranch.errors import IntegrityError
from mtbranch.trunk.source import load_trunk_source
from tests.helpers import make_branch

TEXTS = ["the movie was very good", "bad", "john visited paris and london", "it was not fun , it was boring",
         "mary works at google in new york city", "this film is great", "terrible acting and a bad plot",
         "love it", "the company of john in berlin", "a new actor", "that was very very good", "hate this"]


@pytest.fixture()
def artifact(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    dirs = [make_branch(tiny_bert_dir, tmp_path / "score", name="score", depth=2, layers=2, head="regression",
                        pooling="mean", seed=1),
            make_branch(tiny_bert_dir, tmp_path / "sentiment", name="sentiment", depth=2, layers=1, seed=2),
            make_branch(tiny_bert_dir, tmp_path / "entities", name="entities", depth=3, layers=1,
                        head="token_classification", seed=3),
            make_branch(tiny_bert_dir, tmp_path / "probe", name="probe", depth=4, layers=0, seed=4)]
    save_composed(compose(load_trunk_source(tiny_bert_dir), [(d, "directory") for d in dirs]), tmp_path / "c")
    return tmp_path / "c"


def _dev_file(artifact: Path, tmp_path: Path) -> Path:
    """The float32 model's own scores as labels: Pearson 1.0 in float32, a little less in int8."""
    scores = [r["score"]["value"] for r in load(artifact).predict(TEXTS, tasks=["score"])]
    path = tmp_path / "dev.tsv"
    path.write_text("".join(f"{t}\t{s!r}\n" for t, s in zip(TEXTS, scores, strict=True)))
    return path


def _quantize(artifact: Path, dev: Path, *extra: str) -> list[dict]:
    res = CliRunner().invoke(cli, ["quantize", str(artifact), "--dev", f"score={dev}", "--dev-no-header", "--json",
                                   "--threads", "1", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _precisions(artifact: Path) -> dict[str, str | None]:
    lock = json.loads((artifact / LOCK_NAME).read_text())
    return {e["name"]: e.get("precision") for e in lock["branches"]}


def test_the_gate_refuses_a_branch_past_the_bound_and_keeps_it_within(artifact: Path, tmp_path: Path) -> None:
    dev = _dev_file(artifact, tmp_path)
    [refused] = _quantize(artifact, dev, "--max-drop", "0")
    assert refused["float32"] == pytest.approx(100.0) and refused["int8"] < 100.0
    assert refused["precision"] == "float32" and "refused" in refused["reason"]
    assert _precisions(artifact)["score"] is None  # float32: the lock is unchanged
    [kept] = _quantize(artifact, dev, "--max-drop", "0.5")
    assert kept["precision"] == "int8" and 100.0 - kept["int8"] <= 0.5
    assert _precisions(artifact) == {"score": "int8", "sentiment": None, "entities": None, "probe": None}


def test_mixed_model_float_branches_are_bit_identical_to_the_all_float_model(artifact: Path, tmp_path: Path
                                                                              ) -> None:
    from mtbranch.sdk.int8_gate import Decision, record

    all_float = load(artifact)
    record(artifact, [Decision("score", "pearson", 100.0, 99.9, "int8", "kept"),
                      Decision("sentiment", "accuracy", 90.0, 89.0, "float32", "refused")])
    mixed = load(artifact)
    assert type(mixed.branch("score").layers[0].attention.self.query) is not torch.nn.Linear  # dynamic int8
    assert type(mixed.branch("sentiment").layers[0].attention.self.query) is torch.nn.Linear
    assert type(mixed.trunk.layers[0].attention.self.query) is torch.nn.Linear  # the shared trunk stays float
    enc = all_float.tokenizer(TEXTS, padding=True, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    before, after = all_float(*args), mixed(*args)
    for name in ("sentiment", "entities", "probe"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["score"], after["score"])
    # `update` keeps the recorded precision of the branches it does not replace
    save_composed(mixed, tmp_path / "again")
    assert _precisions(tmp_path / "again")["score"] == "int8"


def test_a_branch_without_layers_stays_float_and_a_bad_precision_is_refused(artifact: Path) -> None:
    from mtbranch.sdk.data import Dataset, TextExample
    from mtbranch.sdk.int8_gate import gate

    model = load(artifact)
    dev = Dataset([TextExample(t, None, ["negative", "positive"][i % 2]) for i, t in enumerate(TEXTS)])
    [d] = gate(model, {"probe": dev})
    assert d.precision == "float32" and d.int8 is None and "no layers" in d.reason
    lock = json.loads((artifact / LOCK_NAME).read_text())
    lock["branches"][0]["precision"] = "int4"
    (artifact / LOCK_NAME).write_text(json.dumps(lock))
    with pytest.raises(IntegrityError, match="precision"):
        load(artifact)
