"""The trunk, layer by layer, equals transformers' own forward (hidden states after every layer)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

TEXTS = ["the movie was very good", "bad", "john visited paris and london in the new york company ."]


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_roberta_dir"])
def test_hidden_states_match_transformers(fixture: str, request: pytest.FixtureRequest) -> None:
    d = request.getfixturevalue(fixture)
    tok = load_tokenizer(d)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    assert enc["attention_mask"].min() == 0  # the batch is padded
    ref = AutoModel.from_pretrained(str(d)).eval()
    with torch.no_grad():
        expected = ref(**enc, output_hidden_states=True).hidden_states
    trunk = load_trunk(load_trunk_source(d))
    with torch.no_grad():
        got = trunk(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    assert len(got) == len(expected) == 5
    for k, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert (a - b).abs().max().item() <= 1e-5, f"layer {k}"


def test_truncated_trunk_loads_only_needed_layers(tiny_bert_dir) -> None:
    trunk = load_trunk(load_trunk_source(tiny_bert_dir), depth=2)
    assert trunk.num_layers == 2
    assert not any(k.startswith("layers.2") for k in trunk.state_dict())


def test_fingerprint_chain_prefix_free(tiny_bert_dir, tmp_path) -> None:
    from transformers import BertForSequenceClassification

    from mtbranch.trunk.fingerprint import compute_chain

    src = load_trunk_source(tiny_bert_dir)
    chain = src.fingerprints
    assert len(chain) == 5 and len(set(chain)) == 5
    # the same weights under a `bert.` prefix (a *ForSequenceClassification save) give the same chain
    clf = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2)
    clf.save_pretrained(str(tmp_path / "clf"))
    assert compute_chain(tmp_path / "clf" / "model.safetensors", src.structure)[:5] == chain
    # a change in layer 3 changes h_3 and h_4 only
    with torch.no_grad():
        clf.bert.encoder.layer[2].output.dense.weight.add_(1e-3)
    clf.save_pretrained(str(tmp_path / "clf2"))
    chain2 = compute_chain(tmp_path / "clf2" / "model.safetensors", src.structure)
    assert chain2[:3] == chain[:3] and chain2[3] != chain[3] and chain2[4] != chain[4]


def test_fingerprint_cache_reuses_result(tiny_bert_dir, monkeypatch) -> None:
    import mtbranch.trunk.fingerprint as fp

    src = load_trunk_source(tiny_bert_dir)
    first = fp.fingerprint_chain(src.weights, src.structure)
    monkeypatch.setattr(fp, "compute_chain", lambda *a, **k: pytest.fail("re-hashed an unchanged trunk"))
    assert fp.fingerprint_chain(src.weights, src.structure) == first


def test_layer_shapes_match_transformers(tiny_bert_dir) -> None:
    from mtbranch.spec.structure import embedding_tensor_shapes, layer_tensor_shapes

    src = load_trunk_source(tiny_bert_dir)
    trunk = load_trunk(src, depth=1)
    layer = {k.removeprefix("layers.0."): tuple(v.shape) for k, v in trunk.state_dict().items()
             if k.startswith("layers.0.")}
    assert layer == layer_tensor_shapes(src.structure)
    emb = {k: tuple(v.shape) for k, v in trunk.state_dict().items() if k.startswith("embeddings.")
           and not k.endswith(("position_ids", "token_type_ids"))}
    assert emb == embedding_tensor_shapes(src.structure)


def test_hub_reference_gives_clear_error_when_unreachable(monkeypatch) -> None:
    from mtbranch.errors import MtbranchError
    from mtbranch.trunk.source import resolve_trunk

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MtbranchError, match=r"cannot (download|resolve) hf:org/model@main"):
        resolve_trunk("hf:org/model@main")


def test_pickled_weights_are_refused(tiny_bert_dir, tmp_path) -> None:
    import shutil

    from mtbranch.errors import MtbranchError

    d = tmp_path / "legacy"
    shutil.copytree(tiny_bert_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(MtbranchError, match="never unpickles"):
        load_trunk_source(d)
