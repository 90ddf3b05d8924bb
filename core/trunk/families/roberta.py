"""RoBERTa: BERT's calling convention; *ForSequenceClassification's ``classifier.dense`` (+ tanh) is the
projection and ``classifier.out_proj`` the head. Position ids come from the padding (inside the embeddings)."""

from __future__ import annotations

from transformers.models.roberta.modeling_roberta import RobertaEmbeddings, RobertaLayer

from mtbranch.trunk.families.base import FamilyImpl


class RobertaFamily(FamilyImpl):
    embeddings_cls = RobertaEmbeddings
    layer_cls = RobertaLayer

    def projection_source(self, key: str, prefix: str, sequence_level: bool) -> str | None:
        return f"classifier.{key}" if sequence_level else None

    def classifier_source(self, key: str, prefix: str, sequence_level: bool) -> str:
        return f"classifier.out_proj.{key}" if sequence_level else f"classifier.{key}"


FAMILY = RobertaFamily()
