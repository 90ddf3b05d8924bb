"""Head type records: what the ``mtbranch_head_types`` hook returns.

A record says how to validate a head spec, which tensors it stores, how to build its torch module, how
to turn logits into a result and (``training``, see :mod:`mtbranch.heads.training`) how the SDK trains it.
Built-in heads are registered by ``mtbranch.plugins.builtin`` through the same hook as plugin heads. Torch
is only imported inside ``build``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from mtbranch.heads.training import HeadTraining
from mtbranch.spec.heads import (
    CLASSIFICATION,
    REGRESSION,
    TOKEN_CLASSIFICATION,
    ClassificationHead,
    RegressionHead,
    TokenClassificationHead,
)
from mtbranch.spec.tensor_layout import linear_head_shapes


@dataclass(frozen=True)
class HeadType:
    name: str
    spec_model: type[BaseModel]
    sequence_level: bool
    # (spec, hidden_size) -> {"head.<param>": shape}
    tensor_shapes: Callable[[Any, int], dict[str, tuple[int, ...]]]
    # (spec, hidden_size) -> torch.nn.Module mapping pooled [B, H] (or tokens [B, T, H]) to outputs
    build: Callable[[Any, int], Any]
    # (spec, outputs row as a list, context) -> JSON-able result; see mtbranch.heads.postprocess
    postprocess: Callable[..., Any]
    description: str = ""
    # the training side (a HeadTraining, or "package.module:attribute" naming one); None: not trainable
    training: HeadTraining | str | None = None


def typed_spec(head_type: HeadType, spec: Any) -> Any:
    """``spec`` as ``head_type``'s own spec model: a plugin head's spec is read from the manifest as a generic
    ``CustomHead`` (its fields as extras), so its properties (e.g. ``num_outputs``) are the plugin's only here."""
    if isinstance(spec, head_type.spec_model):
        return spec
    return head_type.spec_model.model_validate(spec.model_dump())


def _linear_shapes(spec: Any, hidden: int) -> dict[str, tuple[int, ...]]:
    return linear_head_shapes(spec.num_outputs, hidden)


def _build_linear(spec: Any, hidden: int) -> Any:
    from mtbranch.heads.modules import LinearHead

    return LinearHead(hidden, spec.num_outputs, spec.dropout)


# the built-in heads' training sides live with the SDK (scikit-learn metrics, torch losses), imported on first use
_TRAINING = "mtbranch.sdk.tasks:{}"


def builtin_head_types() -> list[HeadType]:
    from mtbranch.heads import postprocess as pp

    return [
        HeadType(CLASSIFICATION, ClassificationHead, True, _linear_shapes, _build_linear,
                 pp.classification, "single- or multi-label classification (softmax / sigmoid)",
                 _TRAINING.format("CLASSIFICATION")),
        HeadType(REGRESSION, RegressionHead, True, _linear_shapes, _build_linear,
                 pp.regression, "one or more real-valued outputs", _TRAINING.format("REGRESSION")),
        HeadType(TOKEN_CLASSIFICATION, TokenClassificationHead, False, _linear_shapes, _build_linear,
                 pp.token_classification, "BIO/IOB2 tagging with entity spans and character offsets",
                 _TRAINING.format("TOKEN_CLASSIFICATION")),
    ]
