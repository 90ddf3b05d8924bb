"""DeBERTa-v2 / v3: disentangled attention with relative positions, embeddings masked by the attention mask,
an optional ConvLayer after layer 1 (``conv_kernel_size``); the ContextPooler (CLS, dense, its
``pooler_hidden_act``) is the projection of *ForSequenceClassification.

The encoder-level tensors (``encoder.rel_embeddings``, ``encoder.LayerNorm``, ``encoder.conv``) are the
trunk's *context* (``DebertaV2Encoder`` without layers): hashed into ``h0`` with the embeddings, and every
branch carries a frozen copy so it runs standalone (cached features) as in the composed model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.models.deberta_v2.modeling_deberta_v2 import (
    DebertaV2Embeddings,
    DebertaV2Encoder,
    DebertaV2Layer,
)

from mtbranch.errors import MtbranchError
from mtbranch.trunk.families.base import FamilyImpl, Projection


class DebertaV2Family(FamilyImpl):
    embeddings_cls = DebertaV2Embeddings

    def build_layer(self, config: PretrainedConfig, index: int) -> nn.Module:
        return DebertaV2Layer(config)

    def build_context(self, config: PretrainedConfig) -> nn.Module:
        n = config.num_hidden_layers
        config.num_hidden_layers = 0
        try:
            return DebertaV2Encoder(config)  # rel_embeddings, LayerNorm, conv; no layers
        finally:
            config.num_hidden_layers = n

    def build_projection(self, config: PretrainedConfig) -> nn.Module:
        if config.pooler_hidden_size != config.hidden_size:
            raise MtbranchError(f"DeBERTa pooler_hidden_size {config.pooler_hidden_size} != hidden_size "
                                f"{config.hidden_size} is not supported",
                                hint="use a branch without projection (import-hf: a token head, or --layers with "
                                     "a checkpoint whose pooler matches the hidden size)")
        return Projection(config.hidden_size, config.pooler_hidden_act)

    def projection_source(self, key: str, prefix: str, sequence_level: bool) -> str | None:
        return f"pooler.{key}" if sequence_level else None  # the ContextPooler sits beside `deberta.`

    def embed(self, embeddings: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
              attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask)

    def prepare(self, config: PretrainedConfig, context: nn.Module | None, hidden: torch.Tensor,
                attention_mask: torch.Tensor | None) -> Any:
        assert context is not None
        ctx: Any = context  # DeBERTa's relative embeddings module: its methods, not nn.Module's
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        return {"input_mask": attention_mask, "mask": ctx.get_attention_mask(attention_mask),
                "relative_pos": ctx.get_rel_pos(hidden), "rel_embeddings": ctx.get_rel_embedding(),
                "conv": ctx.conv}

    def run_layer(self, layer: nn.Module, index: int, hidden: torch.Tensor, ctx: Any) -> torch.Tensor:
        out, _ = layer(hidden, ctx["mask"], relative_pos=ctx["relative_pos"], rel_embeddings=ctx["rel_embeddings"])
        if index == 0 and ctx["conv"] is not None:
            out = ctx["conv"](hidden, out, ctx["input_mask"])
        return out


FAMILY = DebertaV2Family()
