"""Tiny datasets for the SDK tests, written with the words of the tiny trunk's vocabulary (conftest.py).

The labels follow simple rules (a sentiment word decides the class; shared words decide the score;
capitalised-city words are LOC) so a small branch can learn them in a few epochs.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mtbranch.sdk.data import TableSpec, load_table_data, load_token_data

VOCAB = """[PAD] [UNK] [CLS] [SEP] [MASK] the a an is was good bad great terrible movie film plot actor acting
john mary paris london berlin new york visited works at in on and of to it this that very not fun boring love hate
, . ! ? ##s ##ing ##ed ##er ##ly ##y ##e ##a ##o ##n ##t ##r ##l""".split()  # noqa: SIM905

POS = ["good", "great", "fun", "love"]
NEG = ["bad", "terrible", "boring", "hate"]
FILL = ["the", "movie", "film", "plot", "acting", "was", "very", "this", "it", "is", "a"]
PEOPLE = ["john", "mary"]
PLACES = ["paris", "london", "berlin"]


def make_sdk_trunk(path: Path, *, layers: int = 4, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny BERT trunk + a working WordPiece tokenizer (transformers 5 takes ``vocab=``, not ``vocab_file=``)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True, model_max_length=128)
    assert tok.tokenize("johns visited paris") == ["john", "##s", "visited", "paris"]
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=2 * hidden, max_position_embeddings=160, type_vocab_size=2)
    BertModel(cfg).save_pretrained(str(path))  # with a pooler: branches start from it
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def sdk_trunk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sdk_trunk(tmp_path_factory.mktemp("sdk-trunk"))


def write_sentiment(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [*rng.sample(FILL, rng.randint(2, 6)), rng.choice(POS if label else NEG)]
        rng.shuffle(words)
        lines.append(" ".join(words) + " \t" + str(label))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_pairs(path: Path, n: int, seed: int) -> Path:
    """STS-B layout: no header, genre/file/year/id, score, sentence1, sentence2."""
    rng = random.Random(seed)
    vocab = FILL + POS + NEG
    lines = []
    for i in range(n):
        a = rng.sample(vocab, 5)
        keep = rng.randint(0, 5)
        b = a[:keep] + rng.sample([w for w in vocab if w not in a], 5 - keep)
        lines.append(f"g\tf\t2012\t{i:04d}\t{keep:.3f}\t{' '.join(a)}\t{' '.join(b)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_conll(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    out = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(n):
        words: list[tuple[str, str]] = [(w, "O") for w in rng.sample(FILL, 3)]
        words.insert(rng.randint(0, 3), (rng.choice(PEOPLE), "B-PER"))
        place = rng.choice([*PLACES, "new york"])
        pos = rng.randint(0, len(words))
        for j, w in enumerate(place.split()):
            words.insert(pos + j, (w, "B-LOC" if j == 0 else "I-LOC"))
        out += [f"{w} X X {t}" for w, t in words] + [""]
    path.write_text("\n".join(out))
    return path


def sentiment_data(tmp: Path, n_train: int = 160, n_dev: int = 40) -> tuple:
    spec = TableSpec(text="sentence", label="label")
    return (load_table_data(write_sentiment(tmp / "train.tsv", n_train, 1), spec),
            load_table_data(write_sentiment(tmp / "dev.tsv", n_dev, 2), spec))


def pair_data(tmp: Path, n_train: int = 160, n_dev: int = 40) -> tuple:
    spec = TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True)
    return (load_table_data(write_pairs(tmp / "sts-train.csv", n_train, 1), spec),
            load_table_data(write_pairs(tmp / "sts-dev.csv", n_dev, 2), spec))


def conll_data(tmp: Path, n_train: int = 120, n_dev: int = 30) -> tuple:
    return (load_token_data(write_conll(tmp / "train.txt", n_train, 1)),
            load_token_data(write_conll(tmp / "valid.txt", n_dev, 2)))
