"""``mtbranch migrate``: branches move from one tiny trunk to another (different seed, size and vocabulary) with
no labels, token tasks per word; stopped runs resume; bad inputs fail with errors that name the file and fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sdk_fixtures
from click.testing import CliRunner
from sdk_fixtures import conll_data, sentiment_data

from mtbranch.errors import MtbranchError
from mtbranch.sdk import migrate as mig
from mtbranch.sdk.data import TokenExample
from mtbranch.sdk.features import encode_tokens
from mtbranch.sdk.train import BranchInfo, TrainConfig, train
from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

from conftest import make_bert_dir

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the old trunk: 4 layers, hidden 32, the SDK vocabulary
CFG = TrainConfig(epochs=3, lr=1e-3, head_lr=1e-2, batch_size=16, max_length=32, progress=False)
FAST = ["--layers", "1", "--epochs", "2", "--lr", "1e-3", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def new_trunk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The new trunk: 3 layers, hidden 48, another seed and another vocabulary (so words split differently)."""
    return make_bert_dir(tmp_path_factory.mktemp("new-trunk"), layers=3, hidden=48, seed=7)


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory, sdk_trunk_dir: Path) -> Path:
    """A composed artifact on the old trunk: sentiment (classification) and entities (token classification)."""
    from mtbranch.cli.main import cli

    tmp = tmp_path_factory.mktemp("teacher")
    (tmp / "s").mkdir()
    tr, dev = sentiment_data(tmp / "s")
    train(str(sdk_trunk_dir), "classification", tr, dev, layers=2, depth=2, cfg=CFG, info=BranchInfo("sentiment"),
          out_dir=tmp / "sentiment")
    (tmp / "e").mkdir()
    tr, dev = conll_data(tmp / "e")
    train(str(sdk_trunk_dir), "token_classification", tr, dev, layers=2, depth=2, cfg=CFG,
          info=BranchInfo("entities", version="0.3.0"), out_dir=tmp / "entities")
    res = CliRunner().invoke(cli, ["compose", "--trunk", str(sdk_trunk_dir), "--branch", str(tmp / "sentiment"),
                                   "--branch", str(tmp / "entities"), "-o", str(tmp / "composed")])
    assert res.exit_code == 0, res.output
    return tmp / "composed"


def _texts(tmp: Path) -> tuple[Path, Path]:
    sentiment_data(tmp, 120, 10)  # writes train.tsv / dev.tsv
    sents = tmp / "sentences.txt"
    sents.write_text("\n".join(" ".join(line.split()[0] for line in block.splitlines())
                               for block in (tmp / "e.txt").read_text().split("\n\n")[1:] if block.strip()) + "\n")
    texts = tmp / "texts.txt"
    texts.write_text("\n".join(line.split("\t")[0] for line in (tmp / "train.tsv").read_text().splitlines()[1:]) + "\n")
    return texts, sents


@pytest.fixture
def texts(tmp_path: Path) -> tuple[Path, Path]:
    sdk_fixtures.write_conll(tmp_path / "e.txt", 100, 5)
    return _texts(tmp_path)


def _run(*args: str) -> object:
    from mtbranch.cli.main import cli

    return CliRunner().invoke(cli, ["migrate", *args])


@pytest.mark.slow
def test_migrate_composed_model_to_a_new_trunk(composed: Path, new_trunk: Path, texts: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    out = tmp_path / "migrated"
    dev_conll = sdk_fixtures.write_conll(tmp_path / "dev.txt", 20, 9)
    res = _run(str(composed), "--to-trunk", str(new_trunk), "--texts", f"sentiment={texts[0]}",
               "--texts", f"entities={texts[1]}", "--dev", f"entities={dev_conll}", "-o", str(out), "--json", *FAST)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    by_name = {r["name"]: r for r in report["branches"]}
    assert set(by_name) == {"sentiment", "entities"}
    new = load_trunk_source(new_trunk)
    for name, r in by_name.items():
        m = read_manifest(out / "branches" / name / MANIFEST_NAME)
        assert m.trunk.fingerprint == new.fingerprints[m.attach_depth]  # bound to the new trunk
        assert (m.attach_depth, m.num_layers) == (2, 1) == (r["student"]["attach_depth"], r["student"]["num_layers"])
        old = read_manifest(composed / "branches" / name / MANIFEST_NAME)
        assert m.version != old.version and r["version"] == {"teacher": old.version, "student": m.version}
        prov = m.training["migration"]
        assert prov["teacher"]["sha256"] == old.weights.sha256
        assert prov["texts"]["sha256"] == mig.texts_digest([texts[0] if name == "sentiment" else texts[1]])
        assert 0.0 <= prov["agreement"]["value"] <= 1.0 and prov["agreement"]["metric"] == r["agreement"]["metric"]
    assert read_manifest(out / "branches" / "entities" / MANIFEST_NAME).version == "0.4.0"
    dev = by_name["entities"]["dev"]
    assert dev["metric"] == "entity_f1" and "student" in dev and "teacher" in dev
    assert "dev_entity_f1" in read_manifest(out / "branches" / "entities" / MANIFEST_NAME).metrics
    assert {r["name"] for r in json.loads((out / mig.REPORT_NAME).read_text())["branches"]} == set(by_name)
    speed = report["speed"]  # the teacher's composed model and the students', timed on the same texts
    assert speed["old"]["trunk_layers_run"] == 2 and speed["new"]["trunk_layers_run"] == 2
    assert speed["old"]["texts_per_second"] > 0 and speed["new"]["texts_per_second"] > 0

    # the composed model on the new trunk predicts one tag per word
    from mtbranch.cli.main import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["compose", "--trunk", str(new_trunk), "--branch", str(out / "branches" / "sentiment"),
                              "--branch", str(out / "branches" / "entities"), "-o", str(tmp_path / "new-composed")])
    assert res.exit_code == 0, res.output

    # the same command again: nothing is retrained
    before = (out / "branches" / "sentiment" / "branch.safetensors").stat().st_mtime_ns
    res = _run(str(composed), "--to-trunk", str(new_trunk), "--texts", f"sentiment={texts[0]}",
               "--texts", f"entities={texts[1]}", "--dev", f"entities={dev_conll}", "-o", str(out), "--json", *FAST)
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(r.get("resumed") for r in again["branches"])
    assert (out / "branches" / "sentiment" / "branch.safetensors").stat().st_mtime_ns == before

    # other settings into the same output: refused, nothing changed
    res = _run(str(composed), "--to-trunk", str(new_trunk), "--texts", f"sentiment={texts[0]}",
               "--texts", f"entities={texts[1]}", "-o", str(out), *FAST, "--epochs", "3")
    assert res.exit_code == 1 and "other settings" in res.output and "--restart" in res.output
    assert (out / "branches" / "sentiment" / "branch.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_stopped_migration_resumes_from_its_finished_branches(composed: Path, new_trunk: Path,
                                                                 texts: tuple[Path, Path], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "migrated"
    real = mig.migrate_branch
    calls: list[str] = []

    def stop_at_the_second(t: mig.Teacher, *a: object, **kw: object) -> dict:
        calls.append(t.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second branch
        return real(t, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(mig, "migrate_branch", stop_at_the_second)
    opts = mig.MigrateOptions(layers=1, epochs=1, lr=1e-3, progress=False)
    texts_map: dict[str | None, list[Path]] = {"sentiment": [texts[0]], "entities": [texts[1]]}
    with pytest.raises(KeyboardInterrupt):
        mig.migrate(composed, str(new_trunk), texts_map, out, options=opts, on_event=lambda s: None)
    first, second = calls
    state = json.loads((out / mig.STATE_NAME).read_text())
    assert list(state["branches"]) == [first] and (out / "branches" / first / MANIFEST_NAME).is_file()
    assert not (out / "branches" / second).exists()

    monkeypatch.setattr(mig, "migrate_branch", real)
    events: list[str] = []
    res = mig.migrate(composed, str(new_trunk), texts_map, out, options=opts, on_event=events.append)
    assert [r.get("resumed", False) for r in res.branches] == [True, False]
    assert any(f"{first}: finished in an earlier run" in e for e in events)
    assert not any(e.startswith(f"{first}: student") for e in events)  # not retrained
    assert any(e.startswith(f"{second}: teacher outputs over") for e in events)
    assert (out / "branches" / second / MANIFEST_NAME).is_file()


def test_token_targets_follow_words_across_tokenizers(sdk_trunk_dir: Path, new_trunk: Path) -> None:
    """Word k's teacher row lands on the student's first sub-token of word k, whatever each tokenizer splits."""
    teacher_tok, student_tok = load_tokenizer(sdk_trunk_dir), load_tokenizer(new_trunk)
    words = ["johns", "visited", "\x07", "cityed", "paris"]
    ex = mig.keep_words([TokenExample(words, [])], [teacher_tok, student_tok])
    assert ex[0].tokens == ["johns", "visited", "cityed", "paris"]  # the control character has no token
    assert student_tok.tokenize("cityed") == ["city", "##ed"]  # the vocabularies differ
    assert teacher_tok.tokenize("cityed") == ["[UNK]"]
    rows = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)  # word k's teacher row: [3k, 3k+1, 3k+2]
    tags = ["O", "B-PER", "I-PER"]
    pseudo = [TokenExample(ex[0].tokens, [tags[int(k)] for k in rows.argmax(-1)])]
    enc = encode_tokens(student_tok, pseudo, 32, {t: i for i, t in enumerate(tags)})
    aligned = mig.student_targets("token_classification", enc.labels, [rows])[0]
    word_ids = student_tok(ex[0].tokens, is_split_into_words=True).word_ids()
    first = {w: i for i, w in reversed(list(enumerate(word_ids))) if w is not None}
    for k in range(4):
        np.testing.assert_array_equal(aligned[first[k]], rows[k])
    others = [i for i in range(len(word_ids)) if i not in first.values()]
    assert not aligned[others].any()  # sub-tokens and specials carry no target


def test_version_bump() -> None:
    assert mig.bump_version("0.3.0") == "0.4.0" and mig.bump_version("1.2.3") == "2.0.0"


# -- bad input ------------------------------------------------------------------------------------------
def test_texts_in_another_encoding_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "latin1.txt"
    p.write_bytes("a fine film\nun film très réussi\n".encode("latin-1"))
    with pytest.raises(MtbranchError) as err:
        mig.read_texts(p)
    assert str(p) in str(err.value) and "line 2" in str(err.value) and "iconv" in (err.value.hint or "")
    assert mig.read_texts(p, "latin-1")[1] == "un film très réussi"
    u16 = tmp_path / "u16.txt"
    u16.write_bytes("a fine film\n".encode("utf-16"))
    with pytest.raises(MtbranchError, match="UTF-16"):
        mig.read_texts(u16)


@pytest.mark.parametrize("content", [b"", b"\n  \n\t\n"])
def test_empty_texts_are_refused(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "empty.txt"
    p.write_bytes(content)
    with pytest.raises(MtbranchError, match="no texts") as err:
        mig.read_texts(p)
    assert err.value.path == str(p)


@pytest.mark.slow
def test_bad_inputs_through_the_cli_write_nothing(composed: Path, new_trunk: Path, texts: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    res = _run(str(composed), "--to-trunk", str(new_trunk), "--texts", str(empty), "-o", str(out), *FAST)
    assert res.exit_code == 1 and "no texts" in res.output and "Traceback" not in res.output
    assert not out.exists()  # checked before any work

    greek = tmp_path / "greek.txt"
    greek.write_text("η ταινία ήταν υπέροχη\nένα βαρετό σενάριο\n" * 20)
    res = _run(str(composed), "--only", "sentiment", "--to-trunk", str(new_trunk), "--texts", str(greek),
               "-o", str(out), *FAST)
    assert res.exit_code == 1 and "cannot read these texts" in res.output and str(greek) in res.output
    assert not out.exists()

    short = make_bert_dir(tmp_path / "short-trunk", layers=2, hidden=32, seed=3, max_positions=16,
                          tok_max_length=None)
    res = _run(str(composed), "--only", "sentiment", "--to-trunk", str(short), "--texts", str(texts[0]),
               "-o", str(tmp_path / "out2"), *FAST)
    assert res.exit_code == 1 and "at most 16 tokens" in res.output and "--max-length 16" in res.output
    assert "config.json" in res.output and not (tmp_path / "out2").exists()

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    res = _run(str(composed), "--to-trunk", str(new_trunk), "--texts", str(texts[0]), "-o", str(occupied), *FAST)
    assert res.exit_code == 1 and "not an earlier migration" in res.output
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]

    res = _run(str(composed), "--only", "nope", "--to-trunk", str(new_trunk), "--texts", str(texts[0]),
               "-o", str(tmp_path / "out3"), *FAST)
    assert res.exit_code == 1 and "no such branch" in res.output and "sentiment" in res.output


def test_pair_branch_needs_pairs(tmp_path: Path) -> None:
    from mtbranch.spec.manifest import BranchManifest

    class M:  # the two fields examples_for reads
        name = "similarity"
        head = type("H", (), {"type": "regression"})()
        tokenizer = type("T", (), {"input_signature": "pair"})()

    m: BranchManifest = M()  # type: ignore[assignment]
    assert mig.examples_for(m, ["a b\tc d"], "f.txt")[0].pair == "c d"
    with pytest.raises(MtbranchError, match="text 2 has no second text") as err:
        mig.examples_for(m, ["a b\tc d", "only one"], "f.txt")
    assert "similarity=FILE" in (err.value.hint or "")


@pytest.mark.slow
def test_consolidation_of_a_transformers_checkpoint(sdk_trunk_dir: Path, new_trunk: Path, texts: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """A fine-tuned *ForSequenceClassification checkpoint (its own encoder) becomes a branch on the shared trunk."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    ckpt = tmp_path / "Team-Sentiment-BERT"
    torch.manual_seed(3)
    cfg = BertConfig.from_pretrained(str(sdk_trunk_dir), num_labels=2, id2label={0: "negative", 1: "positive"},
                                     label2id={"negative": 0, "positive": 1})
    BertForSequenceClassification(cfg).save_pretrained(str(ckpt))
    load_tokenizer(sdk_trunk_dir).save_pretrained(str(ckpt))
    out = tmp_path / "consolidated"
    res = _run(str(ckpt), "--to-trunk", str(new_trunk), "--texts", str(texts[0]), "-o", str(out), "--json", *FAST)
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout.strip().splitlines()[-1])["branches"]
    assert r["name"] == "team-sentiment-bert" and r["teacher"]["num_layers"] == 4 and r["teacher"]["attach_depth"] == 0
    m = read_manifest(out / "branches" / "team-sentiment-bert" / MANIFEST_NAME)
    assert m.head.labels == ["negative", "positive"]
    assert m.trunk.fingerprint == load_trunk_source(new_trunk).fingerprints[m.attach_depth]
    ck = m.training["migration"]["teacher"]["checkpoint"]
    assert ck["sha256"] == mig.sha256_file(ckpt / "model.safetensors")
    assert ck["architecture"] == "BertForSequenceClassification"


@pytest.mark.slow
def test_gold_labels_mix_in_with_alpha(composed: Path, new_trunk: Path, texts: tuple[Path, Path],
                                       tmp_path: Path) -> None:
    """--train NAME=PATH adds labelled examples (hard labels at 1 - alpha) to the teacher's targets."""
    gold = sdk_fixtures.write_conll(tmp_path / "gold.txt", 30, 11)
    out = tmp_path / "mixed"
    res = _run(str(composed), "--only", "entities", "--to-trunk", str(new_trunk), "--texts", str(texts[1]),
               "--train", f"entities={gold}", "--alpha", "0.7", "--speed-texts", "0", "-o", str(out), "--json", *FAST)
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout.strip().splitlines()[-1])["branches"]
    assert r["alpha"] == 0.7 and r["gold"]["examples"] == 30
    assert r["gold"]["files"][0]["sha256"] == mig.sha256_file(gold)
    # the gold examples are training examples, the held-out texts stay the teacher's
    assert r["texts"]["train"] + 30 == read_manifest(out / "branches" / "entities" / MANIFEST_NAME
                                                     ).training["data"]["train_examples"]
    res = _run(str(composed), "--only", "entities", "--to-trunk", str(new_trunk), "--texts", str(texts[1]),
               "--train", f"sentiment={gold}", "-o", str(tmp_path / "x"), *FAST)
    assert res.exit_code == 2 and "no branch 'sentiment'" in res.output


def test_pair_texts_reach_the_teacher_as_pairs(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    """A pair branch's teacher outputs are its predictions on (first, second text), not on the line as one text
    (the paraphrase migration of docs/migrate.md: both L3 arms near MRPC's majority class was no pair bug)."""
    import mtbranch
    from mtbranch.composition.artifact import compose, save_composed

    from helpers import make_branch

    branch = make_branch(sdk_trunk_dir, tmp_path / "similarity", name="similarity", depth=2, layers=1,
                         head="regression", signature="pair", pooling="mean", max_length=32)
    source = load_trunk_source(sdk_trunk_dir)
    teacher = mig.Teacher("similarity", branch, source, read_manifest(branch / MANIFEST_NAME))
    lines = ["the movie was good\tthe film was great", "john visited paris\tmary works at google",
             "a boring plot\ta boring plot"]
    examples = mig.examples_for(teacher.manifest, lines, "texts.txt")
    outs = mig.teacher_outputs(teacher, examples, max_length=32, cache_dir=tmp_path / "cache", progress=False)
    save_composed(compose(source, [(branch, "directory")]), tmp_path / "c")
    model = mtbranch.load(tmp_path / "c")
    firsts, seconds = zip(*(line.split("\t") for line in lines), strict=True)
    as_pairs = [float(np.ravel(r["similarity"]["raw"])[0])
                for r in model.predict(list(firsts), text_pairs=list(seconds), raw=True)]
    as_one_text = [float(np.ravel(r["similarity"]["raw"])[0])
                   for r in model.predict(lines, text_pairs=[""] * len(lines), raw=True)]
    np.testing.assert_allclose([float(o.reshape(-1)[0]) for o in outs], as_pairs, rtol=1e-4, atol=1e-5)
    assert not np.allclose(as_pairs, as_one_text, atol=1e-3)  # the check can tell the two apart


def test_docs_tables_come_from_the_committed_runs() -> None:
    """docs/migrate.md's figures are the tables docs/scripts/migrate_table.py makes from docs/results/migrate/."""
    from doc_scripts import load_script

    tables = load_script("migrate_table")
    text = (Path(__file__).resolve().parents[1] / "docs" / "migrate.md").read_text()
    made = [tables.migration_table(), tables.pooling_table(), tables.consolidation_table(), tables.speed_table(),
            tables.speed_table("speed-8")]
    assert made[0].count("\n") >= 3  # the header, at least one task and the average
    for table in made:
        if table:
            assert table in text, table


@pytest.mark.slow
def test_consolidation_of_a_token_classification_checkpoint(sdk_trunk_dir: Path, new_trunk: Path,
                                                            texts: tuple[Path, Path], tmp_path: Path) -> None:
    """A fine-tuned *ForTokenClassification checkpoint becomes a token branch on the shared trunk, distilled per
    word from plain sentences (its BIO tags become the branch's labels)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    ckpt = tmp_path / "Team-NER-BERT"
    torch.manual_seed(5)
    cfg = BertConfig.from_pretrained(str(sdk_trunk_dir), num_labels=len(tags), id2label=dict(enumerate(tags)),
                                     label2id={t: i for i, t in enumerate(tags)})
    BertForTokenClassification(cfg).save_pretrained(str(ckpt))
    load_tokenizer(sdk_trunk_dir).save_pretrained(str(ckpt))
    out = tmp_path / "consolidated"
    res = _run(str(ckpt), "--to-trunk", str(new_trunk), "--texts", str(texts[1]), "-o", str(out), "--json", *FAST)
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout.strip().splitlines()[-1])["branches"]
    assert r["task"] == "token_classification" and r["teacher"]["attach_depth"] == 0
    m = read_manifest(out / "branches" / "team-ner-bert" / MANIFEST_NAME)
    assert m.head.type == "token_classification" and m.head.labels == tags
    assert m.trunk.fingerprint == load_trunk_source(new_trunk).fingerprints[m.attach_depth]
    assert m.training["migration"]["teacher"]["checkpoint"]["architecture"] == "BertForTokenClassification"
