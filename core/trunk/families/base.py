"""The torch side of a trunk family: build its modules from a config and run them, step by step.

A family implementation subclasses :class:`FamilyImpl` and overrides what differs from BERT. The trunk
module (``mtbranch.trunk.model.Trunk``) and every branch (``mtbranch.branch.model.BranchModule``) are built
and run only through these methods, so a new family touches no other code.

Per forward: :meth:`embed` (embeddings output, ``h_0``), then :meth:`prepare` once (masks, rotary or relative
positions: the *context* every layer reads), then :meth:`run_layer` per layer. A branch attached at depth d
runs its own layers with the same context. Modules that follow the last layer (:meth:`build_final`,
ModernBERT's final norm) are not part of the trunk's hidden states: each branch applies its own copy after
its layers, as the model it was cut from did.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask

from mtbranch.spec.structure import TrunkStructure
from mtbranch.trunk.families import record_for


class Projection(nn.Module):
    """dense + activation: BERT's pooler and RoBERTa's classifier.dense (tanh), DistilBERT's pre_classifier
    (relu), DeBERTa's ContextPooler (its pooler_hidden_act)."""

    def __init__(self, hidden: int, act: str = "tanh") -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.act_name = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_name == "tanh":
            return torch.tanh(self.dense(x))
        return ACT2FN[self.act_name](self.dense(x))


class FamilyImpl:
    """BERT's behaviour; other families override what differs."""

    #: the projection (pooler) also runs per token for token-level heads (ModernBERT's prediction head)
    token_projection = False
    #: transformers' embeddings / layer classes (families with the BERT calling convention set these)
    embeddings_cls: Any = None
    layer_cls: Any = None
    #: config fields set when building modules (not part of the structure)
    config_overrides: ClassVar[dict[str, Any]] = {}

    # -- config ---------------------------------------------------------------------------------------
    def hf_config(self, structure: TrunkStructure | dict[str, Any], num_layers: int) -> PretrainedConfig:
        """A transformers config for ``num_layers`` layers of this structure (attention: SDPA)."""
        fields = structure.model_dump() if isinstance(structure, TrunkStructure) else dict(structure)
        model_type = fields.pop("model_type")
        rec = record_for(model_type)
        for k in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
            fields.pop(k, None)
        if rec.structure_fields is not None:  # not BERT's field set: drop the declared fields it lacks
            fields = {k: v for k, v in fields.items() if v is not None or k == "pad_token_id"}
        for ours, theirs in rec.config_aliases.items():
            if ours in fields and ours != theirs:
                fields[theirs] = fields.pop(ours)
        fields[rec.config_aliases.get("num_hidden_layers", "num_hidden_layers")] = num_layers
        fields.pop("layer_types", None)  # derived from the layer count (ModernBERT)
        fields.update(self.config_overrides)
        cfg = AutoConfig.for_model(model_type, **fields)
        cfg._attn_implementation = "sdpa"
        return cfg

    # -- modules ----------------------------------------------------------------------------------------
    def build_embeddings(self, config: PretrainedConfig) -> nn.Module:
        return self.embeddings_cls(config)

    def build_layer(self, config: PretrainedConfig, index: int) -> nn.Module:
        """Layer ``index`` (0-based, counted in the whole trunk: some families' layers differ by position)."""
        return self.layer_cls(config, layer_idx=index)

    def build_context(self, config: PretrainedConfig) -> nn.Module | None:
        """Modules every layer reads (DeBERTa's relative embeddings, ModernBERT's rotary embedding)."""
        return None

    def build_final(self, config: PretrainedConfig) -> nn.Module | None:
        """What follows the last layer (ModernBERT's final norm); applied by each branch after its layers."""
        return None

    def build_projection(self, config: PretrainedConfig) -> nn.Module:
        """The family's pooler / classification-head transform between pooling and the head."""
        return Projection(config.hidden_size, "tanh")

    # -- running ------------------------------------------------------------------------------------------
    def embed(self, embeddings: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
              attention_mask: torch.Tensor | None) -> torch.Tensor:
        return embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def prepare(self, config: PretrainedConfig, context: nn.Module | None, hidden: torch.Tensor,
                attention_mask: torch.Tensor | None) -> Any:
        """What runs once per forward; passed to every :meth:`run_layer` (here: the attention mask)."""
        return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)

    def run_layer(self, layer: nn.Module, index: int, hidden: torch.Tensor, ctx: Any) -> torch.Tensor:
        return layer(hidden, ctx)

    # -- validation -------------------------------------------------------------------------------------------
    def branch_shapes(self, structure: TrunkStructure, attach_depth: int, num_layers: int,
                      projection: bool) -> dict[str, tuple[int, ...]]:
        """Names and shapes of a branch's family tensors (``layers.*``, ``context.*``, ``final.*``, ``pooler.*``),
        from modules built on the meta device (no memory, no init)."""
        with torch.device("meta"):
            config = self.hf_config(structure, attach_depth + max(num_layers, 1))
            parts: dict[str, nn.Module | None] = {
                f"layers.{i}": self.build_layer(config, attach_depth + i) for i in range(num_layers)}
            parts["context"] = self.build_context(config) if num_layers else None
            parts["final"] = self.build_final(config)
            parts["pooler"] = self.build_projection(config) if projection else None
        return {f"{prefix}.{k}": tuple(v.shape) for prefix, m in parts.items() if m is not None
                for k, v in m.state_dict().items()}

    # -- import-hf: the *ForSequenceClassification / *ForTokenClassification conventions ---------------
    def projection_source(self, key: str, prefix: str, sequence_level: bool) -> str | None:
        """Checkpoint tensor for the projection's ``key`` (``dense.weight``), None when it has none."""
        return f"{prefix}pooler.{key}" if sequence_level else None

    def classifier_source(self, key: str, prefix: str, sequence_level: bool) -> str:
        """Checkpoint tensor for the linear classifier's ``key`` (``weight`` / ``bias``)."""
        return f"classifier.{key}"

    def checkpoint_pooling(self, cfg: dict[str, Any]) -> str:
        """How the checkpoint pools for sequence heads (``cls`` or ``mean``)."""
        return "cls"
