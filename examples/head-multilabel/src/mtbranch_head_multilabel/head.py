"""The inference side of the ``multi_label`` head: its manifest spec, tensors, torch module and result."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mtbranch.spec.tensor_layout import linear_head_shapes

NAME = "multi_label"


class MultiLabelHead(BaseModel):
    """The manifest's ``head`` section: label names (output i = label i) and the decision threshold."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["multi_label"] = NAME
    labels: list[str] = Field(min_length=2, description="label names, index i = output i")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="a label is predicted when its sigmoid reaches this")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before the classifier (training only)")

    @model_validator(mode="after")
    def _unique(self) -> MultiLabelHead:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.labels)


def tensor_shapes(spec: MultiLabelHead, hidden: int) -> dict[str, tuple[int, ...]]:
    return linear_head_shapes(spec.num_outputs, hidden)


def build(spec: MultiLabelHead, hidden: int) -> Any:
    from mtbranch.heads.modules import LinearHead  # torch, imported only when a branch is built

    return LinearHead(hidden, spec.num_outputs, spec.dropout)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def predicted(spec: MultiLabelHead, row: list[float]) -> list[str]:
    """The labels whose sigmoid reaches the threshold, in the head's label order."""
    return [lab for lab, x in zip(spec.labels, row, strict=True) if sigmoid(x) >= spec.threshold]


def postprocess(spec: MultiLabelHead, row: list[float], ctx: Any = None) -> dict[str, Any]:
    """``{"labels": [...], "scores": {label: probability}}`` for one input."""
    return {"labels": predicted(spec, row),
            "scores": {lab: sigmoid(x) for lab, x in zip(spec.labels, row, strict=True)}}
