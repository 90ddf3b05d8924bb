"""Typed records returned by hooks. Plain dataclasses: importing them never imports torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BranchLocation:
    """A branch artifact directory shipped by a plugin."""

    name: str
    path: Path
    description: str = ""


@dataclass(frozen=True)
class TrunkProvider:
    """A local trunk (Hugging Face model directory with tokenizer files) under a short name."""

    name: str
    path: Path
    description: str = ""


@dataclass(frozen=True)
class Check:
    """An organisation policy: ``run(manifest, artifact_dir)`` returns a list of findings."""

    name: str
    run: Callable[[Any, Path], list[Any]]
    description: str = ""


@dataclass
class PluginInfo:
    """One row of ``mtbranch plugins``."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    trunks: list[str] = field(default_factory=list)
    head_types: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TensorRule:
    """Where one kind of trunk tensor belongs, matched on its name after the base-model prefix.

    ``pattern`` is a regex; its named group ``layer`` (0-based) says which layer a ``layer`` tensor belongs to
    and ``rest`` the tail of the name. ``group`` is ``embeddings`` (hashed into ``h0``: embeddings and tensors
    every layer reads, e.g. DeBERTa's relative embeddings), ``layer`` (hashed into ``h_{layer+1}``) or
    ``final`` (after the last layer, e.g. ModernBERT's final norm: not in the chain, each branch keeps a
    copy). ``key`` is the name in mtbranch's trunk module, formatted with the named groups
    (``embeddings.{rest}``, ``layers.{layer}.{rest}``, ``context.{rest}``, ``final.{rest}``).
    """

    pattern: str
    group: str
    key: str


def dense_layer_flops(tokens: int, hidden: int, intermediate: int) -> float:
    """FLOPs (2 per multiply-add) of one BERT-style encoder layer over a row of ``tokens`` tokens: the Q, K, V and
    output projections, a two-matrix MLP, and attention (QK^T and AV)."""
    return 2.0 * tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 4.0 * tokens * tokens * hidden


BERT_TENSOR_RULES = (
    TensorRule(r"^embeddings\.(?P<rest>.+)$", "embeddings", "embeddings.{rest}"),
    TensorRule(r"^encoder\.layer\.(?P<layer>\d+)\.(?P<rest>.+)$", "layer", "layers.{layer}.{rest}"),
)


@dataclass(frozen=True)
class TrunkFamily:
    """A trunk architecture (``mtbranch_trunk_families`` hook). Plain data, so discovery never imports torch.

    ``implementation`` names (``"package.module:attribute"``) the torch-side object that builds and runs the
    family's modules (a :class:`mtbranch.trunk.families.base.FamilyImpl` subclass or instance); it is
    imported on first use. ``anchor`` is a tensor name every checkpoint of the family has (after the
    base-model prefix, which is found from it). ``structure_fields`` are the config.json keys, besides
    ``hidden_size`` and ``num_attention_heads``, that change what the trunk computes (they start the
    fingerprint chain); ``None`` means BERT's fields. ``config_aliases`` maps mtbranch's names
    (``hidden_size``, ``num_attention_heads``, ``num_hidden_layers``, ``intermediate_size``) to the family's
    config.json keys where they differ (DistilBERT: ``dim``, ``n_heads``, ``n_layers``, ``hidden_dim``).
    ``normalize`` (pure Python) may add derived keys to a config dict before the structure is read
    (ModernBERT: the global-attention period from ``layer_types``). ``onnx``: whether ``export-onnx`` supports
    the family. ``positions_after_pad``: absolute position ids start at ``pad_token_id + 1`` (RoBERTa's
    convention), so fewer tokens fit than positions.
    ``example``: the config.json settings, besides the sizes, of an example config of the family (what a tiny
    test trunk or a synthetic bench trunk is built from: :func:`mtbranch.trunk.families.example_config`).
    ``layer_flops(tokens, hidden, intermediate)``: FLOPs of one layer over a row of ``tokens`` tokens (the cost
    estimates: ``inspect --cost``, the server's per-task FLOPs, the bench's achieved GFLOP/s).
    """

    name: str
    model_types: tuple[str, ...]
    implementation: str
    anchor: str = "embeddings.word_embeddings.weight"
    tensors: tuple[TensorRule, ...] = BERT_TENSOR_RULES
    structure_fields: tuple[str, ...] | None = None
    config_aliases: dict[str, str] = field(default_factory=dict)
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    onnx: bool = False
    #: position ids start after ``pad_token_id`` (RoBERTa, XLM-R: 514 position embeddings hold 512 tokens)
    positions_after_pad: bool = False
    example: dict[str, Any] = field(default_factory=dict)
    layer_flops: Callable[[int, int, int], float] = dense_layer_flops
    description: str = ""
