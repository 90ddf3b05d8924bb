"""ModernBERT (and mmBERT, same architecture): rotary positions, every n-th layer global attention and the
others a sliding window, pre-norm layers, a final norm after the last layer.

- once per forward: the full and the sliding-window masks and the rotary cos/sin for each layer type;
- layer k is built with its index in the whole trunk (its attention type, and layer 0 has no attention norm);
- the final norm (``final_norm``) is not part of the trunk's hidden states (they equal transformers'
  ``output_hidden_states``); every branch carries its own copy and applies it after its layers, as
  ``ModernBertFor*`` do after the last layer. A branch cut from a full model (import-hf) therefore gives
  that model's logits; a branch ending below the top ends with the same norm;
- the projection is ``ModernBertPredictionHead`` (dense, activation, norm), for sequence heads after pooling
  (``classifier_pooling``: cls or mean) and for token heads on every token.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask
from transformers.models.modernbert.modeling_modernbert import (
    ModernBertEmbeddings,
    ModernBertEncoderLayer,
    ModernBertPredictionHead,
    ModernBertRotaryEmbedding,
)

from mtbranch.trunk.families.base import FamilyImpl

TYPES = ("full_attention", "sliding_attention")


class ModernBertFamily(FamilyImpl):
    token_projection = True
    # special token ids do not change what the encoder computes (and the defaults exceed small vocabularies)
    config_overrides: ClassVar[dict[str, Any]] = dict.fromkeys(
        ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"))
    embeddings_cls = ModernBertEmbeddings
    layer_cls = ModernBertEncoderLayer

    def build_context(self, config: PretrainedConfig) -> nn.Module:
        # buffers only, computed from the config; for both layer types even when the (truncated) trunk or the
        # branch has layers of one type only, so a branch above it finds its type's cos/sin
        both = copy.copy(config)
        both.layer_types = list(TYPES)
        return ModernBertRotaryEmbedding(both)  # type: ignore[arg-type]  # a ModernBertConfig at run time

    def build_final(self, config: PretrainedConfig) -> nn.Module:
        return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def build_projection(self, config: PretrainedConfig) -> nn.Module:
        return ModernBertPredictionHead(config)  # type: ignore[arg-type]

    def embed(self, embeddings: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
              attention_mask: torch.Tensor | None) -> torch.Tensor:
        return embeddings(input_ids=input_ids)

    def prepare(self, config: PretrainedConfig, context: nn.Module | None, hidden: torch.Tensor,
                attention_mask: torch.Tensor | None) -> Any:
        kw = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask}
        masks = {"full_attention": create_bidirectional_mask(**kw),
                 "sliding_attention": create_bidirectional_sliding_window_mask(**kw)}
        position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        assert context is not None
        rotary = {t: context(hidden, position_ids, t) for t in TYPES}
        return masks, rotary

    def run_layer(self, layer: nn.Module, index: int, hidden: torch.Tensor, ctx: Any) -> torch.Tensor:
        masks, rotary = ctx
        kind = layer.attention_type
        return layer(hidden, attention_mask=masks[kind], position_embeddings=rotary[kind])

    def projection_source(self, key: str, prefix: str, sequence_level: bool) -> str | None:
        return f"head.{key}"

    def checkpoint_pooling(self, cfg: dict[str, Any]) -> str:
        return str(cfg.get("classifier_pooling") or "cls")


FAMILY = ModernBertFamily()
