"""Every built-in trunk family against transformers' own forward, through the real path (tiny random configs
saved to disk): trunk hidden states after every layer, and branches imported from the family's
*ForSequenceClassification / *ForTokenClassification checkpoints, standalone and composed with branches at
other depths (float32, padded batch, max abs diff <= 1e-5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from family_fixtures import FAMILIES, LAYERS, make_family_dir
from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

from mtbranch.branch.model import load_branch
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose
from mtbranch.trunk.families import classify, record_for
from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

TOL = 1e-5
TEXTS = ["the movie was very good and the plot was great fun", "bad",
         "john visited paris and berlin in the new york city company ."]
PAIRS = ["a very boring film", "the actor was terrible , not fun", "mary works at google in london"]
BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    family = request.param
    return family, make_family_dir(tmp_path_factory.mktemp(f"trunk-{family}"), family)


def inputs(enc: Any) -> dict[str, torch.Tensor]:
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_hidden_states_match_transformers(family_dir: tuple[str, Path]) -> None:
    family, d = family_dir
    enc = load_tokenizer(d)(TEXTS, padding=True, return_tensors="pt")
    assert enc["attention_mask"].min() == 0  # the batch is padded
    ref = AutoModel.from_pretrained(str(d)).eval()
    with torch.no_grad():
        expected = ref(**inputs(enc), output_hidden_states=True).hidden_states
    trunk = load_trunk(load_trunk_source(d))
    with torch.no_grad():
        got = trunk(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    assert len(got) == len(expected) == LAYERS + 1
    if family == "modernbert":
        # transformers' last hidden state is after the final norm, which each branch applies (docs/families.md)
        with torch.no_grad():
            got = [*got[:-1], trunk.final(got[-1])]
    for k, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert max_diff(a, b) <= TOL, f"{family} layer {k}: {max_diff(a, b)}"


def test_modernbert_sliding_window_matters(tmp_path: Path) -> None:
    """The test texts are longer than the local window, so the sliding-window mask changes the outputs."""
    d = make_family_dir(tmp_path / "mb", "modernbert")
    src = load_trunk_source(d)
    trunk = load_trunk(src)
    assert trunk.config.num_hidden_layers > src.config.get("global_attn_every_n_layers", 3)
    assert [layer.attention_type for layer in trunk.layers] == ["full_attention", "sliding_attention",
                                                               "sliding_attention", "full_attention"]
    enc = load_tokenizer(d)(TEXTS, padding=True, return_tensors="pt")
    assert enc["input_ids"].shape[1] > trunk.config.local_attention
    with torch.no_grad():
        hidden = trunk.embed(enc["input_ids"], None, enc["attention_mask"])
        masks, rotary = trunk.mask(hidden, enc["attention_mask"])
        wrong = ({"full_attention": masks["full_attention"], "sliding_attention": masks["full_attention"]}, rotary)
        a = trunk.run_layer(2, trunk.run_layer(1, hidden, (masks, rotary)), (masks, rotary))
        b = trunk.run_layer(2, trunk.run_layer(1, hidden, wrong), wrong)
    assert max_diff(a, b) > 1e-3


def test_deberta_context_configured(tmp_path: Path) -> None:
    d = make_family_dir(tmp_path / "deb", "deberta-v2")
    trunk = load_trunk(load_trunk_source(d), depth=1)
    assert trunk.context.relative_attention and trunk.context.conv is not None
    assert {"context.rel_embeddings.weight", "context.conv.conv.weight"} <= set(trunk.state_dict())


def finetune(model: torch.nn.Module, family: str, top: int) -> None:
    """Change the top ``top`` layers, the final module and the head, as fine-tuning with the rest frozen does."""
    rec = record_for(model.config.model_type)
    prefix = model.base_model_prefix + "."
    torch.manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(prefix):
                p.add_(torch.randn_like(p) * 0.3)
                continue
            c = classify(rec, name[len(prefix):])
            if c is not None and (c[0] == "final" or (c[0] == "layer" and c[1] is not None and c[1] >= LAYERS - top)):
                p.add_(torch.randn_like(p) * 0.05)


def checkpoint(family: str, trunk_dir: Path, out: Path, kind: str, top: int) -> torch.nn.Module:
    extra: dict[str, Any] = {"classifier_pooling": "mean"} if family == "modernbert" and kind == "seq" else {}
    if kind == "tok":
        model = AutoModelForTokenClassification.from_pretrained(
            str(trunk_dir), num_labels=len(BIO), id2label=dict(enumerate(BIO)),
            label2id={t: i for i, t in enumerate(BIO)})
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(trunk_dir), num_labels=1 if kind == "reg" else 3, **extra)
    finetune(model, family, top)
    model.save_pretrained(str(out))
    return model.eval()


def import_cli(ckpt: Path, trunk_dir: Path, layers: int, name: str, out: Path, *pair: str) -> None:
    r = CliRunner().invoke(cli, ["import-hf", str(ckpt), "--trunk", str(trunk_dir), "--layers", str(layers),
                                 "--name", name, "-o", str(out), *pair])
    assert r.exit_code == 0, r.output


def test_imported_branches_match_transformers(family_dir: tuple[str, Path], tmp_path: Path) -> None:
    """Classification at depth 2, token classification at depth 3, regression on pairs at depth 1."""
    family, d = family_dir
    plan = {"cls": ("seq", 2, ()), "ner": ("tok", 1, ()), "sim": ("reg", 3, ("--pair",))}
    refs = {}
    for name, (kind, layers, pair) in plan.items():
        refs[name] = checkpoint(family, d, tmp_path / f"ckpt-{name}", kind, layers)
        import_cli(tmp_path / f"ckpt-{name}", d, layers, name, tmp_path / name, *pair)
    tok = load_tokenizer(d)
    single = tok(TEXTS, padding=True, return_tensors="pt")
    pair = tok(TEXTS, PAIRS, padding=True, return_tensors="pt")
    src = load_trunk_source(d)
    trunk = load_trunk(src)
    composed = compose(src, [(tmp_path / n, "directory") for n in plan])
    assert sorted(b.manifest.attach_depth for b in composed.branches) == [1, 2, 3]
    with torch.no_grad():
        outs = {**composed(single["input_ids"], single["attention_mask"], single.get("token_type_ids"),
                           [composed.branch("cls"), composed.branch("ner")]),
                **composed(pair["input_ids"], pair["attention_mask"], pair.get("token_type_ids"),
                           [composed.branch("sim")])}
    for name, (kind, layers, _) in plan.items():
        enc = pair if kind == "reg" else single
        branch = load_branch(tmp_path / name)
        depth = LAYERS - layers
        assert branch.manifest.attach_depth == depth
        with torch.no_grad():
            ref = refs[name](**inputs(enc)).logits
            states = trunk(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), depth=depth)
            standalone = branch(states[depth], enc["attention_mask"])
        assert max_diff(ref, standalone) <= TOL, f"{family} {name} standalone: {max_diff(ref, standalone)}"
        assert max_diff(ref, outs[name]) <= TOL, f"{family} {name} composed: {max_diff(ref, outs[name])}"


def test_modernbert_predict_cli_equals_transformers(tmp_path: Path) -> None:
    """Classification (depth 2), pair regression (depth 1) and token classification (depth 3) composed on one
    ModernBERT trunk with `mtbranch compose`, predicted with `mtbranch predict --raw --json`: each task's raw
    outputs equal its transformers model's logits."""
    d = make_family_dir(tmp_path / "trunk", "modernbert")
    plan = {"cls": ("seq", 2, ()), "sim": ("reg", 3, ("--pair",)), "ner": ("tok", 1, ())}
    refs = {}
    for name, (kind, layers, pair) in plan.items():
        refs[name] = checkpoint("modernbert", d, tmp_path / f"ckpt-{name}", kind, layers)
        import_cli(tmp_path / f"ckpt-{name}", d, layers, name, tmp_path / name, *pair)
    args = ["compose", "--trunk", str(d), *(a for n in plan for a in ("--branch", str(tmp_path / n))),
            "-o", str(tmp_path / "composed")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    text, other = TEXTS[2], PAIRS[2]
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "composed"), text, "--pair", other, "--raw", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)[0]
    tok = load_tokenizer(d)
    single, pair = tok([text], return_tensors="pt"), tok([text], [other], return_tensors="pt")
    with torch.no_grad():
        expected = {"cls": refs["cls"](**inputs(single)).logits[0], "ner": refs["ner"](**inputs(single)).logits[0],
                    "sim": refs["sim"](**inputs(pair)).logits[0]}
    for name, ref in expected.items():
        raw = torch.tensor(got[name]["raw"])
        assert raw.shape == ref.shape and max_diff(ref, raw) <= TOL, f"{name}: {max_diff(ref, raw)}"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["modernbert"])
def test_onnx_export_matches_pytorch(family: str, tmp_path: Path) -> None:
    """export-onnx on the family with the most per-forward machinery (sliding-window masks, rotary per layer
    type): ONNX Runtime equals PyTorch on texts of several lengths. (Every family's figure, DeBERTa-v2's
    included, is measured by docs/scripts/family_diffs.py --onnx; one export here keeps the suite fast.)"""
    from mtbranch.export.onnx import check_onnx, export_onnx

    d = make_family_dir(tmp_path / "trunk", family)
    checkpoint(family, d, tmp_path / "ckpt-cls", "seq", 2)
    import_cli(tmp_path / "ckpt-cls", d, 2, "cls", tmp_path / "cls")
    checkpoint(family, d, tmp_path / "ckpt-ner", "tok", 1)
    import_cli(tmp_path / "ckpt-ner", d, 1, "ner", tmp_path / "ner")
    model = compose(load_trunk_source(d), [(tmp_path / "cls", "directory"), (tmp_path / "ner", "directory")])
    export_onnx(model, tmp_path / "onnx")
    diffs = check_onnx(model, tmp_path / "onnx")
    assert set(diffs) == {"cls", "ner"} and max(diffs.values()) <= TOL, diffs


def test_onnx_export_refuses_an_unchecked_family_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A family whose record does not declare ``onnx=True`` (e.g. a new plugin family) gets a clear error."""
    import dataclasses

    import mtbranch.plugins.builtin as builtin

    families = builtin._families()
    monkeypatch.setattr(builtin, "_families", lambda: [dataclasses.replace(f, onnx=f.name != "distilbert")
                                                       for f in families])
    d = make_family_dir(tmp_path / "trunk", "distilbert")
    checkpoint("distilbert", d, tmp_path / "ckpt", "seq", 1)
    import_cli(tmp_path / "ckpt", d, 1, "cls", tmp_path / "cls")
    r = CliRunner().invoke(cli, ["compose", "--trunk", str(d), "--branch", str(tmp_path / "cls"),
                                 "-o", str(tmp_path / "composed")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["export-onnx", str(tmp_path / "composed"), "-o", str(tmp_path / "onnx")])
    assert r.exit_code == 1 and "not supported for the distilbert trunk family yet" in r.output
    assert "Traceback" not in r.output


def test_import_token_checkpoint_without_bio_labels_is_a_user_error(tmp_path: Path) -> None:
    d = make_family_dir(tmp_path / "trunk", "distilbert")
    model = AutoModelForTokenClassification.from_pretrained(str(d), num_labels=3)  # LABEL_0.. are not BIO tags
    model.save_pretrained(str(tmp_path / "ckpt"))
    r = CliRunner().invoke(cli, ["import-hf", str(tmp_path / "ckpt"), "--trunk", str(d), "--layers", "1",
                                 "--name", "ner", "-o", str(tmp_path / "ner")])
    assert r.exit_code == 1 and "id2label" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("family", ["distilbert", "deberta-v2"])
def test_truncated_artifact_load_update_and_task_subsets(family: str, tmp_path: Path) -> None:
    """A composed artifact keeps layers 1..3 of 4 (config written with the family's layer-count key); loaded
    with hashes and fingerprints verified it predicts as the in-memory model; a task subset gives the same
    results for its task; `update --remove` leaves the other branch bit-identical; `validate` is clean."""
    import mtbranch

    d = make_family_dir(tmp_path / "trunk", family)
    checkpoint(family, d, tmp_path / "ckpt-cls", "seq", 2)
    import_cli(tmp_path / "ckpt-cls", d, 2, "cls", tmp_path / "cls")
    checkpoint(family, d, tmp_path / "ckpt-ner", "tok", 1)
    import_cli(tmp_path / "ckpt-ner", d, 1, "ner", tmp_path / "ner")
    branches = ["--branch", str(tmp_path / "cls"), "--branch", str(tmp_path / "ner")]
    r = CliRunner().invoke(cli, ["validate", "--trunk", str(d), *branches])
    assert r.exit_code == 0, r.output
    out = tmp_path / "composed"
    r = CliRunner().invoke(cli, ["compose", "--trunk", str(d), *branches, "-o", str(out)])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "trunk" / "config.json").read_text())
    assert cfg["n_layers" if family == "distilbert" else "num_hidden_layers"] == 3
    memory = compose(load_trunk_source(d), [(tmp_path / "cls", "directory"), (tmp_path / "ner", "directory")])
    loaded = mtbranch.load(out)
    assert loaded.trunk.num_layers == 3
    full = loaded.predict(TEXTS, raw=True)
    assert full == memory.predict(TEXTS, raw=True)
    assert [{"cls": r["cls"]} for r in full] == loaded.predict(TEXTS, tasks=["cls"], raw=True)
    r = CliRunner().invoke(cli, ["update", str(out), "--remove", "ner"])
    assert r.exit_code == 0, r.output
    assert mtbranch.load(out).predict(TEXTS, raw=True) == [{"cls": r["cls"]} for r in full]


def test_validation_checks_the_family_layout(tmp_path: Path) -> None:
    """Weights are checked against the family's layout (built on the meta device): a ModernBERT branch file
    whose prediction-head norm has the wrong shape is W006."""
    from safetensors.torch import load_file, save_file

    d = make_family_dir(tmp_path / "trunk", "modernbert")
    checkpoint("modernbert", d, tmp_path / "ckpt", "tok", 1)
    import_cli(tmp_path / "ckpt", d, 1, "ner", tmp_path / "ner")
    r = CliRunner().invoke(cli, ["validate", "--trunk", str(d), "--branch", str(tmp_path / "ner")])
    assert r.exit_code == 0, r.output
    weights = tmp_path / "ner" / "branch.safetensors"
    state = load_file(str(weights))
    assert {"final.weight", "pooler.norm.weight", "layers.0.attn.Wqkv.weight"} <= set(state)
    state["pooler.norm.weight"] = torch.zeros(7)
    save_file(state, str(weights))
    r = CliRunner().invoke(cli, ["validate", "--trunk", str(d), "--branch", str(tmp_path / "ner"),
                                 "--format", "json"])
    assert r.exit_code == 1
    codes = {f["code"] for f in json.loads(r.output)["findings"]}
    assert "W006" in codes


def test_modernbert_legacy_config_and_fingerprint_stability(tmp_path: Path) -> None:
    """A config in the pre-transformers-5 form (``global_attn_every_n_layers``, ``global_rope_theta`` /
    ``local_rope_theta``, as ModernBERT and mmBERT ship) runs as transformers reads it (mmBERT-style local
    theta 160000), and its structure equals that of the same config re-saved by transformers 5."""
    d = make_family_dir(tmp_path / "new", "modernbert")
    cfg = json.loads((d / "config.json").read_text())
    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    for f in d.iterdir():
        (legacy_dir / f.name).write_bytes(f.read_bytes())
    legacy = {k: v for k, v in cfg.items() if k not in ("rope_parameters", "layer_types")}
    legacy.update(global_attn_every_n_layers=3, global_rope_theta=160000.0, local_rope_theta=160000.0)
    (legacy_dir / "config.json").write_text(json.dumps(legacy))
    enc = load_tokenizer(legacy_dir)(TEXTS, padding=True, return_tensors="pt")
    ref = AutoModel.from_pretrained(str(legacy_dir)).eval()
    assert ref.config.rope_parameters["sliding_attention"]["rope_theta"] == 160000.0
    trunk = load_trunk(load_trunk_source(legacy_dir))
    with torch.no_grad():
        expected = ref(**inputs(enc), output_hidden_states=True).hidden_states
        got = trunk(enc["input_ids"], enc["attention_mask"])
    for k in range(LAYERS):
        assert max_diff(expected[k], got[k]) <= TOL, k
    ref.save_pretrained(str(tmp_path / "resaved"))
    assert load_trunk_source(tmp_path / "resaved").structure == load_trunk_source(legacy_dir).structure


def test_builtin_family_lookup_imports_no_plugin_and_unknown_types_are_user_errors(tmp_path: Path) -> None:
    from mtbranch.errors import MtbranchError
    from mtbranch.plugins.manager import PluginManager, set_plugin_manager

    d = make_family_dir(tmp_path / "trunk", "deberta-v2")
    pm = PluginManager(autoload=True)
    set_plugin_manager(pm)
    load_trunk(load_trunk_source(d), depth=1)
    assert pm._pending_load  # built-in families are found without importing any entry point
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(MtbranchError, match=r"model_type 'gpt2' is not supported") as err:
        load_trunk_source(d)
    assert "deberta-v2" in (err.value.hint or "") and "config.json" in str(err.value.path)
