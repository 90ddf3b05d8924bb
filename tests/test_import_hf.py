"""import-hf: a fine-tuned checkpoint whose bottom layers equal the trunk's becomes a branch with the
same outputs as transformers' own forward."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from transformers import BertForSequenceClassification, BertForTokenClassification

from mtbranch.branch.import_hf import import_hf
from mtbranch.branch.model import load_branch
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose
from mtbranch.errors import MtbranchError
from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

TEXTS = ["the movie was very good", "bad acting", "john visited paris and berlin in the new york city"]


def _finetune_top(model: torch.nn.Module, encoder: torch.nn.Module, top: int) -> None:
    torch.manual_seed(7)
    with torch.no_grad():
        for layer in encoder.layer[-top:]:
            for p in layer.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        for name, p in model.named_parameters():
            if name.startswith(("classifier", "bert.pooler")):
                p.add_(torch.randn_like(p) * 0.3)


@pytest.mark.parametrize("kind", ["sequence", "regression", "token"])
def test_import_matches_transformers(kind: str, tiny_bert_dir, tmp_path) -> None:
    if kind == "token":
        model = BertForTokenClassification.from_pretrained(
            str(tiny_bert_dir), num_labels=5, id2label=dict(enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])))
    elif kind == "regression":
        model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=1)
    else:
        model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=3)
    _finetune_top(model, model.bert.encoder, 2)
    model.save_pretrained(str(tmp_path / "ckpt"))
    model.eval()

    src = load_trunk_source(tiny_bert_dir)
    r = CliRunner().invoke(cli, ["import-hf", str(tmp_path / "ckpt"), "--trunk", str(tiny_bert_dir),
                                 "--layers", "2", "--name", "task", "-o", str(tmp_path / "branch")])
    assert r.exit_code == 0, r.output
    branch = load_branch(tmp_path / "branch")
    assert branch.manifest.attach_depth == 2 and branch.manifest.num_layers == 2
    expected_type = {"sequence": "classification", "regression": "regression", "token": "token_classification"}
    assert branch.manifest.head.type == expected_type[kind]

    tok = load_tokenizer(tiny_bert_dir)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).logits
        states = load_trunk(src, depth=2)(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        standalone = branch(states[2], enc["attention_mask"])
    assert (ref - standalone).abs().max().item() <= 1e-5
    composed = compose(src, [(tmp_path / "branch", "directory")])
    got = composed(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])["task"]
    assert (ref - got).abs().max().item() <= 1e-5


def test_import_refuses_changed_bottom_layers(tiny_bert_dir, tmp_path) -> None:
    model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2)
    _finetune_top(model, model.bert.encoder, 3)  # layers 2..4 changed, but we claim only the top 2
    model.save_pretrained(str(tmp_path / "ckpt"))
    with pytest.raises(MtbranchError, match=r"T001.*layer 2 differs"):
        import_hf(tmp_path / "ckpt", load_trunk_source(tiny_bert_dir), num_layers=2, name="x", out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    r = CliRunner().invoke(cli, ["import-hf", str(tmp_path / "ckpt"), "--trunk", str(tiny_bert_dir),
                                 "--layers", "2", "--name", "x", "-o", str(tmp_path / "b")])
    assert r.exit_code == 1 and "T001" in r.output and "Traceback" not in r.output


def test_import_distilled_student_with_fewer_layers(tiny_bert_dir, tmp_path) -> None:
    """A 3-layer student = trunk layers 1..2 + one task layer: attaches at depth 2 of the 4-layer trunk."""
    model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2, num_hidden_layers=3)
    _finetune_top(model, model.bert.encoder, 1)
    model.save_pretrained(str(tmp_path / "student"))
    m = import_hf(tmp_path / "student", load_trunk_source(tiny_bert_dir), num_layers=1, name="s",
                  out=tmp_path / "b")
    assert (m.attach_depth, m.num_layers) == (2, 1)
