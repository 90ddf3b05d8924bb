"""The trunk's structural config and the tensor layout it implies (no torch needed).

A branch's transformer layers are the trunk's own layer type, so the shapes a branch file must hold follow
from a handful of config fields. ``tests/test_structure.py`` checks these against transformers' modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mtbranch.errors import MtbranchError

SUPPORTED_MODEL_TYPES = ("bert", "roberta")


class TrunkStructure(BaseModel):
    """Config fields that change what a layer computes. Their canonical JSON starts the fingerprint chain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: str
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    pad_token_id: int | None = None
    position_embedding_type: str = "absolute"

    @classmethod
    def from_config_dict(cls, cfg: dict[str, Any]) -> TrunkStructure:
        fields = {k: cfg[k] for k in cls.model_fields if k in cfg}
        fields.setdefault("position_embedding_type", "absolute")
        return cls(**fields)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))

    def differences(self, other: TrunkStructure) -> list[str]:
        a, b = self.model_dump(), other.model_dump()
        return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if a[k] != b[k]]


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MtbranchError("no config.json here", path=str(model_dir),
                            hint="point at a Hugging Face model directory (config.json + model.safetensors)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MtbranchError(f"config.json is not valid JSON: {exc}", path=str(path)) from None
    if not isinstance(cfg, dict):
        raise MtbranchError("config.json is not a JSON object", path=str(path))
    if cfg.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise MtbranchError(
            f"model_type {cfg.get('model_type')!r} is not supported",
            path=str(path),
            hint=f"supported trunk families: {', '.join(SUPPORTED_MODEL_TYPES)} (BERT incl. MiniLM, RoBERTa)",
        )
    return cfg


def layer_tensor_shapes(s: TrunkStructure) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of one BERT-family transformer layer, relative to the layer."""
    h, i = s.hidden_size, s.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {}
    for proj in ("query", "key", "value"):
        shapes[f"attention.self.{proj}.weight"] = (h, h)
        shapes[f"attention.self.{proj}.bias"] = (h,)
    shapes.update({
        "attention.output.dense.weight": (h, h),
        "attention.output.dense.bias": (h,),
        "attention.output.LayerNorm.weight": (h,),
        "attention.output.LayerNorm.bias": (h,),
        "intermediate.dense.weight": (i, h),
        "intermediate.dense.bias": (i,),
        "output.dense.weight": (h, i),
        "output.dense.bias": (h,),
        "output.LayerNorm.weight": (h,),
        "output.LayerNorm.bias": (h,),
    })
    return shapes


def embedding_tensor_shapes(s: TrunkStructure) -> dict[str, tuple[int, ...]]:
    h = s.hidden_size
    return {
        "embeddings.word_embeddings.weight": (s.vocab_size, h),
        "embeddings.position_embeddings.weight": (s.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (s.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
