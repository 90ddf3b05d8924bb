"""The frozen trunk at run time: embeddings and layers 1..D of a BERT-family model, layer by layer.

Modules are transformers' own (``BertEmbeddings``, ``BertLayer``...), built without random init and filled
from the safetensors file, so running layers 1..k reproduces transformers' forward exactly. Only the
tensors of layers <= D are read; layers above D are never loaded.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig
from transformers.initialization import no_init_weights
from transformers.masking_utils import create_bidirectional_mask

from mtbranch.errors import MtbranchError
from mtbranch.spec.structure import TrunkStructure
from mtbranch.trunk.fingerprint import is_embedding_tensor, trunk_prefix
from mtbranch.trunk.source import TrunkSource


def hf_config(config: dict[str, Any] | TrunkStructure, num_layers: int | None = None) -> PretrainedConfig:
    """A transformers config for the trunk (or for a branch, from the structure its manifest records)."""
    fields = config.model_dump() if isinstance(config, TrunkStructure) else dict(config)
    model_type = fields.pop("model_type")
    for k in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        fields.pop(k, None)
    if num_layers is not None:
        fields["num_hidden_layers"] = num_layers
    cfg = AutoConfig.for_model(model_type, **fields)
    cfg._attn_implementation = "sdpa"
    return cfg


def layer_class(config: PretrainedConfig) -> type[nn.Module]:
    """transformers' own layer class for this family (BertLayer, RobertaLayer, ...)."""
    model_cls = AutoModel._model_mapping[type(config)]
    module = sys.modules[model_cls.__module__]
    return getattr(module, model_cls.__name__.replace("Model", "Layer"))


def build_base_model(config: PretrainedConfig) -> nn.Module:
    model_cls = AutoModel._model_mapping[type(config)]
    with no_init_weights():
        return model_cls(config, add_pooling_layer=False)


def attention_mask_4d(config: PretrainedConfig, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
    """The mask transformers' encoder layers expect (None when nothing is padded, with SDPA)."""
    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)


class Trunk(nn.Module):
    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        base = build_base_model(config)
        self.config = base.config
        self.embeddings = base.embeddings
        self.layers = base.encoder.layer

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        return attention_mask_4d(self.config, hidden, attention_mask)

    def run_layer(self, k: int, hidden: torch.Tensor, mask4d: Any) -> torch.Tensor:
        """Layer k, 1-based as in DESIGN.md (layer 1 reads the embeddings output)."""
        return self.layers[k - 1](hidden, mask4d)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, depth: int | None = None) -> list[torch.Tensor]:
        """Hidden states ``[h_0 (embeddings), h_1, ..., h_depth]``."""
        depth = self.num_layers if depth is None else depth
        hidden = self.embed(input_ids, token_type_ids)
        mask4d = self.mask(hidden, attention_mask)
        states = [hidden]
        for k in range(1, depth + 1):
            hidden = self.run_layer(k, hidden, mask4d)
            states.append(hidden)
        return states


def select_trunk_tensors(names: list[str], depth: int) -> dict[str, str]:
    """File tensor name -> prefix-free name (``embeddings.*``, ``encoder.layer.{k}.*``) for layers < depth."""
    prefix = trunk_prefix(names)
    wanted: dict[str, str] = {}
    for name in names:
        rel = name[len(prefix):] if name.startswith(prefix) else ""
        is_kept_layer = rel.startswith("encoder.layer.") and int(rel.split(".")[2]) < depth
        if is_embedding_tensor(rel) or is_kept_layer:
            wanted[name] = rel
    return wanted


def trunk_state_keys(source: TrunkSource, depth: int) -> dict[str, str]:
    """Map of file tensor name -> :class:`Trunk` module key for embeddings and layers 1..depth."""
    with safe_open(str(source.weights), framework="pt") as f:
        names = list(f.keys())
    return {name: rel.replace("encoder.layer.", "layers.", 1)
            for name, rel in select_trunk_tensors(names, depth).items()}


def load_trunk(source: TrunkSource, depth: int | None = None, dtype: torch.dtype | None = None,
               device: str | torch.device = "cpu") -> Trunk:
    depth = source.num_layers if depth is None else depth
    if not 0 <= depth <= source.num_layers:
        raise MtbranchError(f"depth {depth} is outside the trunk's 0..{source.num_layers} layers",
                            path=str(source.path))
    trunk = Trunk(hf_config(source.config, num_layers=depth))
    state: dict[str, torch.Tensor] = {}
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

