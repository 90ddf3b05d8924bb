"""XLM-RoBERTa: RoBERTa's layers and head conventions (transformers' XLMRoberta* classes are copies of
RoBERTa's), a multilingual vocabulary."""

from __future__ import annotations

from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings, XLMRobertaLayer

from mtbranch.trunk.families.roberta import RobertaFamily


class XLMRobertaFamily(RobertaFamily):
    embeddings_cls = XLMRobertaEmbeddings  # type: ignore[assignment]  # RoBERTa's, renamed: same interface
    layer_cls = XLMRobertaLayer  # type: ignore[assignment]


FAMILY = XLMRobertaFamily()
