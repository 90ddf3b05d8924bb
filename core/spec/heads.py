"""Head specifications: the ``head`` field of a branch manifest, a union keyed on ``type``.

This file is the one home of the built-in head type names (each model's ``type`` literal below);
``BUILTIN_HEAD_TYPES`` and the ``CLASSIFICATION`` / ``REGRESSION`` / ``TOKEN_CLASSIFICATION`` names are derived
from those literals, and every other module (registry, validator, SDK tasks, CLI choices) imports them.

Built-in types are ``classification``, ``regression`` and ``token_classification``; plugins add more
through the ``mtbranch_head_types`` hook, and their manifests validate as :class:`CustomHead` here and
against the plugin's own spec model during validation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


def is_bio_tag(tag: str) -> bool:
    """``O``, ``B-X`` or ``I-X``: the one tag check for manifests (labels) and training data (CoNLL tags)."""
    return tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)


class _Head(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before the classifier (training only)")


class ClassificationHead(_Head):
    type: Literal["classification"] = "classification"
    labels: list[str] = Field(min_length=2, description="label names, index i = logit i")
    multi_label: bool = Field(False, description="independent sigmoid per label instead of softmax")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="multi-label decision threshold")

    @model_validator(mode="after")
    def _unique(self) -> ClassificationHead:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.labels)


class RegressionHead(_Head):
    type: Literal["regression"] = "regression"
    outputs: list[str] = Field(default_factory=lambda: ["score"], min_length=1,
                               description="names of the regression outputs")

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)


class TokenClassificationHead(_Head):
    type: Literal["token_classification"] = "token_classification"
    labels: list[str] = Field(min_length=2, description="BIO/IOB2 tags, e.g. O, B-PER, I-PER")
    scheme: Literal["IOB2", "BIO"] = "IOB2"
    word_split: Literal["whitespace", "tokenizer"] = Field(
        "whitespace",
        description="what a word is, as the training data split sentences: 'whitespace' (CoNLL / seq.in: "
                    "\"st.\" and \"o'hare\" are one word each) or 'tokenizer' (the tokenizer's pre-tokenizer). "
                    "Inference splits text the same way and tags each word at its first sub-token")

    @model_validator(mode="after")
    def _bio(self) -> TokenClassificationHead:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        for lab in self.labels:
            if not is_bio_tag(lab):
                raise ValueError(f"label {lab!r} is not a BIO tag (O, B-X or I-X)")
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.labels)


class CustomHead(BaseModel):
    """A head type provided by a plugin; its fields are checked by that plugin's spec model."""

    model_config = ConfigDict(extra="allow")
    type: str

    @property
    def num_outputs(self) -> int:
        return int(getattr(self, "num_outputs_", 0) or 0)


BUILTIN_HEAD_MODELS: tuple[type[BaseModel], ...] = (ClassificationHead, RegressionHead, TokenClassificationHead)
BUILTIN_HEAD_TYPES: tuple[str, ...] = tuple(m.model_fields["type"].default for m in BUILTIN_HEAD_MODELS)
CLASSIFICATION, REGRESSION, TOKEN_CLASSIFICATION = BUILTIN_HEAD_TYPES
CUSTOM_TAG = "custom"  # the union member a plugin head type validates as here
HEAD_SPEC_TAGS: tuple[str, ...] = (*BUILTIN_HEAD_TYPES, CUSTOM_TAG)


def _head_tag(value: Any) -> str:
    t = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return t if t in BUILTIN_HEAD_TYPES else CUSTOM_TAG


HeadSpec = Annotated[
    Annotated[ClassificationHead, Tag("classification")]
    | Annotated[RegressionHead, Tag("regression")]
    | Annotated[TokenClassificationHead, Tag("token_classification")]
    | Annotated[CustomHead, Tag("custom")],
    Discriminator(_head_tag),
]


def is_sequence_level(head: BaseModel) -> bool:
    return getattr(head, "type", None) != TOKEN_CLASSIFICATION
