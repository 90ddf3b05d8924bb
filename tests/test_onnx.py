"""ONNX export: one graph, a named output per task, dynamic axes, ONNX Runtime equal to PyTorch within 1e-4."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose, load, save_composed
from mtbranch.export.onnx import check_onnx, encode, export_onnx, session, write_triton_repository
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch

TEXTS = ["the movie was very good !", "bad", "john visited paris and london in the new york city . " * 3,
         "mary works at google in berlin", "", "it"]
PAIRS = ["a great film", "terrible acting", "mary works at google", "good", "the city", "fun"]


@pytest.fixture(scope="module")
def artifact(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("onnx")
    dirs = [make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=2, seed=1),
            make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1,
                        head="token_classification", seed=2),
            make_branch(tiny_bert_dir, base / "similarity", name="similarity", depth=2, layers=1, head="regression",
                        signature="pair", pooling="mean", seed=3),
            make_branch(tiny_bert_dir, base / "topics", name="topics", depth=1, layers=0, head="multilabel",
                        pooling="attention", seed=4),
            make_branch(tiny_bert_dir, base / "probe", name="probe", depth=4, layers=0, pooling="mean",
                        projection=False, seed=5)]
    model = compose(load_trunk_source(tiny_bert_dir), [(d, "directory") for d in dirs])
    save_composed(model, base / "composed")
    return base / "composed"


@pytest.fixture(scope="module")
def exported(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, dict[str, Any]]:
    model = load(artifact)
    out = tmp_path_factory.mktemp("export") / "onnx"
    info = export_onnx(model, out)
    return model, out, info


def test_one_graph_named_outputs_dynamic_axes(exported: tuple[Any, Path, dict[str, Any]]) -> None:
    model, out, info = exported
    sess = session(out)
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(len(i.shape) == 2 and not any(isinstance(d, int) for d in i.shape) for i in sess.get_inputs())
    outputs = {o.name: o.shape for o in sess.get_outputs()}
    assert set(outputs) == set(model.task_names) == {o["name"] for o in info["outputs"]}
    assert isinstance(outputs["entities"][1], str) and outputs["entities"][2] == 5  # [batch, sequence, labels]
    assert outputs["sentiment"][1] == 2 and outputs["topics"][1] == 3
    assert json.loads((out / "onnx.json").read_text())["outputs"] == info["outputs"]
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()
    assert not list(out.parent.glob(".onnx.tmp-*"))  # written via a temporary sibling, renamed


@pytest.mark.parametrize("n", [1, 3, 6])
def test_onnx_runtime_equals_pytorch(exported: tuple[Any, Path, dict[str, Any]], n: int) -> None:
    model, out, _ = exported
    diffs = check_onnx(model, out, TEXTS[:n], PAIRS[:n])  # other batch sizes and lengths than at export
    assert set(diffs) == set(model.task_names)
    assert max(diffs.values()) <= 1e-4, diffs


def test_results_from_onnx_match_predict(exported: tuple[Any, Path, dict[str, Any]]) -> None:
    """The ONNX logits, post-processed as predict does, give predict's labels."""
    model, out, info = exported
    sess = session(out)
    enc = encode(model, TEXTS, None, info["max_length"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {k: v.numpy() for k, v in enc.items()}),
                   strict=True))
    want = model.predict(TEXTS, tasks=["sentiment"], raw=True)
    for i, w in enumerate(want):
        np.testing.assert_allclose(got["sentiment"][i], w["sentiment"]["raw"], atol=1e-4)
        labels = info["outputs"][[o["name"] for o in info["outputs"]].index("sentiment")]["labels"]
        assert labels[int(np.argmax(got["sentiment"][i]))] == w["sentiment"]["label"]


def test_triton_repository(exported: tuple[Any, Path, dict[str, Any]], tmp_path: Path) -> None:
    model, out, _ = exported
    repo = write_triton_repository(out, tmp_path / "repo", name="mt")
    assert (repo / "1" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    cfg = (repo / "config.pbtxt").read_text()
    assert 'name: "mt"' in cfg and 'platform: "onnxruntime_onnx"' in cfg and "max_batch_size: 32" in cfg
    blocks = dict(re.findall(r'name: "([^"]+)"\s+data_type: \w+\s+dims: \[ ([^\]]*) \]', cfg))
    assert blocks["input_ids"] == "-1" and blocks["sentiment"] == "2" and blocks["entities"] == "-1, 5"
    assert set(blocks) == {"input_ids", "attention_mask", "token_type_ids", *model.task_names}


def test_cli_export_subset_and_triton(artifact: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["export-onnx", str(artifact), "-o", str(tmp_path / "o"), "--task", "similarity",
                                 "--triton", str(tmp_path / "repo")])
    assert r.exit_code == 0, r.output
    assert "similarity: max abs diff vs PyTorch" in r.output
    assert [o.name for o in session(tmp_path / "o").get_outputs()] == ["similarity"]
    assert (tmp_path / "repo" / "mtbranch" / "config.pbtxt").is_file()
    bad = CliRunner().invoke(cli, ["export-onnx", str(artifact), "-o", str(tmp_path / "x"), "--task", "nope"])
    assert bad.exit_code == 2 and "unknown --task nope" in bad.output and not (tmp_path / "x").exists()

