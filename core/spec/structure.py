"""The trunk's structural config and the tensor layout it implies (no torch needed).

A branch's transformer layers are the trunk's own layer type, so the shapes a branch file must hold follow
from a handful of config fields. ``tests/test_structure.py`` checks these against transformers' modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mtbranch.errors import MtbranchError, os_error
from mtbranch.io.files import JsonFileError, read_json_object

SUPPORTED_MODEL_TYPES = ("bert", "roberta")  # without plugins; trunk code passes the registered families


class TrunkStructure(BaseModel):
    """Config fields that change what a layer computes. Their canonical JSON starts the fingerprint chain.

    BERT-family trunks (BERT, RoBERTa, XLM-R) record exactly the declared fields, so their fingerprints are
    those of earlier releases. Other families (``mtbranch_trunk_families``) record ``hidden_size``,
    ``num_attention_heads`` and their own config keys (extra fields, e.g. ModernBERT's ``local_attention``);
    declared fields they do not have stay None.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    model_type: str
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int | None = None
    hidden_act: str | None = None
    layer_norm_eps: float | None = None
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    type_vocab_size: int | None = None
    pad_token_id: int | None = None
    position_embedding_type: str | None = None  # BERT-family configs: "absolute" unless set

    @classmethod
    def from_config_dict(cls, cfg: dict[str, Any], fields: tuple[str, ...] | None = None,
                         aliases: dict[str, str] | None = None) -> TrunkStructure:
        """The structure of a config.json dict. ``fields``: the family's structure keys (None: BERT's);
        ``aliases``: mtbranch name -> the family's config key (DistilBERT: ``hidden_size`` -> ``dim``)."""
        if fields is None:
            data = {k: cfg[k] for k in cls.model_fields if k in cfg}
            data.setdefault("position_embedding_type", "absolute")
            return cls(**data)
        aliases = aliases or {}
        data = {"model_type": cfg.get("model_type")}
        for k in ("hidden_size", "num_attention_heads"):
            if aliases.get(k, k) in cfg:
                data[k] = cfg[aliases.get(k, k)]
        data.update({k: cfg[k] for k in fields if k in cfg})
        return cls(**data)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))

    def differences(self, other: TrunkStructure) -> list[str]:
        a, b = self.model_dump(), other.model_dump()
        keys = [*a, *(k for k in b if k not in a)]
        return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def read_config(model_dir: Path, supported: tuple[str, ...] | None = None, *,
                check_model_type: bool = True) -> dict[str, Any]:
    """config.json of a model directory; ``supported``: the model types accepted (default: BERT, RoBERTa).
    ``check_model_type=False``: the caller checks it (the trunk layer, against the registered families)."""
    path = model_dir / "config.json"
    try:
        cfg = read_json_object(path)  # strict: each key once (two values for one key are read differently)
    except FileNotFoundError:
        raise MtbranchError("no config.json here", path=str(model_dir),
                            hint="point at a Hugging Face model directory (config.json + model.safetensors)") from None
    except JsonFileError as exc:
        raise MtbranchError(f"config.json is not valid JSON: {exc}", path=str(path)) from None
    except OSError as exc:  # a FIFO, device or directory in its place; permission denied
        raise os_error(exc, "reading config.json", str(path)) from None
    except UnicodeDecodeError as exc:
        raise MtbranchError(f"config.json is not valid JSON: {exc}", path=str(path)) from None
    if not isinstance(cfg, dict):
        raise MtbranchError("config.json is not a JSON object", path=str(path))
    supported = SUPPORTED_MODEL_TYPES if supported is None else supported
    if check_model_type and cfg.get("model_type") not in supported:
        raise MtbranchError(
            f"model_type {cfg.get('model_type')!r} is not supported",
            path=str(path),
            hint=f"supported trunk families (model_type): {', '.join(supported)}; more come from plugins "
                 "implementing mtbranch_trunk_families (docs/families.md)",
        )
    return cfg


def layer_tensor_shapes(s: TrunkStructure) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of one BERT-family transformer layer, relative to the layer."""
    h, i = s.hidden_size, int(s.intermediate_size or 0)
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
        "embeddings.word_embeddings.weight": (int(s.vocab_size or 0), h),
        "embeddings.position_embeddings.weight": (int(s.max_position_embeddings or 0), h),
        "embeddings.token_type_embeddings.weight": (int(s.type_vocab_size or 0), h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
