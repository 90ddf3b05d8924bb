"""The frozen trunk at run time: embeddings and layers 1..D of a registered trunk family, layer by layer.

Modules are transformers' own (``BertLayer``, ``ModernBertEncoderLayer``, ``DebertaV2Layer``...), built by the
family (``mtbranch.trunk.families``) without random init and filled from the safetensors file, so running
layers 1..k reproduces transformers' forward exactly. Only the tensors of layers <= D are read; layers above
D are never loaded.
"""

from __future__ import annotations

from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers import PretrainedConfig
from transformers.initialization import no_init_weights

from mtbranch.errors import MtbranchError
from mtbranch.io.files import check_regular
from mtbranch.spec.structure import TrunkStructure
from mtbranch.trunk.families import impl_for, record_for, trunk_prefix, trunk_tensors
from mtbranch.trunk.families.base import FamilyImpl
from mtbranch.trunk.source import TrunkSource


def family_of(config: dict[str, Any] | TrunkStructure | PretrainedConfig) -> FamilyImpl:
    if isinstance(config, TrunkStructure | PretrainedConfig):
        return impl_for(str(config.model_type))
    return impl_for(str(config.get("model_type")))


def hf_config(config: dict[str, Any] | TrunkStructure, num_layers: int | None = None) -> PretrainedConfig:
    """A transformers config for the trunk (or for a branch, from the structure its manifest records)."""
    impl = family_of(config)
    if num_layers is None:
        if isinstance(config, TrunkStructure):
            raise ValueError("num_layers is required for a structure")
        from mtbranch.trunk.families import num_layers_of, structure_of

        num_layers = num_layers_of(config)
        config = structure_of(config)
    elif not isinstance(config, TrunkStructure):
        from mtbranch.trunk.families import structure_of

        config = structure_of(config)
    return impl.hf_config(config, num_layers)


class Trunk(nn.Module):
    """``embeddings``, ``layers``, the family's ``context`` (modules every layer reads) and ``final`` (what
    follows the last layer; kept for branches to copy, never applied to the trunk's hidden states)."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.config = config
        self.family = family_of(config)
        with no_init_weights():
            self.embeddings = self.family.build_embeddings(config)
            self.layers = nn.ModuleList(self.family.build_layer(config, k) for k in range(config.num_hidden_layers))
            context = self.family.build_context(config)
            final = self.family.build_final(config)
        if context is not None:
            self.context = context
        if final is not None:
            self.final = final

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.family.embed(self.embeddings, input_ids, token_type_ids, attention_mask)

    def mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        """What every layer reads, computed once per forward (the attention mask; rotary or relative positions)."""
        return self.family.prepare(self.config, getattr(self, "context", None), hidden, attention_mask)

    def run_layer(self, k: int, hidden: torch.Tensor, mask4d: Any) -> torch.Tensor:
        """Layer k, 1-based as in docs/concepts.md (layer 1 reads the embeddings output)."""
        return self.family.run_layer(self.layers[k - 1], k - 1, hidden, mask4d)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, depth: int | None = None) -> list[torch.Tensor]:
        """Hidden states ``[h_0 (embeddings), h_1, ..., h_depth]``."""
        depth = self.num_layers if depth is None else depth
        hidden = self.embed(input_ids, token_type_ids, attention_mask)
        mask4d = self.mask(hidden, attention_mask)
        states = [hidden]
        for k in range(1, depth + 1):
            hidden = self.run_layer(k, hidden, mask4d)
            states.append(hidden)
        return states


def select_trunk_tensors(names: list[str], depth: int, model_type: str = "bert") -> dict[str, str]:
    """File tensor name -> prefix-free name for the embeddings, context, final and layers < depth."""
    rec = record_for(model_type)
    prefix = trunk_prefix(rec, names)
    return {name: name[len(prefix):] for name in trunk_tensors(rec, names, depth)}


def trunk_state_keys(source: TrunkSource, depth: int) -> dict[str, str]:
    """Map of file tensor name -> :class:`Trunk` module key for embeddings, context, final and layers 1..depth."""
    check_regular(source.weights)
    with safe_open(str(source.weights), framework="pt") as f:
        names = list(f.keys())
    rec = record_for(source.structure.model_type)
    return {name: key for name, (_, _, key) in trunk_tensors(rec, names, depth).items()}


def load_trunk(source: TrunkSource, depth: int | None = None, dtype: torch.dtype | None = None,
               device: str | torch.device = "cpu") -> Trunk:
    depth = source.num_layers if depth is None else depth
    if not 0 <= depth <= source.num_layers:
        raise MtbranchError(f"depth {depth} is outside the trunk's 0..{source.num_layers} layers",
                            path=str(source.path))
    trunk = Trunk(hf_config(source.structure, num_layers=depth))
    state: dict[str, torch.Tensor] = {}
    check_regular(source.weights)
    with safe_open(str(source.weights), framework="pt", device=str(device)) as f:
        for name, key in trunk_state_keys(source, depth).items():
            state[key] = f.get_tensor(name)
    missing, unexpected = trunk.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise MtbranchError(f"trunk weights do not fit the config: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}", path=str(source.weights))
    trunk.to(device=device, dtype=dtype)
    trunk.requires_grad_(False)
    return trunk.eval()

