"""Trunk families: the registered :class:`TrunkFamily` records and their torch implementations.

Lookups here are torch-free (records are plain data from the ``mtbranch_trunk_families`` hook); only
:func:`impl_for` imports a family's implementation module (``mtbranch.trunk.families.<name>`` for the
built-in ones), which imports torch and transformers.
"""

from __future__ import annotations

import copy
import importlib
import re
from functools import cache
from typing import Any

from mtbranch.errors import MtbranchError
from mtbranch.plugins.records import TrunkFamily
from mtbranch.spec.structure import TrunkStructure

_BUFFERS = ("position_ids", "token_type_ids")  # non-persistent buffers older checkpoints still carry


def _manager() -> Any:
    from mtbranch.plugins.manager import get_plugin_manager

    return get_plugin_manager()


def supported_model_types() -> tuple[str, ...]:
    return tuple(_manager().trunk_families())


def record_for(model_type: str | None, path: str | None = None) -> TrunkFamily:
    """The family registered for a config ``model_type``; a clear error naming the supported ones."""
    rec = _manager().trunk_family(model_type) if isinstance(model_type, str) else None
    if rec is None:
        raise MtbranchError(f"model_type {model_type!r} is not supported (no registered trunk family)", path=path,
                            hint=f"supported: {', '.join(supported_model_types())}; a plugin can add one through "
                                 "mtbranch_trunk_families (docs/families.md)")
    return rec


def normalized_config(cfg: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    rec = record_for(cfg.get("model_type"), path)
    if rec.normalize is None:
        return cfg
    try:
        return rec.normalize(cfg)
    except (ValueError, TypeError, KeyError) as exc:
        raise MtbranchError(f"config.json is not supported by the {rec.name} family: {exc}", path=path) from None


def structure_of(cfg: dict[str, Any], path: str | None = None) -> TrunkStructure:
    """The trunk structure of a config.json dict, as its family defines it."""
    rec = record_for(cfg.get("model_type"), path)
    try:
        return TrunkStructure.from_config_dict(normalized_config(cfg, path), rec.structure_fields,
                                               rec.config_aliases)
    except ValueError as exc:  # pydantic: a required field missing or mistyped
        raise MtbranchError(f"config.json does not describe a {rec.name} trunk: {exc}", path=path) from None


def config_key(cfg_or_rec: dict[str, Any] | TrunkFamily, name: str) -> str:
    """The family's config.json key for mtbranch's ``name`` (``num_hidden_layers`` -> DistilBERT's ``n_layers``)."""
    rec = cfg_or_rec if isinstance(cfg_or_rec, TrunkFamily) else record_for(cfg_or_rec.get("model_type"))
    return rec.config_aliases.get(name, name)


def num_layers_of(cfg: dict[str, Any]) -> int:
    return int(cfg[config_key(cfg, "num_hidden_layers")])


@cache
def _compiled(rules: tuple[Any, ...]) -> list[tuple[re.Pattern[str], str, str]]:
    return [(re.compile(r.pattern), r.group, r.key) for r in rules]


def trunk_prefix(rec: TrunkFamily, names: Any) -> str:
    """The base-model prefix in front of the family's anchor tensor (``''``, ``'bert.'``, ``'model.'``)."""
    for name in names:
        if name.endswith(rec.anchor):
            return name[: -len(rec.anchor)]
    raise ValueError(f"no {rec.anchor} tensor: not a {rec.name} checkpoint")


def classify(rec: TrunkFamily, rel: str) -> tuple[str, int | None, str] | None:
    """``(group, layer index or None, trunk module key)`` of a prefix-free tensor name; None when not a trunk
    tensor (heads, poolers, buffers)."""
    if rel.endswith(_BUFFERS):
        return None
    for pattern, group, key in _compiled(rec.tensors):
        m = pattern.match(rel)
        if m:
            parts = m.groupdict()
            layer = int(parts["layer"]) if parts.get("layer") is not None else None
            return group, layer, key.format(**parts)
    return None


def trunk_tensors(rec: TrunkFamily, names: Any, depth: int | None = None) -> dict[str, tuple[str, int | None, str]]:
    """File name -> (group, layer, module key) for every trunk tensor (layers < ``depth`` when given)."""
    prefix = trunk_prefix(rec, names)
    out: dict[str, tuple[str, int | None, str]] = {}
    for name in names:
        if not name.startswith(prefix):
            continue
        c = classify(rec, name[len(prefix):])
        if c is not None and not (depth is not None and c[0] == "layer" and c[1] is not None and c[1] >= depth):
            out[name] = c
    return out


@cache
def _impl(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if isinstance(obj, type) else obj


def impl_for(model_type: str) -> Any:
    """The family's torch implementation (a :class:`mtbranch.trunk.families.base.FamilyImpl`)."""
    rec = record_for(model_type)
    try:
        impl = _impl(rec.implementation)
    except (ImportError, AttributeError) as exc:
        raise MtbranchError(f"trunk family {rec.name!r}: cannot import {rec.implementation}: {exc}",
                            hint="reinstall the plugin that provides this family") from None
    return impl


#: the sizes of an example trunk (mtbranch's names): tiny, so tests build one in milliseconds
EXAMPLE_SIZES = {"vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4,
                 "intermediate_size": 64, "max_position_embeddings": 160, "pad_token_id": 0}


def example_config(family: str | TrunkFamily, **sizes: int) -> dict[str, Any]:
    """config.json (a dict, ``model_type`` included) of an example trunk of ``family`` (a model type or a record):
    :data:`EXAMPLE_SIZES` or the given ``sizes`` (mtbranch's names, written under the family's keys) and the
    family's ``example`` settings. ``max_position_embeddings`` is the tokens a sequence may hold: a family
    numbering positions after the padding index gets ``pad_token_id + 1`` more embeddings."""
    rec = family if isinstance(family, TrunkFamily) else record_for(family)
    unknown = set(sizes) - set(EXAMPLE_SIZES)
    if unknown:
        raise ValueError(f"not a size: {sorted(unknown)} (sizes: {', '.join(EXAMPLE_SIZES)})")
    given = {**EXAMPLE_SIZES, **sizes}
    if rec.positions_after_pad:
        given["max_position_embeddings"] += given["pad_token_id"] + 1
    return {"model_type": rec.model_types[0], **{config_key(rec, k): v for k, v in given.items()},
            **copy.deepcopy(rec.example)}


def truncated_config(cfg: dict[str, Any], depth: int) -> dict[str, Any]:
    """config.json for the trunk's first ``depth`` layers (a composed artifact's truncated trunk): the layer
    count under the family's key, per-layer lists cut, derived keys (``normalize``) written out so the
    truncated trunk has the full trunk's structure."""
    out = dict(normalized_config(dict(cfg)))
    out[config_key(out, "num_hidden_layers")] = depth
    if isinstance(out.get("layer_types"), list):
        out["layer_types"] = out["layer_types"][:depth]
    return out
