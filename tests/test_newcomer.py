"""Newcomer paths (issue 19): what a new team walks through, with installed plugins and missing extras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mtbranch.cli.main import cli
from mtbranch.plugins import BranchLocation, Check, TrunkProvider, hookimpl
from mtbranch.plugins.manager import PluginManager, set_plugin_manager
from mtbranch.spec.findings import Finding

from conftest import make_bert_dir
from helpers import make_branch, results_close


def run_cli(*args: Any) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"CLI raised {r.exception!r}\n{r.output}")
    return r.exit_code, r.output


# -- 1. explicit selection ----------------------------------------------------------------------------
class _OtherTeam:
    """An installed plugin whose branch was trained on another trunk, plus a trunk and a policy check."""

    def __init__(self, branch: Path, trunk: Path) -> None:
        self.branch, self.trunk = branch, trunk

    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        return [BranchLocation("other", self.branch)]

    @hookimpl
    def mtbranch_trunks(self) -> list[TrunkProvider]:
        return [TrunkProvider("tiny", self.trunk)]

    @hookimpl
    def mtbranch_checks(self) -> list[Check]:
        def needs_owner(manifest: Any, path: Path) -> list[Any]:
            if manifest.owner:
                return []
            return [Finding(code="X001", severity="warning", message="no owner", branch=manifest.name)]
        return [Check("needs-owner", needs_owner)]


@pytest.fixture
def installed_other(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("other")
    wider = make_bert_dir(base / "wider", hidden=48)
    other = make_branch(wider, base / "other", name="other", depth=3, layers=1, seed=7)
    pm = PluginManager(autoload=False)
    pm.register(_OtherTeam(other, tiny_bert_dir), "other-team")
    set_plugin_manager(pm)
    yield other
    set_plugin_manager(None)


def test_branch_dirs_select_exactly_those(installed_other: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    mine = make_branch(tiny_bert_dir, tmp_path / "mine", name="mine", depth=2, layers=1)
    code, out = run_cli("compose", "--trunk", tiny_bert_dir, "--branch", mine, "-o", tmp_path / "out")
    assert code == 0, out
    lock = json.loads((tmp_path / "out" / "mtbranch.lock.json").read_text())
    assert [e["name"] for e in lock["branches"]] == ["mine"]
    # the installed trunk name and the installed policy check still apply
    code, out = run_cli("validate", "--trunk", "tiny", "--branch", mine, "--format", "json")
    report = json.loads(out)
    assert code == 0, out
    assert [b["name"] for b in report["branches"]] == ["mine"]
    assert [f["code"] for f in report["findings"]] == ["X001"]


def test_installed_branches_join_without_branch_or_with_flag(installed_other: Path, tiny_bert_dir: Path,
                                                             tmp_path: Path) -> None:
    mine = make_branch(tiny_bert_dir, tmp_path / "mine", name="mine", depth=2, layers=1)
    code, out = run_cli("validate", "--trunk", tiny_bert_dir, "--branch", mine, "--with-installed",
                        "--format", "json")
    report = json.loads(out)
    assert {b["name"] for b in report["branches"]} == {"mine", "other"}
    assert code == 1 and any(f["code"].startswith("T") and f["branch"] == "other" for f in report["findings"])
    code, out = run_cli("validate", "--trunk", tiny_bert_dir, "--format", "json")
    assert [b["name"] for b in json.loads(out)["branches"]] == ["other"]
    # --no-plugins: no installed branches, and no plugin checks either
    code, out = run_cli("validate", "--trunk", tiny_bert_dir, "--branch", mine, "--no-plugins", "--format", "json")
    assert code == 0 and json.loads(out)["findings"] == []


def test_selection_rule_in_help_and_docs() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert "exactly those directories are used" in docs and "--with-installed" in docs
    for cmd in ("validate", "compose"):
        _, out = run_cli(cmd, "--help")
        assert "--with-installed" in out and "exactly those directories" in " ".join(out.split())


# -- 2. optional extras -------------------------------------------------------------------------------
EXTRA_COMMANDS = [
    ("accelerate", "train", ["train", "--task", "classification", "--trunk", "minilm-l6", "--train", "no.tsv",
                             "--dev", "no.tsv", "--name", "x", "-o", "out"]),
    ("seqeval", "train", ["sweep", "--task", "classification", "--trunk", "minilm-l6", "--train", "no.tsv",
                          "--dev", "no.tsv", "--name", "x", "--min-layers", "1", "--max-layers", "2"]),
    ("sklearn", "train", ["distill", "--teacher", "no-branch", "--trunk", "minilm-l6", "--train", "no.tsv",
                          "--dev", "no.tsv", "--student-layers", "1", "-o", "out"]),
    ("uvicorn", "serve", ["serve", "no-artifact"]),
    ("onnxruntime", "onnx", ["export-onnx", "no-artifact", "-o", "out"]),
    ("matplotlib", "bench", ["bench", "--scenario", "paper-mixed", "--plot", "b.png"]),
]


@pytest.mark.parametrize(("module", "extra", "args"), EXTRA_COMMANDS, ids=[a[0] for _, _, a in EXTRA_COMMANDS])
def test_missing_extra_is_one_clear_line(module: str, extra: str, args: list[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, module, None)  # as if `pip install mtbranch` only
    code, out = run_cli(*args)
    assert code == 1, out
    assert f"pip install 'mtbranch[{extra}]'" in out  # the brackets survive Rich's markup
    assert module in out and "internal error" not in out and "Traceback" not in out


def test_missing_extra_before_feature_pass(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mtbranch.errors import MissingExtra
    from mtbranch.sdk.data import Dataset, TextExample
    from mtbranch.sdk.features import FeatureCache
    from mtbranch.sdk.train import TrainConfig, prepare

    def no_features(*a: Any, **k: Any) -> Any:
        raise AssertionError("trunk features computed before the extra was checked")

    monkeypatch.setattr(FeatureCache, "get", no_features)
    monkeypatch.setitem(sys.modules, "accelerate", None)
    data = Dataset([TextExample("good film", label="pos"), TextExample("bad film", label="neg")])
    with pytest.raises(MissingExtra) as err:
        prepare(tiny_bert_dir, "classification", data, data, TrainConfig(), [2])
    assert err.value.hint == "pip install 'mtbranch[train]'"


def test_ray_without_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from mtbranch.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "mtbranch.serve.ray_app", raising=False)
    with pytest.raises(MissingExtra, match=r"\[ray\]"):
        importlib.import_module("mtbranch.serve.ray_app")


# -- 3. effective max length --------------------------------------------------------------------------
LONG = " ".join(["the good movie was very fun and john visited paris"] * 40)  # ~400 tokens


@pytest.mark.parametrize(("model_type", "positions", "tok_max", "limit"),
                         [("bert", 128, 512, 128), ("roberta", 130, None, 129)])
def test_long_text_fits_the_trunk_positions(model_type: str, positions: int, tok_max: int | None, limit: int,
                                            tmp_path: Path) -> None:
    """A tokenizer that says 512 (or nothing) on a trunk whose positions stop earlier: truncated, not a crash."""
    import mtbranch
    from mtbranch.composition.artifact import compose, save_composed
    from mtbranch.trunk.source import load_trunk_source

    trunk = make_bert_dir(tmp_path / "trunk", model_type=model_type, max_positions=positions,
                          tok_max_length=tok_max)
    b = make_branch(trunk, tmp_path / "b", name="sentiment", depth=2, layers=1, max_length=512)
    e = make_branch(trunk, tmp_path / "e", name="entities", depth=3, layers=1, head="token_classification",
                    max_length=512)
    save_composed(compose(load_trunk_source(trunk), [(b, "directory"), (e, "directory")]), tmp_path / "c")
    model = mtbranch.load(tmp_path / "c")
    assert model.max_length(model.branches) == limit  # predict, serve and ONNX export all tokenize with this
    code, out = run_cli("predict", tmp_path / "c", "--json", LONG, "a short one")
    assert code == 0, out
    assert "truncated" in out and f"max_length={limit}" in out
    results = json.loads(out[out.index("["):])
    assert len(results) == 2 and results[0]["sentiment"]["label"] in ("negative", "positive")


def test_train_max_length_capped_by_trunk(tmp_path: Path) -> None:
    from mtbranch.sdk.data import Dataset, TextExample
    from mtbranch.sdk.train import TrainConfig, prepare

    trunk = make_bert_dir(tmp_path / "trunk", max_positions=128, tok_max_length=512)
    data = Dataset([TextExample(LONG, label="pos"), TextExample("bad film", label="neg")])
    prep = prepare(trunk, "classification", data, data, TrainConfig(max_length=512, progress=False), [2])
    assert prep.max_length == 128 and max(len(ids) for ids in prep.train.input_ids) == 128


def test_tokenizer_without_a_limit() -> None:
    from types import SimpleNamespace

    from mtbranch.trunk.tokenizer import effective_max_length, position_limit, tokenizer_limit

    assert tokenizer_limit(SimpleNamespace(model_max_length=int(1e30))) is None
    roberta = {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    assert position_limit(roberta) == 512
    # the family record says where positions start (issue 26): XLM-R numbers them as RoBERTa (was 514), BERT from 0
    assert position_limit({**roberta, "model_type": "xlm-roberta"}) == 512
    assert position_limit({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}) == 512
    assert position_limit({"model_type": "no-such-family", "max_position_embeddings": 300}) == 300
    assert effective_max_length(None, SimpleNamespace(model_max_length=int(1e30)), roberta) == 512
    assert effective_max_length(64, SimpleNamespace(model_max_length=512), roberta) == 64


# -- 4. labels seen only in dev -----------------------------------------------------------------------
def test_dev_only_label_is_a_warning_and_a_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np
    from sdk_fixtures import make_sdk_trunk, sentiment_data

    from mtbranch.sdk.data import Dataset, TextExample
    from mtbranch.sdk.train import BranchInfo, TrainConfig, train

    trunk = make_sdk_trunk(tmp_path / "trunk")
    tr, dev = sentiment_data(tmp_path, 60, 20)
    extra = [TextExample("the plot was not fun", label="2"), TextExample("a boring plot", label="2"),
             TextExample("john hate it", label="3")]
    dev = Dataset(dev.examples + extra, dev.sources)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_length=32, progress=False)
    with caplog.at_level("WARNING", logger="mtbranch"):
        res = train(trunk, "classification", tr, dev, layers=1, cfg=cfg, info=BranchInfo("s"), out_dir=tmp_path / "b")
    text = caplog.text
    assert "'2' (2 occurrence(s))" in text and "'3' (1 occurrence(s))" in text
    assert res.manifest is not None and res.manifest.head.labels == ["0", "1"]
    pred = res.dev_outputs.argmax(-1)
    gold = [int(e.label) for e in dev.examples]  # labels "0"/"1" have ids 0/1; "2"/"3" can never be predicted
    assert res.metrics["accuracy"] == pytest.approx(float(np.mean(pred == np.asarray(gold))))
    assert res.metrics["accuracy"] <= 20 / 23


def test_dev_only_bio_tag_scored_as_missed_entity(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from sdk_fixtures import conll_data, make_sdk_trunk

    from mtbranch.sdk.data import Dataset, TokenExample
    from mtbranch.sdk.train import BranchInfo, TrainConfig, train

    trunk = make_sdk_trunk(tmp_path / "trunk")
    tr, dev = conll_data(tmp_path, 40, 10)
    dev = Dataset([*dev.examples, TokenExample(["google", "works", "in", "paris"], ["B-ORG", "O", "O", "B-LOC"])],
                  dev.sources)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_length=32, progress=False)
    with caplog.at_level("WARNING", logger="mtbranch"):
        res = train(trunk, "token_classification", tr, dev, layers=1, cfg=cfg, info=BranchInfo("e"))
    assert "'B-ORG' (1 occurrence(s))" in caplog.text
    names = res.module.manifest.head.labels
    assert "B-ORG" not in names
    # perfect outputs on every tag the head knows: the ORG entity is the one miss, exactly
    import numpy as np

    from mtbranch.sdk.metrics import IGNORE_INDEX, compute_metrics
    from mtbranch.sdk.train import prepare

    prep = prepare(trunk, "token_classification", tr, dev, cfg, [3])
    assert prep.metric_labels == [*names, "B-ORG"]
    width = max(len(x) for x in prep.dev.labels)
    gold = np.full((len(prep.dev.labels), width), IGNORE_INDEX)
    for i, row in enumerate(prep.dev.labels):
        gold[i, : len(row)] = row
    logits = np.zeros((*gold.shape, len(names)))
    for idx in np.ndindex(gold.shape):
        logits[idx][gold[idx] if 0 <= gold[idx] < len(names) else 0] = 1.0
    m = compute_metrics("token_classification", logits, gold, prep.metric_labels)
    n_gold = sum(t.startswith("B-") for e in dev.examples for t in e.tags)
    assert m["entity_precision"] == 1.0 and m["entity_recall"] == pytest.approx((n_gold - 1) / n_gold)


# -- 5. batch prediction over files -------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import make_serving_artifact

    return make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("served"))


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def test_predict_input_lines_in_order(served: Path, tmp_path: Path) -> None:
    import mtbranch

    texts = [f"john visited paris {'very ' * (i % 7)}good" for i in range(23)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts[:10]) + "\n\n" + "\n".join(texts[10:]) + "\n")  # a blank line is skipped
    out = tmp_path / "preds.jsonl"
    code, log = run_cli("predict", served, "--input", src, "--output", out, "--chunk-size", "4", "--batch-size", "3")
    assert code == 0, log
    rows = _jsonl(out.read_text())
    assert [r["text"] for r in rows] == texts
    assert [r["line"] for r in rows] == [*range(1, 11), *range(12, 25)]
    expected = mtbranch.load(served).predict(texts, tasks=["entities", "sentiment"])
    assert results_close([r["results"] for r in rows], expected)  # pair task skipped: no pair column
    assert "predicted 23 row(s)" in log


def test_predict_input_stdin_and_table_columns(served: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["predict", str(served), "--input", "-", "--no-progress", "--task", "sentiment"],
                           input="good film\nbad plot\n")
    assert r.exit_code == 0, r.output
    assert [x["text"] for x in _jsonl(r.output)] == ["good film", "bad plot"]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text('id\ts1\ts2\n1\ta good film\tthe good movie\n2\t"a bad\tplot"\tit was bad\n')
    code, out = run_cli("predict", served, "--input", tsv, "--text-col", "s1", "--pair-col", "s2", "--task",
                        "similarity", "--no-progress")
    assert code == 0, out
    rows = _jsonl(out)
    assert [(x["line"], x["text"], x["pair"]) for x in rows] == [(2, "a good film", "the good movie"),
                                                                (3, "a bad\tplot", "it was bad")]
    assert all("value" in x["results"]["similarity"] or "values" in x["results"]["similarity"] for x in rows)


def test_predict_input_bad_row_names_the_line(served: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "good"}\n{"text": "bad"}\n{"text": oops}\n')
    out = tmp_path / "preds.jsonl"
    code, log = run_cli("predict", served, "--input", src, "--output", out, "--no-progress")
    assert code == 1 and "line 3" in log and "invalid JSON" in log, log
    assert not out.exists() and not list(tmp_path.glob(".preds.jsonl.tmp-*"))  # nothing half-written
    src.write_text('{"text": "good"}\n{"body": "bad"}\n')
    code, log = run_cli("predict", served, "--input", src, "--no-progress")
    assert code == 1 and "line 2" in log and "missing field 'text'" in log
    code, log = run_cli("predict", served)
    assert code == 2 and "--input" in log


def test_predict_iter_streams_in_order(served: Path) -> None:
    import mtbranch

    model = mtbranch.load(served)
    texts = [f"mary works at google {'and john ' * (i % 5)}" for i in range(11)]
    consumed: list[int] = []

    def gen() -> Iterator[str]:
        for i, t in enumerate(texts):
            consumed.append(i)
            yield t

    it = model.predict_iter(gen(), tasks=["sentiment"], chunk_size=4, batch_size=2)
    first = next(it)
    assert len(consumed) == 4  # only the first chunk was read
    assert results_close([first, *it], model.predict(texts, tasks=["sentiment"]))
    pairs = list(model.predict_iter([("a", "b"), ("c", "d")], tasks=["similarity"]))
    assert results_close(pairs, model.predict(["a", "c"], text_pairs=["b", "d"], tasks=["similarity"]))


# -- 6. human output that fits ------------------------------------------------------------------------
def test_validate_and_plugins_read_at_80_columns(installed_other: Path, tiny_bert_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    name = "customer-support-intent-classifier"
    mine = make_branch(tiny_bert_dir, tmp_path / "mine", name=name, depth=2, layers=1, owner="team-support")
    code, out = run_cli("validate", "--trunk", tiny_bert_dir, "--branch", mine, "--with-installed")
    assert code == 1 and "…" not in out
    lines = out.splitlines()
    mine_line = next(x for x in lines if x.startswith(name))
    assert "depth 2 +1" in mine_line and "classification" in mine_line and mine_line.rstrip().endswith("ok")
    other_line = next(x for x in lines if x.startswith("other "))
    fail = other_line.split("FAIL", 1)[1].split()
    assert fail and all(c[0] in "TKX" and c[1:].isdigit() for c in fail)  # failing checks listed by code
    assert lines[-1].startswith("failed: ")
    code, out = run_cli("plugins")
    assert code == 0 and "…" not in out
    row = next(x for x in out.splitlines() if x.startswith("other-team"))
    assert "branches: other" in row and "trunks: tiny" in row and "checks: needs-owner" in row


# -- 8. what a new team tripped on ----------------------------------------------------------------------
def test_split_dev_is_seeded_and_stratified() -> None:
    from mtbranch.sdk.data import Dataset, TextExample, split_dev

    data = Dataset([TextExample(f"t{i}", label="a" if i % 5 else "b") for i in range(100)],
                   [{"path": "x.csv", "sha256": "0"}])
    tr, dev = split_dev(data, 0.25, seed=3)
    assert len(dev.examples) == 25 and len(tr.examples) == 75
    assert sum(e.label == "b" for e in dev.examples) == 5  # 20 "b" in all: each label keeps its share
    assert {e.text for e in tr.examples}.isdisjoint(e.text for e in dev.examples)
    assert split_dev(data, 0.25, seed=3)[1].examples == dev.examples
    assert split_dev(data, 0.25, seed=4)[1].examples != dev.examples
    assert "stratified, seed 3" in dev.sources[0]["split"]


def test_train_with_dev_split_prints_a_line_per_epoch(tmp_path: Path) -> None:
    from sdk_fixtures import make_sdk_trunk, write_sentiment

    trunk = make_sdk_trunk(tmp_path / "trunk")
    data = write_sentiment(tmp_path / "all.tsv", 80, 1)
    r = CliRunner().invoke(cli, ["train", "--task", "classification", "--trunk", str(trunk), "--train", str(data),
                                 "--dev-split", "0.2", "--text-col", "sentence", "--label-col", "label",
                                 "--layers", "1", "--epochs", "2", "--max-length", "32", "--lr", "1e-3",
                                 "--name", "s", "--no-progress", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("epoch ")]
    assert [x.split()[1] for x in lines] == ["1/2", "2/2"]
    assert "train loss" in lines[0] and "dev accuracy" in lines[0] and "(best)" in lines[0]
    assert "{'loss'" not in r.output and "'eval_" not in r.output  # no raw Trainer dicts
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["training"]["data"]["dev_examples"] == 16 and manifest["training"]["data"]["train_examples"] == 64
    assert "stratified" in manifest["training"]["data"]["dev"][0]["split"]
    r = CliRunner().invoke(cli, ["train", "--task", "classification", "--trunk", str(trunk), "--train", str(data),
                                 "--name", "s", "-o", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--dev-split" in r.output


def test_new_plugin_hint_runs_what_the_venv_has(tiny_bert_dir: Path, tmp_path: Path) -> None:
    b = make_branch(tiny_bert_dir, tmp_path / "b", name="intent", depth=2, layers=1)
    code, out = run_cli("new-plugin", "acme-intent", "--branch", b, "-o", tmp_path / "pkg")
    assert code == 0, out
    hint = " ".join(out.split())
    assert "mtbranch validate --trunk" in hint and "(cd" not in hint and "-m pytest" not in hint
    assert f"{Path(sys.executable).parent / 'pytest'} {tmp_path / 'pkg' / 'tests'}" in hint  # this venv's pytest
    readme = (tmp_path / "pkg" / "README.md").read_text()
    assert "trunk `bert`" not in readme and "python -m pytest" not in readme and "\npytest " in readme


@pytest.mark.slow
def test_new_plugin_test_command_works_beside_a_checkout_named_mtbranch(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Issue 25: run from a folder holding a checkout named `mtbranch`, `python -m pytest` imported that folder as
    a namespace package ("cannot import name ... from 'mtbranch' (unknown location)"); the printed command runs
    the package's tests. The package is installed into a --target folder, not this venv."""
    from mtbranch.cli.new_plugin import plugin_test_command

    b = make_branch(tiny_bert_dir, tmp_path / "b", name="intent", depth=2, layers=1)
    pkg = tmp_path / "pkg"
    code, out = run_cli("new-plugin", "acme-intent", "--branch", b, "-o", pkg)
    assert code == 0, out
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(pkg)], check=True, capture_output=True)
    workdir = tmp_path / "work"
    (workdir / "mtbranch" / "core").mkdir(parents=True)  # a checkout: no __init__.py at its top
    (workdir / "mtbranch" / "pyproject.toml").write_text("[project]\nname = 'mtbranch'\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    run_tests = plugin_test_command(pkg).split(" && ")[1]
    done = subprocess.run(run_tests, shell=True, cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    old = subprocess.run([sys.executable, "-m", "pytest", str(pkg / "tests")], cwd=workdir, env=env,
                         capture_output=True, text=True)
    assert old.returncode != 0 and "unknown location" in old.stdout + old.stderr  # what the old hint ran into


# -- 5b. the same job on Ray Data ----------------------------------------------------------------------
@pytest.mark.slow
def test_ray_data_map_batches_one_model_per_actor(served: Path, tmp_path: Path) -> None:
    import mtbranch

    ray = pytest.importorskip("ray")
    from mtbranch.serve.ray_data import predict_dataset

    texts = [f"john visited paris {'and london ' * (i % 4)}{i}" for i in range(40)]
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, log_to_driver=False,
             configure_logging=False)
    try:
        ds = predict_dataset(ray.data.read_text(str(src)), str(served), concurrency=1, batch_size=16, num_cpus=1)
        rows = ds.take_all()
    finally:
        ray.shutdown()
    got = {r["text"]: json.loads(r["results"]) for r in rows}
    assert sorted(got) == sorted(texts)
    expected = mtbranch.load(served).predict(texts, tasks=["entities", "sentiment"])
    assert results_close([got[t] for t in texts], expected)
