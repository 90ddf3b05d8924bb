"""SDK tasks: a task is a head type with a training side (:class:`mtbranch.heads.training.HeadTraining`).

``train``, ``sweep``, ``distill``, ``build`` and ``migrate`` look a task up here by its head type's name and
call its record: no SDK module dispatches on head type names, so a plugin's head type with a training side
trains as the built-in ones do. The built-in heads' training sides are defined here (their records name them
as ``mtbranch.sdk.tasks:CLASSIFICATION`` etc., imported on first use). No torch at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtbranch.errors import MtbranchError
from mtbranch.heads.registry import HeadType
from mtbranch.heads.training import HeadTraining, resolve_training
from mtbranch.sdk import losses
from mtbranch.sdk import metrics as M
from mtbranch.sdk.data import read_class_label, read_score
from mtbranch.spec.heads import ClassificationHead, RegressionHead, TokenClassificationHead


@dataclass(frozen=True)
class Task:
    """A trainable head type: its record and its resolved training side."""

    head_type: HeadType
    training: HeadTraining

    @property
    def name(self) -> str:
        return self.head_type.name


def task_name(name: str) -> str:
    """The head type name a CLI or recipe spelling means (``token-classification`` -> ``token_classification``)."""
    return name.replace("-", "_")


def trainable_names(pm: Any = None) -> list[str]:
    """Every installed head type with a training side (the built-ins first), without importing any."""
    from mtbranch.plugins.manager import get_plugin_manager

    types = get_plugin_manager(pm).head_types()
    return [n for n, ht in types.items() if ht.training is not None]


def get_task(name: str, pm: Any = None) -> Task:
    """The task named ``name`` (a head type name; ``-`` for ``_`` accepted); an error lists the trainable ones."""
    from mtbranch.plugins.manager import get_plugin_manager

    manager = get_plugin_manager(pm)
    key = task_name(name)
    try:
        ht = manager.head_type(key)  # a built-in one without importing any plugin
    except MtbranchError:
        if manager.ambiguous("head type", key):
            raise  # registered twice (P008): that error says by whom
        ht = None
    if ht is None or ht.training is None:
        names = ", ".join(n.replace("_", "-") for n in trainable_names(manager))
        why = "has no training side (its plugin registers none)" if ht is not None else "is not a head type"
        raise MtbranchError(f"task {name!r} {why}", hint=f"trainable head types: {names}; a plugin adds one by "
                                                         "registering a HeadType with training= (docs/plugins.md)")
    return Task(ht, resolve_training(ht.name, ht.training))


def lower_is_better(task: str, metric: str) -> bool:
    return metric in get_task(task).training.lower_is_better


# -- the built-in training sides ----------------------------------------------------------------------------
def _names(labels: Any) -> list[str]:
    return [str(labels)]


def _class_id(label: Any, ids: dict[str, int]) -> int:
    return ids[str(label)]


def _score(label: Any, ids: dict[str, int]) -> float:
    return float(label) if label is not None else 0.0


def _argmax_label(spec: Any, out: np.ndarray) -> str:
    return str(spec.labels[int(np.asarray(out).argmax())])


def _value(spec: Any, out: np.ndarray) -> float:
    return float(np.asarray(out).reshape(-1)[0])


def _tags(spec: Any, out: np.ndarray) -> list[str]:
    return [spec.labels[int(k)] for k in np.asarray(out).argmax(-1)]


def bio_order(seen: set[str]) -> list[str]:
    """``O`` first, then the tags by entity type, ``B-`` before ``I-``."""
    return ["O", *sorted(seen - {"O"}, key=lambda t: (t[2:], t[:2]))]


CLASSIFICATION = HeadTraining(
    make_spec=lambda labels, dropout: ClassificationHead(labels=labels, dropout=dropout),
    loss=losses.cross_entropy, soft_loss=losses.soft_kl,
    score=lambda out, gold, names: M.classification_metrics(out, gold),
    metrics=M.CLASSIFICATION_METRICS, default_metric="accuracy",
    pseudo_label=_argmax_label, read_label=read_class_label, label_names_in=_names, encode=_class_id)

REGRESSION = HeadTraining(
    make_spec=lambda labels, dropout: RegressionHead(dropout=dropout),
    loss=losses.mse, soft_loss=losses.soft_mse,
    score=lambda out, gold, names: M.regression_metrics(out, gold),
    metrics=M.REGRESSION_METRICS, default_metric="pearson", lower_is_better=("mse",),
    pseudo_label=_value, read_label=read_score, encode=_score)

TOKEN_CLASSIFICATION = HeadTraining(
    make_spec=lambda labels, dropout: TokenClassificationHead(labels=labels, dropout=dropout),
    loss=losses.cross_entropy, soft_loss=losses.soft_kl_tokens,
    score=lambda out, gold, names: M.token_metrics(out, gold, names or []),
    metrics=M.TOKEN_METRICS, default_metric="entity_f1",
    pseudo_label=_tags, data="tokens", label_names_in=list, order_labels=bio_order)
