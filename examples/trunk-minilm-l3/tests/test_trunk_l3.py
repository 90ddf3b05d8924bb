"""The L3 trunk plugin: discovered, converted once and checked, and equal to the ONNX model it comes from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mtbranch_trunk_minilm_l3 import convert

from mtbranch.errors import MtbranchError
from mtbranch.plugins.manager import PluginManager

SENTENCES = [
    "A man is playing a guitar on stage.",
    "the plot is a mess and the jokes fall flat",
    "Angela Merkel met Emmanuel Macron in Paris to discuss the future of the European Union .",
    "play the new album by daft punk on spotify tonight",
    "what's the exchange rate between the euro and the yen?",
]


def test_trunk_is_discovered_with_its_shape() -> None:
    pm = PluginManager(autoload=True)
    trunks = pm.trunks()
    assert "minilm-l3" in trunks, f"trunk not provided; plugin findings: {pm.findings}"
    path = Path(trunks["minilm-l3"].path)
    config = json.loads((path / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("bert", 3, 384)
    assert (path / "tokenizer.json").is_file() and (path / "vocab.txt").is_file()


def test_converted_trunk_equals_the_onnx_model() -> None:
    """mtbranch's own trunk module on the converted checkpoint vs onnxruntime on the ONNX file."""
    import onnxruntime as ort
    import torch

    from mtbranch.trunk.model import load_trunk
    from mtbranch.trunk.source import resolve_trunk
    from mtbranch.trunk.tokenizer import load_tokenizer

    source = resolve_trunk("minilm-l3")
    tok = load_tokenizer(source.path)
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    session = ort.InferenceSession(str(convert.onnx_path()), providers=["CPUExecutionProvider"])
    last = next(o.name for o in session.get_outputs() if o.name == "onnx::Shape_422")  # last hidden state
    expected = session.run([last], {"input_ids": ids, "attention_mask": mask})[0]
    with torch.no_grad():
        got = load_trunk(source)(torch.from_numpy(ids), torch.from_numpy(mask), torch.zeros_like(torch.from_numpy(ids)))
    diff = np.abs(got[-1].numpy() - expected)[mask.astype(bool)]
    assert len(got) == 4 and diff.max() <= 1e-5, diff.max()


def test_cached_weights_match_their_sha256() -> None:
    path = convert.ensure_trunk(verify=True)
    assert convert.sha256_file(path / "model.safetensors") == convert.WEIGHTS_SHA256


def test_a_changed_onnx_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not the pinned model")
    monkeypatch.setenv("MTBRANCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(convert, "onnx_path", lambda: bad)
    with pytest.raises(MtbranchError, match="sha256") as err:
        convert.ensure_trunk()
    assert err.value.hint and "0.2.1" in err.value.hint
    assert not (tmp_path / "cache" / "trunks").exists() or not any((tmp_path / "cache" / "trunks").iterdir())


def test_every_onnx_matmul_weight_is_mapped() -> None:
    import onnx

    model = onnx.load(str(convert.onnx_path()))
    tensors = convert.bert_tensors(model)
    unnamed = [t.name for t in model.graph.initializer if not t.name.startswith(convert.PREFIX)]
    assert len(unnamed) == 18 and sum((k.endswith(".weight") and "dense" in k) or ("self." in k and
                                      k.endswith(".weight")) for k in tensors) == 18
    assert tensors["encoder.layer.0.intermediate.dense.weight"].shape == (1536, 384)  # torch's [out, in]


def test_import_does_not_import_torch() -> None:
    code = ("import sys, mtbranch_trunk_minilm_l3 as m; m.mtbranch_trunks(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
