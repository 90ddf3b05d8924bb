"""Shared fixtures: tiny BERT/RoBERTa trunks built with transformers' config classes, saved to disk and
loaded back through the same code path as a real trunk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# load's default (auto) exports to ONNX and times the engines: seconds per new artifact. The suite runs the float32
# reference unless a test asks for a backend (tests/test_backends.py covers auto). Set here, at import, so that
# module- and session-scoped fixtures load with it too
os.environ.setdefault("MTBRANCH_BACKEND", "torch")
os.environ.setdefault("MTBRANCH_DTYPE", "float32")

WORDS = (
    'the', 'a', 'an', 'is', 'was', 'good', 'bad', 'great', 'terrible', 'movie', 'film', 'plot', 'actor',
    'acting', 'john', 'mary', 'paris', 'london', 'berlin', 'google', 'apple', 'visited', 'works', 'at', 'in',
    'on', 'and', 'of', 'to', 'it', 'this', 'that', 'very', 'not', 'fun', 'boring', 'love', 'hate', ',', '.',
    '!', '?', 'new', 'york', 'city', 'company', '##s', '##ing', '##ed', '##er', '##ly', '##y', '##e', '##a',
    '##o', '##n', '##t', '##r', '##l', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_bert_dir(path: Path, *, layers: int = 4, hidden: int = 32, heads: int = 4, seed: int = 0,
                  model_type: str = "bert", with_pooler: bool = True, max_positions: int = 160,
                  tok_max_length: int | None = 128) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast, RobertaConfig, RobertaModel

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + list(dict.fromkeys(WORDS))) + "\n")
    tok = (BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=tok_max_length)
           if tok_max_length else BertTokenizerFast(vocab=str(vocab), do_lower_case=True))
    torch.manual_seed(seed)
    common = dict(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=hidden * 2, max_position_embeddings=max_positions, type_vocab_size=2)
    if model_type == "roberta":
        cfg = RobertaConfig(**common, pad_token_id=0)
        model = RobertaModel(cfg, add_pooling_layer=with_pooler)
    else:
        cfg = BertConfig(**common)
        model = BertModel(cfg, add_pooling_layer=with_pooler)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bert_dir(tmp_path_factory.mktemp("tiny-roberta"), model_type="roberta", seed=1)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test gets its own fingerprint cache and a plugin manager rebuilt from the environment."""
    from mtbranch.plugins.manager import set_plugin_manager

    monkeypatch.setenv("MTBRANCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    # installed example plugins must not leak into unit tests; plugin tests opt back in
    monkeypatch.setenv("MTBRANCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("MTBRANCH_BACKEND", os.environ["MTBRANCH_BACKEND"])  # a test's own change is undone
    monkeypatch.setenv("MTBRANCH_DTYPE", os.environ["MTBRANCH_DTYPE"])
    set_plugin_manager(None)
