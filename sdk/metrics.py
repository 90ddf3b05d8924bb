"""The built-in head types' metrics from scikit-learn, scipy and seqeval, computed from raw head outputs.

Which metrics a task has, and its default, are on its head type's training side (:mod:`mtbranch.sdk.tasks`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

IGNORE_INDEX = -100  # the one home: label of positions no loss or metric counts (torch's cross_entropy default)
CLASSIFICATION_METRICS = ("accuracy", "f1", "macro_f1", "matthews")
REGRESSION_METRICS = ("pearson", "spearman", "mse")
TOKEN_METRICS = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    pred = logits.argmax(-1)
    binary = logits.shape[-1] == 2
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        # binary: F1 of class 1; labels past the head's range (dev-only labels) count as misses, not errors
        "f1": float(f1_score(labels, pred, labels=[1], average="micro", zero_division=0) if binary
                    else f1_score(labels, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
        "matthews": float(matthews_corrcoef(labels, pred)),
    }


def regression_metrics(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    pred = outputs.reshape(len(outputs), -1)[:, 0]
    gold = labels.reshape(len(labels), -1)[:, 0]
    constant = bool(np.all(pred == pred[0])) or bool(np.all(gold == gold[0]))
    # a constant prediction has no correlation; 0.0 keeps "best epoch" comparisons well-defined
    pearson = 0.0 if constant else float(pearsonr(pred, gold)[0])
    spearman = 0.0 if constant else float(spearmanr(pred, gold)[0])
    return {"pearson": pearson, "spearman": spearman, "mse": float(np.mean((pred - gold) ** 2))}


def word_tags(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """Per sentence: (gold, predicted) tags of the words the labels mark (a word's first sub-token).

    Predicted tags come from the decoder ``predict`` and ``serve`` use (:func:`mtbranch.heads.postprocess.word_tags`),
    so what the trainer scores is what users receive."""
    from mtbranch.heads.postprocess import word_tags as decode

    spec = _Labels(names)
    gold: list[list[str]] = []
    pred: list[list[str]] = []
    for lab_row, out_row in zip(labels, logits, strict=True):
        starts = np.flatnonzero(lab_row != IGNORE_INDEX)
        token_words: list[int | None] = [None] * len(lab_row)
        for w, i in enumerate(starts):
            token_words[int(i)] = w  # "first": a word's other sub-tokens carry no label and decide nothing
        tags = decode(spec, out_row[: len(lab_row)].tolist(), token_words, len(starts))
        gold.append([names[int(lab_row[i])] for i in starts])
        pred.append(["O" if t is None else t[0] for t in tags])
    return gold, pred


class _Labels:
    def __init__(self, labels: list[str]) -> None:
        self.labels = labels


def token_metrics(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold, pred = word_tags(logits, labels, names)
    flat_g = [t for s in gold for t in s]
    flat_p = [t for s in pred for t in s]
    kw: dict[str, Any] = {"zero_division": 0}  # conlleval semantics (an I- after O starts an entity)
    return {
        "entity_f1": float(f1_score(gold, pred, **kw)),
        "entity_precision": float(precision_score(gold, pred, **kw)),
        "entity_recall": float(recall_score(gold, pred, **kw)),
        "token_accuracy": float(np.mean([a == b for a, b in zip(flat_g, flat_p, strict=True)]) if flat_g else 0.0),
    }


def compute_metrics(task: str, outputs: np.ndarray, labels: np.ndarray,
                    label_names: list[str] | None = None) -> dict[str, float]:
    """The metrics of ``task`` (a trainable head type's name), by its training side's ``score``."""
    from mtbranch.sdk.tasks import get_task

    return get_task(task).training.score(outputs, labels, label_names)
