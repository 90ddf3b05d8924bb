"""Token tasks answer per word, the unit a branch is trained on (issue 25).

A CoNLL / seq.in branch learned whitespace words ("st.", "o'hare", "U.S." are one word each) with the tag on
each word's first sub-token. The entities users receive must be read the same way: a span never ends inside
a word, and the F1 of the returned entities equals the F1 the trainer wrote into the manifest.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
import sdk_fixtures
import torch
from sdk_fixtures import FILL, PEOPLE, PLACES

from mtbranch.composition.artifact import compose
from mtbranch.errors import MtbranchError
from mtbranch.heads.postprocess import entities, tokens_to_words, word_spans, word_tags
from mtbranch.sdk.data import load_token_data
from mtbranch.sdk.train import BranchInfo, TrainConfig, train
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


class Spec:
    labels = LABELS


def _rows_for(tags_by_token: list[str]) -> list[list[float]]:
    return [[5.0 if lab == t else 0.0 for lab in LABELS] for t in tags_by_token]


@pytest.fixture(scope="module")
def tokenizer(sdk_trunk_dir: Path) -> Any:
    return load_tokenizer(sdk_trunk_dir)


def _token_words(tokenizer: Any, text: str) -> tuple[Any, list[tuple[int, int]], list[int | None]]:
    enc = tokenizer(text)
    words = word_spans(text)
    offsets = [tuple(o) for o in enc.encodings[0].offsets]
    in_text = [s == 0 for s in enc.encodings[0].sequence_ids]
    return enc, words, tokens_to_words(offsets, in_text, words)


def test_a_span_never_ends_inside_a_word(tokenizer: Any) -> None:
    """'paris.' and "john's" are one word each: the untrained '.' / "'" sub-tokens (which predict O) must not
    cut the entity. Before: 'paris' + a dropped '.', 'john' + nothing."""
    text = "john's visited paris. berlin"
    _enc, words, token_words = _token_words(tokenizer, text)
    assert [text[a:b] for a, b in words] == ["john's", "visited", "paris.", "berlin"]
    # first sub-token of each word: its tag; every later sub-token: O (what an untrained position predicts)
    first_tags = {0: "B-PER", 1: "O", 2: "B-LOC", 3: "B-LOC"}
    seen: set[int] = set()
    per_token = []
    for w in token_words:
        per_token.append("O" if w is None or w in seen else first_tags[w])
        if w is not None:
            seen.add(w)
    tags = word_tags(Spec(), _rows_for(per_token), token_words, len(words))
    got = [(e["text"], e["label"]) for e in entities(tags, words, text)]
    assert got == [("john's", "PER"), ("paris.", "LOC"), ("berlin", "LOC")]


def test_bio_repair_i_after_o_starts_an_entity() -> None:
    text = "a b c d e"
    words = word_spans(text)
    tags = [("O", 1.0), ("I-LOC", 1.0), ("I-LOC", 1.0), ("I-PER", 1.0), ("B-PER", 1.0)]
    got = [(e["text"], e["label"]) for e in entities(tags, words, text)]
    assert got == [("b c", "LOC"), ("d", "PER"), ("e", "PER")]
    # a word past max_length (no tag) ends the entity before it
    assert [e["text"] for e in entities([("B-LOC", 1.0), None, ("I-LOC", 1.0), ("O", 1.0), ("O", 1.0)],
                                        words, text)] == ["a", "c"]


def test_aggregation_first_max_average() -> None:
    token_words: list[int | None] = [None, 0, 0, 0, None]
    rows = [[0, 0, 0, 0, 0], [1.0, 0.0, 0, 0, 0], [0, 9.0, 0, 0, 0], [0, 0.0, 2.0, 0, 0], [0, 0, 0, 0, 0]]
    assert word_tags(Spec(), rows, token_words, 1, "first")[0][0] == "O"
    assert word_tags(Spec(), rows, token_words, 1, "max")[0][0] == "B-LOC"
    assert word_tags(Spec(), rows, token_words, 1, "average")[0][0] == "B-LOC"
    with pytest.raises(ValueError, match="aggregation"):
        word_tags(Spec(), rows, token_words, 1, "mean")


def test_a_token_starting_on_whitespace_belongs_to_the_next_word() -> None:
    text = "ab  cd"
    words = word_spans(text)
    # a SentencePiece-style lone "▁" piece on the space before "cd"
    assert tokens_to_words([(0, 0), (0, 2), (3, 4), (4, 6), (0, 0)], [False, True, True, True, False],
                           words) == [None, 0, 1, 1, None]


# -- a trained branch: the manifest's figure is the served figure ---------------------------------------------
def _punct_conll(path: Path, n: int, seed: int) -> Path:
    """Sentences whose entity words carry punctuation inside them ('paris.', "john's", 'new-york')."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words: list[tuple[str, str]] = [(w, "O") for w in rng.sample(FILL, 3)]
        person = rng.choice(PEOPLE) + rng.choice(["", "'s", "."])
        words.insert(rng.randint(0, 3), (person, "B-PER"))
        place = rng.choice([*PLACES, "new york", "new-york", "paris.", "st. london"])
        pos = rng.randint(0, len(words))
        for j, w in enumerate(place.split()):
            words.insert(pos + j, (w, "B-LOC" if j == 0 else "I-LOC"))
        out += [f"{w} X X {t}" for w, t in words] + [""]
    path.write_text("\n".join(out))
    return path


def _served_tags(result: dict[str, Any], text: str) -> list[str]:
    """The returned entity spans turned back into word tags (how a user scores what they receive)."""
    spans = word_spans(text)
    tags = ["O"] * len(spans)
    for ent in result["entities"]:
        inside = [k for k, (a, b) in enumerate(spans) if a < ent["end"] and b > ent["start"]]
        assert spans[inside[0]][0] == ent["start"] and spans[inside[-1]][1] == ent["end"], "span ends inside a word"
        for j, k in enumerate(inside):
            tags[k] = ("B-" if j == 0 else "I-") + ent["label"]
    return tags


@pytest.mark.slow
def test_manifest_f1_is_the_f1_of_the_served_entities(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    from seqeval.metrics import f1_score

    tr = load_token_data(_punct_conll(tmp_path / "train.txt", 160, 1))
    dev = load_token_data(_punct_conll(tmp_path / "valid.txt", 40, 2))
    cfg = TrainConfig(epochs=3, lr=1e-3, head_lr=1e-2, batch_size=16, max_length=32, progress=False)
    res = train(str(sdk_trunk_dir), "token_classification", tr, dev, layers=1, cfg=cfg,
                info=BranchInfo("entities"), out_dir=tmp_path / "entities")
    assert res.manifest is not None and res.manifest.head.word_split == "whitespace"
    trainer_f1 = res.metrics["entity_f1"]
    assert res.manifest.metrics["dev_entity_f1"] == pytest.approx(trainer_f1, abs=1e-6)
    assert 0.2 < trainer_f1 < 1.0  # learned something, and not trivially perfect (the comparison means something)

    gold = [list(e.tags) for e in dev.examples]
    texts = [" ".join(e.tokens) for e in dev.examples]
    model = compose(load_trunk_source(sdk_trunk_dir), [(tmp_path / "entities", "local")])
    by_text = model.predict(texts, tasks=["entities"])
    by_words = model.predict(words=[list(e.tokens) for e in dev.examples], tasks=["entities"])
    served = [_served_tags(r["entities"], t) for r, t in zip(by_text, texts, strict=True)]
    assert [r["entities"]["tags"] for r in by_words] == served  # the tags given back are the entities' words
    assert f1_score(gold, served) == pytest.approx(trainer_f1, abs=1e-6)

    # in the serving dtype too: the entities returned equal the per-word tags read at first sub-tokens
    labels = list(res.manifest.head.labels)
    model.to(dtype=torch.bfloat16)
    bf16 = model.predict(words=[list(e.tokens) for e in dev.examples], tasks=["entities"], raw=True)
    tok = model.tokenizer
    for r, e, t in zip(bf16, dev.examples, texts, strict=True):
        enc = tok(list(e.tokens), is_split_into_words=True, truncation=True, max_length=32)
        first = {}
        for i, w in enumerate(enc.word_ids()):
            if w is not None and w not in first:
                first[w] = i
        raw = r["entities"]["raw"]
        at_first = [labels[max(range(len(raw[first[w]])), key=raw[first[w]].__getitem__)]
                    for w in range(len(e.tokens))]
        assert r["entities"]["tags"] == at_first
        assert _served_tags(r["entities"], t) == at_first


def test_words_input_checks(sdk_trunk_dir: Path, tmp_path: Path) -> None:
    tr = load_token_data(_punct_conll(tmp_path / "train.txt", 16, 1))
    dev = load_token_data(_punct_conll(tmp_path / "valid.txt", 8, 2))
    cfg = TrainConfig(epochs=1, lr=1e-3, head_lr=1e-2, batch_size=16, max_length=32, progress=False)
    train(str(sdk_trunk_dir), "token_classification", tr, dev, layers=1, cfg=cfg, info=BranchInfo("entities"),
          out_dir=tmp_path / "entities")
    model = compose(load_trunk_source(sdk_trunk_dir), [(tmp_path / "entities", "local")])
    out = model.predict(words=[["john's", "visited", "paris."], []])
    assert len(out[0]["entities"]["tags"]) == 3 and out[1]["entities"]["tags"] == []
    for bad, match in [([["new york"]], "not a word"), ([[""]], "not a word"), (["john"], "not a list of words"),
                       ("john", "not a list of word lists"), ([[1]], "not a word")]:
        with pytest.raises(MtbranchError, match=match):
            model.predict(words=bad)
    with pytest.raises(MtbranchError, match="texts or words"):
        model.predict(["a"], words=[["a"]])
    with pytest.raises(MtbranchError, match="aggregation"):
        model.predict(["a"], aggregation="mean")
    it = model.predict_iter(iter([["john", "visited", "paris."]]), words=True)
    assert len(next(it)["entities"]["tags"]) == 3

    # over HTTP: "words" instead of "texts", the same answers as predict(words=...)
    from fastapi.testclient import TestClient

    from mtbranch.serve.app import create_app

    words = [["john's", "visited", "paris."], ["st.", "london", "is", "fun"]]
    with TestClient(create_app(model)) as client:
        deadline = time.time() + 60
        while client.get("/ready").status_code != 200:  # warm-up runs at start-up
            assert time.time() < deadline, "server did not become ready"
            time.sleep(0.05)
        got = client.post("/predict", json={"words": words})
        assert got.status_code == 200, got.text
        assert got.json()["results"] == model.predict(words=words)
        as_text = client.post("/predict", json={"texts": [" ".join(w) for w in words]}).json()["results"]
        assert [r["entities"]["entities"] for r in as_text] == [
            r["entities"]["entities"] for r in got.json()["results"]]
        assert all("tags" not in r["entities"] for r in as_text), as_text
        for body in ({"words": [["new york"]]}, {"words": [[""]]}, {"texts": ["a"], "words": [["a"]]}, {}):
            bad = client.post("/predict", json=body)
            assert bad.status_code == 422 and "hint" in bad.json(), (body, bad.text)
