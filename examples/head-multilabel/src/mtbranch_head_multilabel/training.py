"""The training side of the ``multi_label`` head (a :class:`mtbranch.heads.training.HeadTraining`).

Labels are read from a table's label column as names joined by ``#`` (``sports#politics``; MixATIS/MixSNIPS
write multi-intent utterances so) or, in JSONL, as a list of names. Each example's target is a multi-hot vector;
the loss is binary cross-entropy on the logits, the distillation loss binary cross-entropy against the teacher's
sigmoids at temperature T (scaled by T^2), and the metrics come from scikit-learn at a threshold of 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtbranch.heads.training import HeadTraining, LabelError
from mtbranch_head_multilabel.head import MultiLabelHead, predicted

SEPARATOR = "#"
METRICS = ("micro_f1", "macro_f1", "exact_match")


def read_label(value: Any) -> tuple[str, ...]:
    """``a#b`` (a table cell) or ``["a", "b"]`` (JSONL) -> the example's label names, sorted, each once."""
    if isinstance(value, str):
        names = [n.strip() for n in value.split(SEPARATOR)]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value]
    else:
        raise LabelError(f"label is a {type(value).__name__}, not label names",
                         hint=f"join an example's labels with '{SEPARATOR}' (sports{SEPARATOR}politics), or give a "
                              "JSON list of names")
    if not any(names):
        raise LabelError("no label names", hint=f"every example names at least one label, joined by '{SEPARATOR}'")
    if not all(names):
        raise LabelError(f"an empty label name in {value!r}", hint=f"remove the stray '{SEPARATOR}'")
    return tuple(sorted(set(names)))


def encode(label: tuple[str, ...], ids: dict[str, int]) -> tuple[float, ...]:
    """A multi-hot vector over ``ids`` (dev labels training never saw sit past the head's outputs)."""
    vec = [0.0] * len(ids)
    for name in label:
        vec[ids[name]] = 1.0
    return tuple(vec)


def loss(logits: Any, targets: Any) -> Any:
    from torch.nn import functional as F

    # columns past the head's outputs are dev-only labels: not trained, scored as misses
    return F.binary_cross_entropy_with_logits(logits, targets[..., : logits.shape[-1]].float())


def soft_loss(student: Any, teacher: Any, targets: Any, temperature: float) -> Any:
    import torch
    from torch.nn import functional as F

    soft = torch.sigmoid(teacher / temperature)
    return F.binary_cross_entropy_with_logits(student / temperature, soft) * temperature**2


def score(outputs: np.ndarray, gold: np.ndarray, names: list[str] | None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = (np.asarray(outputs) >= 0.0).astype(int)  # sigmoid >= 0.5
    truth = (np.asarray(gold) >= 0.5).astype(int)
    if truth.shape[1] > pred.shape[1]:  # dev-only labels: never predicted
        pred = np.pad(pred, ((0, 0), (0, truth.shape[1] - pred.shape[1])))
    return {"micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
            "exact_match": float(accuracy_score(truth, pred))}


def pseudo_label(spec: MultiLabelHead, outputs: np.ndarray) -> tuple[str, ...]:
    return tuple(predicted(spec, np.asarray(outputs, dtype=float).reshape(-1).tolist()))


TRAINING = HeadTraining(
    make_spec=lambda labels, dropout: MultiLabelHead(labels=labels, dropout=dropout),
    loss=loss, soft_loss=soft_loss, score=score, metrics=METRICS, default_metric="micro_f1",
    pseudo_label=pseudo_label, read_label=read_label, label_names_in=lambda label: label, encode=encode)
