"""Cached trunk features: equal to transformers' hidden states, quantization error bounds, disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import sdk_fixtures
import torch

from mtbranch.sdk import features as F
from mtbranch.sdk.data import TextExample
from mtbranch.trunk.source import load_trunk_source
from mtbranch.trunk.tokenizer import load_tokenizer

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the shared tiny trunk (fixture)

TEXTS = ["the movie was good", "a very very boring film , not fun at all", "john visited paris", "bad"]


def _encoded(trunk_dir: Path) -> F.Encoded:
    tok = load_tokenizer(trunk_dir)
    return F.encode_texts(tok, [TextExample(t, None, "x") for t in TEXTS], 32, {"x": 0})


def test_features_match_transformers_hidden_states(sdk_trunk_dir: Path) -> None:
    from transformers import BertModel

    src = load_trunk_source(sdk_trunk_dir)
    enc = _encoded(sdk_trunk_dir)
    stores = F.compute_features(src, enc, [0, 2, 4], max_tokens=20)  # several batches, padded inside each
    ref = BertModel.from_pretrained(str(sdk_trunk_dir)).eval()
    for i, ids in enumerate(enc.input_ids):
        with torch.no_grad():
            hs = ref(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for d in (0, 2, 4):
            assert stores[d].length(i) == len(ids)
            torch.testing.assert_close(stores[d][i], hs[d][0], atol=1e-5, rtol=1e-5)


def test_int8_and_1bit_round_trip_bounds() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 384) * torch.rand(50, 1) * 3
    v8, s8 = F.quantize(x, "int8")
    assert v8.dtype == torch.int8 and v8.nbytes == x.numel()
    back = F.dequantize(v8, s8, "int8", 384)
    # absmax int8: every element within half a quantization step of its vector
    assert bool(((back - x).abs() <= s8 / 2 + 1e-6).all())
    assert float(((back - x).norm(dim=-1) / x.norm(dim=-1)).max()) < 0.01

    v1, s1 = F.quantize(x, "1bit")
    assert v1.dtype == torch.uint8 and v1.nbytes == x.numel() // 8  # 32x smaller than float32
    back1 = F.dequantize(v1, s1, "1bit", 384)
    assert torch.equal(torch.sign(back1), torch.where(x >= 0, 1.0, -1.0))
    torch.testing.assert_close(back1.abs().mean(-1), x.abs().mean(-1))  # per-vector mean magnitude kept
    cos = torch.nn.functional.cosine_similarity(back1, x, dim=-1)
    assert float(cos.min()) > 0.75  # sqrt(2/pi) ~ 0.80 for Gaussian vectors

    h, _ = F.quantize(x, "float16")
    torch.testing.assert_close(F.dequantize(h, None, "float16", 384), x, atol=3e-3, rtol=1e-3)


def test_centered_1bit_beats_plain_1bit_on_offset_dimensions() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 64)
    x[:, 3] += 8.0  # an outlier dimension, as BERT's hidden states have
    plain = F.FeatureStore.from_examples([x], "1bit", 0)[0]
    centered = F.FeatureStore.from_examples([x], "1bit-centered", 0)[0]
    assert float((centered - x).norm()) < 0.6 * float((plain - x).norm())


@pytest.mark.parametrize("kind", ["none", "int8", "1bit", "1bit-centered"])
def test_disk_cache_round_trip_and_reuse(sdk_trunk_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         kind: str) -> None:
    src = load_trunk_source(sdk_trunk_dir)
    enc = _encoded(sdk_trunk_dir)
    cache = F.FeatureCache(tmp_path / "cache")
    first = cache.get(src, enc, [1, 3], kind=kind)  # type: ignore[arg-type]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    assert not list((tmp_path / "cache").glob(".*tmp*"))  # atomic writes leave no temporaries

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the trunk ran although the features are cached")

    monkeypatch.setattr(F, "compute_features", boom)
    again = F.FeatureCache(tmp_path / "cache").get(src, enc, [3, 1], kind=kind)  # type: ignore[arg-type]
    for d in (1, 3):
        assert again[d].kind == kind and len(again[d]) == len(TEXTS)
        for i in range(len(TEXTS)):
            torch.testing.assert_close(again[d][i], first[d][i])
