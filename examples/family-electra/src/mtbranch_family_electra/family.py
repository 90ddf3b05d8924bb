"""The torch side of the ELECTRA family: transformers' own ``ElectraEmbeddings`` / ``ElectraLayer``."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.models.electra.modeling_electra import ElectraEmbeddings, ElectraLayer

from mtbranch.trunk.families.base import FamilyImpl, Projection


class ProjectedEmbeddings(ElectraEmbeddings):
    """ElectraEmbeddings, then ``embeddings_project`` when ``embedding_size`` differs from ``hidden_size``
    (as ``ElectraModel.forward`` does); held as ``embeddings.project``."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        if config.embedding_size != config.hidden_size:
            self.project = nn.Linear(config.embedding_size, config.hidden_size)

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        out = super().forward(*args, **kwargs)
        return self.project(out) if hasattr(self, "project") else out


class ElectraFamily(FamilyImpl):
    embeddings_cls = ProjectedEmbeddings
    layer_cls = ElectraLayer

    def build_projection(self, config: PretrainedConfig) -> nn.Module:
        return Projection(config.hidden_size, "gelu")  # ElectraClassificationHead: dense + GELU

    def projection_source(self, key: str, prefix: str, sequence_level: bool) -> str | None:
        return f"classifier.{key}" if sequence_level else None

    def classifier_source(self, key: str, prefix: str, sequence_level: bool) -> str:
        return f"classifier.out_proj.{key}" if sequence_level else f"classifier.{key}"


FAMILY = ElectraFamily()
