"""The installed ``mtbranch-family-electra`` plugin adds the ELECTRA trunk family: it is discovered through its
entry point (no torch imported), and a tiny random ELECTRA trunk (embedding_size != hidden_size) and branches
imported from ElectraFor{Sequence,Token}Classification reproduce transformers' outputs (<= 1e-5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mtbranch.plugins.manager import PluginManager, set_plugin_manager

PLUGIN = "mtbranch-family-electra"
WORDS = ["the", "a", "movie", "was", "good", "bad", "very", "fun", "boring", "john", "visited", "paris", "and",
         "london", "in", "new", "york", ".", ",", "it", "not", "mary", "works", "at", "google"]
TEXTS = ["the movie was very good", "bad", "john visited paris and london in new york ."]
TOL = 1e-5


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MTBRANCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MTBRANCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    set_plugin_manager(None)


def test_family_is_discovered_without_torch() -> None:
    pm = PluginManager(autoload=True)
    families = pm.trunk_families()
    assert "electra" in families, f"not registered; plugin findings: {pm.findings}"
    info = {i.name: i for i in pm.plugin_infos()}[PLUGIN]
    assert info.families == ["electra"] and info.hooks == ["mtbranch_trunk_families"] and not info.errors
    code = ("import sys, mtbranch_family_electra as m; m.mtbranch_trunk_families(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def make_trunk(path: Path) -> Path:
    from transformers import BertTokenizerFast, ElectraConfig, ElectraModel

    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    torch.manual_seed(0)
    cfg = ElectraConfig(vocab_size=len(tok), embedding_size=16, hidden_size=32, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    ElectraModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def test_trunk_and_imported_branches_match_transformers(tmp_path: Path) -> None:
    from transformers import AutoModel, ElectraForSequenceClassification, ElectraForTokenClassification

    from mtbranch.branch.model import load_branch
    from mtbranch.cli.main import cli
    from mtbranch.composition.artifact import compose
    from mtbranch.trunk.model import load_trunk
    from mtbranch.trunk.source import load_trunk_source
    from mtbranch.trunk.tokenizer import load_tokenizer

    d = make_trunk(tmp_path / "trunk")
    enc = load_tokenizer(d)(TEXTS, padding=True, return_tensors="pt")
    assert enc["attention_mask"].min() == 0
    src = load_trunk_source(d)
    trunk = load_trunk(src)
    assert hasattr(trunk.embeddings, "project")  # embedding_size 16 -> hidden 32
    with torch.no_grad():
        expected = AutoModel.from_pretrained(str(d)).eval()(**enc, output_hidden_states=True).hidden_states
        got = trunk(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    for k, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert (a - b).abs().max().item() <= TOL, f"layer {k}"

    refs = {}
    for name, cls, layers, extra in (("cls", ElectraForSequenceClassification, 2, {"num_labels": 3}),
                                     ("ner", ElectraForTokenClassification, 1,
                                      {"num_labels": 3, "id2label": {0: "O", 1: "B-LOC", 2: "I-LOC"}})):
        model = cls.from_pretrained(str(d), **extra)
        torch.manual_seed(1)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                top = any(f"encoder.layer.{k}." in pname for k in range(4 - layers, 4))
                if top or not pname.startswith("electra."):
                    p.add_(torch.randn_like(p) * 0.1)
        model.save_pretrained(str(tmp_path / f"ckpt-{name}"))
        refs[name] = model.eval()
        r = CliRunner().invoke(cli, ["import-hf", str(tmp_path / f"ckpt-{name}"), "--trunk", str(d), "--layers",
                                     str(layers), "--name", name, "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    composed = compose(src, [(tmp_path / n, "directory") for n in refs])
    with torch.no_grad():
        outs = composed(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        for name, ref_model in refs.items():
            ref = ref_model(**enc).logits
            branch = load_branch(tmp_path / name)
            depth = branch.manifest.attach_depth
            standalone = branch(got[depth], enc["attention_mask"])
            assert (ref - standalone).abs().max().item() <= TOL, name
            assert (ref - outs[name]).abs().max().item() <= TOL, name
    assert os.environ.get("MTBRANCH_DISABLE_PLUGIN_AUTOLOAD") is None
