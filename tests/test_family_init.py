"""What the family record and implementation say, used for every built-in family.

A branch started from the trunk (mtbranch.branch.factory.init_from_trunk: the SDK's train/sweep/distill and the
bench): its layers are exactly the trunk's layers above the attach depth, its context / final modules the trunk's,
and its projection comes from where the family's *ForSequenceClassification keeps it. The record's FLOPs count
(cost estimates) agrees with torch's counter; its new fields are checked like the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from family_fixtures import FAMILIES, LAYERS, make_family_dir
from safetensors import safe_open

from mtbranch.branch.factory import branch_manifest, init_from_trunk
from mtbranch.branch.model import BranchModule
from mtbranch.plugins.manager import get_plugin_manager
from mtbranch.spec.heads import ClassificationHead, TokenClassificationHead
from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

# where each family's *ForSequenceClassification keeps the projection's dense layer (transformers' names)
PROJECTION = {"bert": "bert.pooler.dense", "roberta": "classifier.dense", "xlm-roberta": "classifier.dense",
              "distilbert": "pre_classifier", "modernbert": "head.dense", "deberta-v2": "pooler.dense"}


def branch(trunk_dir: Path, depth: int, layers: int, *, token: bool = False) -> BranchModule:
    head = (TokenClassificationHead(labels=["O", "B-X", "I-X"]) if token
            else ClassificationHead(labels=["a", "b", "c"]))
    m = branch_manifest(load_trunk_source(trunk_dir), load_tokenizer(trunk_dir), name="b", attach_depth=depth,
                        num_layers=layers, head=head)
    torch.manual_seed(123)  # a fresh init unlike the trunk's
    return BranchModule(m, get_plugin_manager().head_type(head.type))


def test_every_built_in_family_is_covered() -> None:
    assert set(PROJECTION) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_layers_context_and_final_are_the_trunks(family: str, tmp_path: Path) -> None:
    d = make_family_dir(tmp_path / "trunk", family)
    depth, layers = 1, LAYERS - 2
    module = branch(d, depth, layers)
    done = init_from_trunk(module, load_trunk_source(d))
    trunk = load_trunk(load_trunk_source(d))
    for i in range(layers):
        want = trunk.layers[depth + i].state_dict()
        got = module.layers[i].state_dict()
        assert set(got) == set(want), (family, i)
        for k, v in want.items():
            assert torch.equal(got[k], v), (family, f"layers.{i}.{k}")
            assert f"layers.{i}.{k}" in done
    for part in ("context", "final"):
        if hasattr(trunk, part) and getattr(trunk, part) is not None and hasattr(module, part):
            for k, v in getattr(trunk, part).state_dict().items():
                assert torch.equal(getattr(module, part).state_dict()[k], v), (family, f"{part}.{k}")


@pytest.mark.parametrize("family", FAMILIES)
def test_projection_comes_from_the_familys_classification_checkpoint(family: str, tmp_path: Path) -> None:
    """The trunk here is the family's *ForSequenceClassification save (the base model under its prefix, plus the
    projection and classifier): the branch's projection is the checkpoint's, not BERT's pooler only."""
    from transformers import AutoModelForSequenceClassification

    base = make_family_dir(tmp_path / "base", family)
    ckpt = tmp_path / "clf"
    torch.manual_seed(7)
    AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=3).save_pretrained(str(ckpt))
    for f in base.iterdir():  # the tokenizer files
        if not (ckpt / f.name).exists():
            shutil.copy(f, ckpt / f.name)
    module = branch(ckpt, 2, 1)
    done = init_from_trunk(module, load_trunk_source(ckpt))
    dense = module.pooler.dense.state_dict()  # weight, and bias where the family has one (not ModernBERT)
    assert "weight" in dense
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        for p, v in dense.items():
            assert f"pooler.dense.{p}" in done, family
            assert torch.equal(v, f.get_tensor(f"{PROJECTION[family]}.{p}")), (family, p)


def test_modernbert_token_head_starts_from_the_prediction_head(tmp_path: Path) -> None:
    """ModernBERT runs its prediction head per token for token heads: the MLM checkpoint's head starts it."""
    from transformers import AutoModelForMaskedLM

    base = make_family_dir(tmp_path / "base", "modernbert")
    ckpt = tmp_path / "mlm"
    AutoModelForMaskedLM.from_pretrained(str(base)).save_pretrained(str(ckpt))
    for f in base.iterdir():
        if not (ckpt / f.name).exists():
            shutil.copy(f, ckpt / f.name)
    module = branch(ckpt, 3, 1, token=True)
    done = init_from_trunk(module, load_trunk_source(ckpt))
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        for k, v in module.pooler.state_dict().items():
            assert f"pooler.{k}" in done
            assert torch.equal(v, f.get_tensor(f"head.{k}")), k


@pytest.mark.parametrize(("change", "words"), [({"example": ["local_attention", 4]}, "example is list"),
                                                 ({"layer_flops": 12.0}, "layer_flops is not callable")])
def test_a_family_record_with_a_bad_example_or_flops_count_is_reported(change: dict, words: str) -> None:
    """The record's new fields are checked like the others: P003 naming the field, the record ignored."""
    from mtbranch.plugins import TrunkFamily, hookimpl
    from mtbranch.plugins.manager import PluginManager

    class Plugin:
        @hookimpl
        def mtbranch_trunk_families(self) -> list[TrunkFamily]:
            return [TrunkFamily("mine", ("mine",), "mine.impl:FAMILY", **change)]

    pm = PluginManager(autoload=False)
    pm.register(Plugin(), "mine")
    assert "mine" not in pm.trunk_families()
    assert any(f.code == "P003" and words in f.message for f in pm.findings), pm.findings


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "deberta-v2"])  # DeBERTa: relative terms uncounted
def test_layer_flops_are_the_familys_count(family: str, tmp_path: Path) -> None:
    """The cost estimate (inspect --cost, /metrics, bench GFLOP/s) reads the family's keys and count: torch's
    FLOP counter over the trunk's layers agrees (ModernBERT's gated FFN, DistilBERT's ``dim`` / ``hidden_dim``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mtbranch.io.files import read_json_object
    from mtbranch.serve.cost import Shape

    d = make_family_dir(tmp_path / "trunk", family)
    trunk = load_trunk(load_trunk_source(d))
    trunk.config._attn_implementation = "eager"  # the counter does not see inside CPU SDPA kernels
    tokens = 16
    ids = torch.randint(5, 20, (1, tokens))
    with FlopCounterMode(display=False) as counter:
        trunk(ids, torch.ones_like(ids), torch.zeros_like(ids))
    shape = Shape.of_config(read_json_object(d / "config.json"))
    assert shape == Shape.of_config(trunk.config)  # a config.json dict and a transformers config read alike
    mine = LAYERS * shape.layer(tokens)
    assert mine <= counter.get_total_flops() <= 1.02 * mine, (family, counter.get_total_flops(), mine)
