"""Composition: one model, shared trunk compute, each branch exactly equal to its standalone self."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import BertForSequenceClassification

from mtbranch.branch.import_hf import import_hf
from mtbranch.branch.model import load_branch
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose, load, save_composed, update_composed
from mtbranch.errors import IntegrityError, MtbranchError, ValidationFailed
from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

from helpers import make_branch

TEXTS = ["the movie was very good !", "bad", "john visited paris and london in the new york city ."]
PAIRS = ["a great film", "terrible acting", "mary works at google in berlin"]


@pytest.fixture(scope="module")
def branches(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("branches")
    out = {
        "sentiment": make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=2, seed=1),
        "similarity": make_branch(tiny_bert_dir, base / "similarity", name="similarity", depth=3, layers=1,
                                  head="regression", signature="pair", pooling="mean", seed=2),
        "entities": make_branch(tiny_bert_dir, base / "entities", name="entities", depth=3, layers=1,
                                head="token_classification", seed=3),
        "topics": make_branch(tiny_bert_dir, base / "topics", name="topics", depth=1, layers=0, head="multilabel",
                              pooling="attention", seed=4),
        "probe": make_branch(tiny_bert_dir, base / "probe", name="probe", depth=4, layers=0, pooling="mean",
                             projection=False, seed=5),
    }
    clf = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=3)
    torch.manual_seed(9)
    with torch.no_grad():
        for p in [*clf.bert.encoder.layer[3].parameters(), *clf.classifier.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    clf.save_pretrained(str(base / "hf-ckpt"))
    import_hf(base / "hf-ckpt", load_trunk_source(tiny_bert_dir), num_layers=1, name="intent", out=base / "intent")
    out["intent"] = base / "intent"
    out["_hf"] = base / "hf-ckpt"
    return out


def _dirs(branches: dict[str, Path], *names: str) -> list[tuple[Path, str]]:
    return [(branches[n], "directory") for n in (names or [k for k in branches if not k.startswith("_")])]


def _encode(trunk_dir: Path, pair: bool = False):
    tok = load_tokenizer(trunk_dir)
    return tok(TEXTS, PAIRS if pair else None, padding=True, truncation=True, max_length=64, return_tensors="pt")


def test_each_branch_equals_standalone_and_transformers(tiny_bert_dir: Path, branches: dict[str, Path]) -> None:
    src = load_trunk_source(tiny_bert_dir)
    model = compose(src, _dirs(branches))
    assert model.trunk.num_layers == 4 and len(model.branches) == 6
    assert len({b.manifest.attach_depth for b in model.branches}) >= 3
    full = load_trunk(src)
    for pair in (False, True):
        enc = _encode(tiny_bert_dir, pair)
        with torch.no_grad():
            states = full(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        names = [b.name for b in model.branches if (b.manifest.tokenizer.input_signature == "pair") == pair]
        out = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], [model.branch(n) for n in names])
        for name in names:
            alone = load_branch(branches[name])
            with torch.no_grad():
                expected = alone(states[alone.manifest.attach_depth], enc["attention_mask"])
            assert (out[name] - expected).abs().max().item() <= 1e-5, name
    enc = _encode(tiny_bert_dir)
    hf = BertForSequenceClassification.from_pretrained(str(branches["_hf"])).eval()
    with torch.no_grad():
        ref = hf(**enc).logits
    got = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], [model.branch("intent")])["intent"]
    assert (ref - got).abs().max().item() <= 1e-5


def test_add_remove_replace_leave_others_bit_identical(tiny_bert_dir: Path, branches: dict[str, Path],
                                                       tmp_path: Path) -> None:
    src = load_trunk_source(tiny_bert_dir)
    model = compose(src, _dirs(branches, "sentiment", "entities", "topics", "intent"))
    enc = _encode(tiny_bert_dir)
    args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    before = model(*args)
    with pytest.raises(MtbranchError, match="keeps only 3 trunk layers"):
        model.put_branch(load_branch(branches["probe"]))  # deeper than the loaded trunk: compose again
    extra = make_branch(tiny_bert_dir, tmp_path / "probe", name="probe", depth=3, layers=1, seed=8)
    model.put_branch(load_branch(extra))  # add
    model.remove_branch("topics")  # remove
    v2 = make_branch(tiny_bert_dir, tmp_path / "sentiment-v2", name="sentiment", depth=2, layers=2, seed=42)
    model.put_branch(load_branch(v2))  # replace
    after = model(*args)
    for name in ("entities", "intent"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["sentiment"], after["sentiment"])
    assert "topics" not in after and "probe" in after

    # the same through the composed artifact on disk
    save_composed(compose(src, _dirs(branches, "sentiment", "entities", "topics", "intent", "probe")), tmp_path / "c")
    on_disk_before = load(tmp_path / "c")(*args)
    update_composed(tmp_path / "c", put=[v2], remove=["topics"])
    reloaded = load(tmp_path / "c")
    assert sorted(reloaded.task_names) == ["entities", "intent", "probe", "sentiment"]
    on_disk_after = reloaded(*args)
    for name in ("entities", "intent", "probe"):
        assert torch.equal(on_disk_before[name], on_disk_after[name]), name


def test_task_subset_runs_only_needed_layers(tiny_bert_dir: Path, branches: dict[str, Path]) -> None:
    model = compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "sentiment", "topics", "probe", "entities"))
    calls = [0] * model.trunk.num_layers
    for i, layer in enumerate(model.trunk.layers):
        layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    model.predict(TEXTS, tasks=["topics"], max_padding=None)  # one pass (no length buckets)
    assert calls == [1, 0, 0, 0]  # topics attaches at depth 1
    model.predict(TEXTS, tasks=["sentiment", "topics"], max_padding=None)
    assert calls == [2, 1, 0, 0]
    model.predict(TEXTS, max_padding=None)
    assert calls == [3, 2, 1, 1]  # all tasks: the trunk still runs once, to depth 4


def test_trunk_runs_once_per_signature(tiny_bert_dir: Path, branches: dict[str, Path]) -> None:
    model = compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "sentiment", "similarity", "entities"))
    calls = []
    model.trunk.embeddings.register_forward_hook(lambda *_: calls.append(1))
    res = model.predict(TEXTS, text_pairs=PAIRS, max_padding=None)
    assert len(calls) == 2  # one single-text pass, one pair pass
    assert set(res[0]) == {"sentiment", "similarity", "entities"}
    with pytest.raises(MtbranchError, match="take a text pair"):
        model.predict(TEXTS)
    with pytest.raises(MtbranchError, match="unknown task"):
        model.predict(TEXTS, tasks=["nope"])


def test_save_load_round_trip_bit_identical(tiny_bert_dir: Path, branches: dict[str, Path], tmp_path: Path) -> None:
    model = compose(load_trunk_source(tiny_bert_dir), _dirs(branches))
    lock = save_composed(model, tmp_path / "c")
    assert lock.overhead.total_layers == 4 + 2 + 1 + 1 + 0 + 0 + 1
    loaded = load(tmp_path / "c")
    for pair in (False, True):
        enc = _encode(tiny_bert_dir, pair)
        args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        sig = "pair" if pair else "single"
        names = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == sig]
        a = model(*args, [model.branch(n) for n in names])
        b = loaded(*args, [loaded.branch(n) for n in names])
        for n in names:
            assert torch.equal(a[n], b[n]), n
    assert json.loads((tmp_path / "c" / "mtbranch.lock.json").read_text())["trunk"]["kept_layers"] == 4


@pytest.mark.parametrize("target", ["trunk/model.safetensors", "branches/entities/branch.safetensors",
                                    "mtbranch.lock.json", "trunk/tokenizer.json"])
def test_tampering_refused_at_load(target: str, tiny_bert_dir: Path, branches: dict[str, Path],
                                   tmp_path: Path) -> None:
    save_composed(compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "sentiment", "entities")), tmp_path / "c")
    p = tmp_path / "c" / target
    if target.endswith(".json") and "lock" in target:
        lock = json.loads(p.read_text())
        lock["branches"][0]["sha256"] = "0" * 64
        lock["files"]["branches/entities/branch.safetensors"] = "1" * 64
        p.write_text(json.dumps(lock))
    else:
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        p.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        load(tmp_path / "c")
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "c"), "hello"])
    assert r.exit_code == 1 and "does not match" in r.output and "Traceback" not in r.output
    assert CliRunner().invoke(cli, ["verify", str(tmp_path / "c")]).exit_code == 1


def test_compose_refuses_invalid_branches(tiny_bert_dir: Path, branches: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(branches["sentiment"], bad)
    (bad / "branch.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValidationFailed, match="W00"):
        compose(load_trunk_source(tiny_bert_dir), [(bad, "directory")])
    r = CliRunner().invoke(cli, ["compose", "--no-plugins", "--trunk", str(tiny_bert_dir), "--branch", str(bad),
                                 "-o", str(tmp_path / "out")])
    assert r.exit_code == 1 and not (tmp_path / "out").exists()


def test_ner_entities_have_char_offsets(tiny_bert_dir: Path, branches: dict[str, Path]) -> None:
    model = compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "entities"))
    texts = ["John visited Paris and London", "  Mary   works at  Google  ", "the new york city ."]
    seen = 0
    for text, res in zip(texts, model.predict(texts), strict=True):
        for ent in res["entities"]["entities"]:
            seen += 1
            assert text[ent["start"]:ent["end"]] == ent["text"]
            assert ent["text"] == ent["text"].strip() and ent["text"]
            # spans cover whole words: they start and end at word boundaries
            assert ent["start"] == 0 or not text[ent["start"] - 1].isalnum()
            assert ent["end"] == len(text) or not text[ent["end"]].isalnum()
            assert ent["label"] in {"PER", "LOC"} and 0 < ent["score"] <= 1
    assert seen > 0


def test_interrupted_compose_leaves_old_artifact(tiny_bert_dir: Path, branches: dict[str, Path],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "c"
    save_composed(compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "sentiment")), out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    script = textwrap.dedent(f"""
        import shutil, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from mtbranch.composition.artifact import compose, save_composed
        from mtbranch.trunk.source import load_trunk_source
        real = shutil.copyfileobj  # compose copies each declared branch file with it
        def slow(*a, **k):
            r = real(*a, **k); print("WRITING", flush=True); time.sleep(60); return r
        shutil.copyfileobj = slow
        dirs = [({str(branches['entities'])!r}, "directory"), ({str(branches['topics'])!r}, "directory")]
        save_composed(compose(load_trunk_source({str(tiny_bert_dir)!r}), dirs), {str(out)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.time() + 120
    while time.time() < deadline and "WRITING" not in proc.stdout.readline():
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".c.tmp-")] == ["c"]
    assert load(out).task_names == ["sentiment"]
    # the next write cleans the killed writer's leftovers
    save_composed(compose(load_trunk_source(tiny_bert_dir), _dirs(branches, "entities")), out)
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_cli_compose_inspect_predict(tiny_bert_dir: Path, branches: dict[str, Path], tmp_path: Path) -> None:
    args = ["compose", "--no-plugins", "--trunk", str(tiny_bert_dir), "-o", str(tmp_path / "c")]
    for n in ("sentiment", "similarity", "entities", "topics", "probe"):
        args += ["--branch", str(branches[n])]
    r = CliRunner().invoke(cli, [*args, "--exclude", "probe"])
    assert r.exit_code == 0, r.output
    assert "3 + 4 = 7 of 16, 43.8%" in r.output  # probe (depth 4) excluded: D = 3
    r = CliRunner().invoke(cli, ["inspect", str(tmp_path / "c"), "--json"])
    info = json.loads(r.stdout)
    assert info["overhead"]["ratio"] == 7 / 16 and len(info["branches"]) == 4
    assert [t["task"] for t in info["tasks"]] == [b["name"] for b in info["branches"]]
    human = CliRunner().invoke(cli, ["inspect", str(tmp_path / "c")]).output
    assert "depth 3" in human and "retention" in human  # the task table (paper Table 2 view)
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "c"), "--json", "--raw", "--pair", "a film",
                                 "the movie was good", "john visited paris"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert len(res) == 2 and set(res[0]) == {"sentiment", "similarity", "entities", "topics"}
    assert "raw" in res[0]["sentiment"] and "value" in res[0]["similarity"]
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "c"), "--task", "nope", "x"])
    assert r.exit_code == 1 and "unknown task" in r.output


def test_pair_longer_than_max_length_is_tokenized_as_in_training(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A short first text with a second text longer than max_length: truncated longest-first, as the SDK's
    training tokenization does (only-first truncation raised here and encoded differently from training)."""
    from mtbranch.sdk.data import TextExample
    from mtbranch.sdk.features import encode_texts

    from helpers import make_serving_artifact

    model = load(make_serving_artifact(tiny_bert_dir, tmp_path))
    b = model.branch("similarity")
    text, pair = "a b", " ".join(["c d e f"] * 200)
    got = model.predict([text], text_pairs=[pair], tasks=["similarity"], raw=True)[0]["similarity"]["raw"]
    enc = encode_texts(model.tokenizer, [TextExample(text, pair, 0.0)], b.manifest.tokenizer.max_length, None)
    ids = torch.tensor(enc.input_ids)
    assert ids.shape[1] == b.manifest.tokenizer.max_length
    want = model(ids, torch.ones_like(ids), torch.tensor(enc.token_type_ids), [b])["similarity"][0]
    assert torch.allclose(torch.tensor(got), want, atol=1e-5)
