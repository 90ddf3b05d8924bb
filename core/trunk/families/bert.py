"""BERT (incl. MiniLM): transformers' ``BertEmbeddings`` / ``BertLayer``; the pooler (dense + tanh) is the
projection."""

from __future__ import annotations

from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer

from mtbranch.trunk.families.base import FamilyImpl


class BertFamily(FamilyImpl):
    embeddings_cls = BertEmbeddings
    layer_cls = BertLayer


FAMILY = BertFamily()
