"""The SDK on trunks of other families: a branch trained on cached trunk features (ModernBERT: final norm and
prediction head; DeBERTa-v2: relative attention, ConvLayer, frozen context copy) exports to an artifact whose
composed outputs equal the trainer's evaluation, and starts from the trunk's own layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from family_fixtures import make_family_dir
from safetensors import safe_open
from sdk_fixtures import conll_data, sentiment_data

from mtbranch.composition.artifact import compose
from mtbranch.sdk.train import BranchInfo, TrainConfig, prepare, train
from mtbranch.trunk.source import load_trunk_source

FAST = TrainConfig(epochs=2, lr=1e-3, head_lr=1e-2, batch_size=16, max_length=32, progress=False)


def composed_rows(trunk_dir: Path, branch_dir: Path, enc: object, name: str) -> list[np.ndarray]:
    model = compose(load_trunk_source(trunk_dir), [(branch_dir, "local")])
    outs = []
    for ids, types in zip(enc.input_ids, enc.token_type_ids, strict=True):  # type: ignore[attr-defined]
        o = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([types]))
        outs.append(o[name][0].numpy())
    return outs


@pytest.mark.parametrize(("family", "task"), [("modernbert", "classification"), ("modernbert", "token_classification"),
                                              ("deberta-v2", "classification")])
def test_trained_branch_composes_to_its_evaluation(family: str, task: str, tmp_path: Path) -> None:
    trunk = make_family_dir(tmp_path / "trunk", family)
    tr, dev = (sentiment_data if task == "classification" else conll_data)(tmp_path, 48, 12)
    out = tmp_path / "branch"
    res = train(str(trunk), task, tr, dev, layers=1, cfg=FAST, info=BranchInfo("task"), out_dir=out)
    m = res.manifest
    assert m is not None and (m.attach_depth, m.num_layers) == (3, 1)
    src = load_trunk_source(trunk)
    # the branch layer started from trunk layer 4; its family modules are copies of the trunk's
    with safe_open(str(out / "branch.safetensors"), framework="pt") as f:
        names = set(f.keys())
    if family == "modernbert":
        assert {"final.weight", "final.bias"} <= names
    else:
        assert "context.rel_embeddings.weight" in names and "context.conv.conv.weight" in names
        with safe_open(str(out / "branch.safetensors"), framework="pt") as f, \
                safe_open(str(src.weights), framework="pt") as t:
            torch.testing.assert_close(f.get_tensor("context.rel_embeddings.weight"),
                                       t.get_tensor("encoder.rel_embeddings.weight"))  # frozen during training
    prep = prepare(str(trunk), task, tr, dev, FAST, [3])
    rows = composed_rows(trunk, out, prep.dev, "task")
    for i, row in enumerate(rows):
        np.testing.assert_allclose(row, res.dev_outputs[i, : row.shape[0]], atol=1e-4)


@pytest.mark.parametrize("family", ["deberta-v2", "modernbert", "distilbert"])
def test_cached_features_match_transformers_hidden_states(family: str, tmp_path: Path) -> None:
    """Features computed in padded batches equal each text's unpadded transformers hidden states (DeBERTa's
    ConvLayer and masked embeddings, ModernBERT's sliding windows)."""
    from transformers import AutoModel

    from mtbranch.sdk import features as F
    from mtbranch.sdk.data import TextExample
    from mtbranch.trunk.tokenizer import load_tokenizer

    trunk = make_family_dir(tmp_path / "trunk", family)
    texts = ["the movie was good", "a very very boring film , not fun at all and the plot was bad", "bad"]
    enc = F.encode_texts(load_tokenizer(trunk), [TextExample(t, None, "x") for t in texts], 32, {"x": 0})
    stores = F.compute_features(load_trunk_source(trunk), enc, [0, 2, 3], max_tokens=40)
    ref = AutoModel.from_pretrained(str(trunk)).eval()
    for i, ids in enumerate(enc.input_ids):
        with torch.no_grad():
            hs = ref(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for d in (0, 2, 3):
            torch.testing.assert_close(stores[d][i], hs[d][0], atol=1e-5, rtol=1e-5)


def test_sweep_and_distill_on_modernbert(tmp_path: Path) -> None:
    from mtbranch.branch.model import load_branch
    from mtbranch.sdk.distill import distill
    from mtbranch.sdk.sweep import sweep

    trunk = make_family_dir(tmp_path / "trunk", "modernbert")
    tr, dev = sentiment_data(tmp_path, 48, 12)
    res = sweep(str(trunk), "classification", tr, dev, min_layers=1, max_layers=2, rule="best", cfg=FAST,
                info=BranchInfo("sent"), out_dir=tmp_path / "selected")
    assert [r.depth for r in res.rows] == [3, 2]
    train(str(trunk), "classification", tr, dev, layers=2, cfg=FAST, info=BranchInfo("t"),
          out_dir=tmp_path / "teacher")
    distill(str(trunk), tmp_path / "teacher", tr, dev, student_layers=1, cfg=FAST, out_dir=tmp_path / "student")
    student = load_branch(tmp_path / "student")
    assert (student.manifest.attach_depth, student.manifest.num_layers) == (2, 1)
    model = compose(load_trunk_source(trunk), [(tmp_path / "student", "local"), (tmp_path / "selected", "local")])
    assert {"t-l1", "sent"} <= set(model.predict(["the movie was good"])[0])
