"""The installed ``mtbranch-head-multilabel`` plugin adds a trainable head type from outside the SDK: it is
discovered through its entry point (no torch imported), ``mtbranch train --task multi-label`` trains it on a tiny
BERT trunk, ``mtbranch distill`` distills it, ``mtbranch migrate`` moves it to another trunk, ``mtbranch compose``
composes it beside a built-in classification branch, and ``mtbranch predict`` and the HTTP server answer with its
label sets. Every step is the CLI's."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtbranch.plugins.manager import PluginManager, set_plugin_manager

PLUGIN = "mtbranch-head-multilabel"
TOPICS = {"sports": ["game", "team", "goal", "match"], "music": ["song", "band", "album", "guitar"],
          "politics": ["vote", "election", "party", "law"]}
FILL = ["the", "a", "was", "is", "today", "very", "new", "this", "it", "and", "of", "at"]
MOODS = {"positive": ["good", "great", "fun"], "negative": ["bad", "boring", "awful"]}
WORDS = [*FILL, *(w for ws in TOPICS.values() for w in ws), *(w for ws in MOODS.values() for w in ws)]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MTBRANCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MTBRANCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("MTBRANCH_PLUGINS", raising=False)
    set_plugin_manager(None)


def cli(*args: str) -> str:
    from mtbranch.cli.main import cli as main

    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_head_type_is_discovered_with_its_training_side_without_torch() -> None:
    from mtbranch.heads.training import HeadTraining

    pm = PluginManager(autoload=True)
    types = pm.head_types()
    assert "multi_label" in types, f"not registered; plugin findings: {pm.findings}"
    assert isinstance(types["multi_label"].training, HeadTraining)
    info = {i.name: i for i in pm.plugin_infos()}[PLUGIN]
    assert info.head_types == ["multi_label"] and info.hooks == ["mtbranch_head_types"] and not info.errors
    code = ("import sys, mtbranch_head_multilabel as m; m.mtbranch_head_types(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_label_reader() -> None:
    from mtbranch_head_multilabel.training import read_label

    assert read_label("sports#music") == ("music", "sports")
    assert read_label(" politics ") == ("politics",)
    assert read_label(["music", "sports", "music"]) == ("music", "sports")
    for bad in ("", "#", "sports##music", 3, ["a", 1]):
        with pytest.raises(ValueError):
            read_label(bad)


def make_trunk(path: Path, seed: int = 0) -> Path:
    """A tiny random BERT trunk with a WordPiece tokenizer over the test's words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def topic_text(rng: random.Random, topics: list[str]) -> str:
    words = rng.sample(FILL, 3) + [rng.choice(TOPICS[t]) for t in topics]
    rng.shuffle(words)
    return " ".join(words)


def write_topics(path: Path, n: int, seed: int) -> Path:
    """``text<TAB>labels``: one or two topics per text, named by their words, joined by '#'."""
    rng = random.Random(seed)
    lines = ["text\tlabels"]
    for _ in range(n):
        topics = sorted(rng.sample(sorted(TOPICS), rng.choice([1, 2])))
        lines.append(f"{topic_text(rng, topics)}\t{'#'.join(topics)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_moods(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["text\tlabel"]
    for _ in range(n):
        mood = rng.choice(sorted(MOODS))
        lines.append(f"{' '.join([*rng.sample(FILL, 3), rng.choice(MOODS[mood])])}\t{mood}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_train_distill_compose_predict_and_serve(tmp_path: Path) -> None:
    trunk = make_trunk(tmp_path / "trunk")
    train, dev = write_topics(tmp_path / "train.tsv", 240, 1), write_topics(tmp_path / "dev.tsv", 60, 2)
    common = ["--trunk", trunk, "--train", train, "--dev", dev, "--text-col", "text", "--label-col", "labels",
              "--batch-size", "16", "--max-length", "32", "--no-progress", "--json"]

    # mean pooling: the topic words decide, wherever they sit (0.99 dev micro-F1 by epoch 7 when written)
    out = json.loads(cli("train", "--task", "multi-label", *common, "--layers", "2", "--epochs", "10",
                         "--patience", "0", "--lr", "3e-3", "--pooling", "mean", "--name", "topics",
                         "-o", tmp_path / "topics"))
    assert out["metric"] == "micro_f1" and set(out["dev"]) == {"micro_f1", "macro_f1", "exact_match"}
    assert out["dev"]["micro_f1"] >= 0.95, out["history"]  # the words name the topics: the head learns them
    manifest = json.loads((tmp_path / "topics" / "manifest.json").read_text())
    assert manifest["head"]["type"] == "multi_label"
    assert manifest["head"]["labels"] == ["music", "politics", "sports"]
    assert manifest["training"]["metric"] == "micro_f1"

    # the soft (distillation) loss: a 1-layer student of the 2-layer teacher
    dist = json.loads(cli("distill", "--teacher", tmp_path / "topics", "--student-layers", "1", *common,
                          "--epochs", "4", "--lr", "3e-3", "-o", tmp_path / "topics-l1"))
    assert dist["metric"] == "micro_f1" and 0.0 <= dist["student"]["micro_f1"] <= 1.0

    # migration to another trunk from unlabelled texts: the teacher's label sets are the targets
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(line.split("\t")[0] for line in train.read_text().splitlines()[1:]) + "\n")
    report = json.loads(cli("migrate", tmp_path / "topics", "--from-trunk", trunk, "--to-trunk",
                            make_trunk(tmp_path / "trunk2", seed=1), "--texts", texts, "--layers", "2", "--epochs", "3",
                            "--lr", "3e-3", "--speed-texts", "0", "--no-progress", "--json", "-o", tmp_path / "mig"))
    (record,) = report["branches"]
    assert record["task"] == "multi_label" and record["agreement"]["metric"] == "micro_f1"
    assert json.loads((tmp_path / "mig" / "branches" / "topics" / "manifest.json").read_text())["head"]["labels"] == [
        "music", "politics", "sports"]

    # a built-in classification branch on the same trunk, composed beside it
    cli("train", "--task", "classification", "--trunk", trunk, "--train", write_moods(tmp_path / "m-train.tsv", 80, 3),
        "--dev", write_moods(tmp_path / "m-dev.tsv", 20, 4), "--text-col", "text", "--label-col", "label",
        "--max-length", "32", "--no-progress", "--layers", "1", "--epochs", "1", "--name", "moods",
        "-o", tmp_path / "moods")
    cli("compose", "--branch", tmp_path / "topics", "--branch", tmp_path / "moods", "--trunk", trunk,
        "-o", tmp_path / "composed")

    rng = random.Random(9)
    texts = {("sports",): topic_text(rng, ["sports"]), ("music", "politics"): topic_text(rng, ["music", "politics"])}
    rows = json.loads(cli("predict", tmp_path / "composed", *texts.values(), "--json"))  # one result per text
    for want, row in zip(texts, rows, strict=True):
        assert tuple(row["topics"]["labels"]) == want, row
        assert set(row["topics"]["scores"]) == {"music", "politics", "sports"}
        assert row["moods"]["label"] in MOODS

    from fastapi.testclient import TestClient

    from mtbranch.serve.app import create_app

    with TestClient(create_app(artifact=str(tmp_path / "composed"))) as client:
        deadline = time.time() + 60
        while client.get("/ready").status_code != 200:
            assert time.time() < deadline, client.get("/ready").json()
            time.sleep(0.05)
        tasks = {t["name"]: t for t in client.get("/tasks").json()}
        assert tasks["topics"]["head"] == "multi_label"
        r = client.post("/predict", json={"texts": list(texts.values()), "tasks": ["topics"]})
        assert r.status_code == 200, r.text
        for want, row in zip(texts, r.json()["results"], strict=True):
            assert tuple(row["topics"]["labels"]) == want, row


def test_a_bad_label_names_the_file_and_line(tmp_path: Path) -> None:
    from mtbranch.cli.main import cli as main

    bad = tmp_path / "train.tsv"
    bad.write_text("text\tlabels\nthe game\tsports\nthe song\tmusic##sports\n")
    res = CliRunner().invoke(main, ["train", "--task", "multi-label", "--trunk", str(tmp_path / "none"), "--train",
                                    str(bad), "--dev-split", "0.5", "--text-col", "text", "--label-col", "labels",
                                    "--name", "t", "-o", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    assert f"{bad}: line 3: an empty label name" in res.output and "Traceback" not in res.output
