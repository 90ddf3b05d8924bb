"""DistilBERT: its own layer naming (``transformer.layer.k``, ``q_lin``...), no token types, sinusoidal or
learned positions; *ForSequenceClassification's ``pre_classifier`` (+ ReLU) is the projection."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.models.distilbert.modeling_distilbert import Embeddings, TransformerBlock

from mtbranch.trunk.families.base import FamilyImpl, Projection


class DistilBertFamily(FamilyImpl):
    embeddings_cls = Embeddings

    def build_layer(self, config: PretrainedConfig, index: int) -> nn.Module:
        return TransformerBlock(config)  # type: ignore[arg-type]  # a DistilBertConfig at run time

    def build_projection(self, config: PretrainedConfig) -> nn.Module:
        return Projection(config.dim, "relu")

    def embed(self, embeddings: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
              attention_mask: torch.Tensor | None) -> torch.Tensor:
        return embeddings(input_ids)  # no token types

    def projection_source(self, key: str, prefix: str, sequence_level: bool) -> str | None:
        return f"pre_classifier.{key.removeprefix('dense.')}" if sequence_level else None


FAMILY = DistilBertFamily()
