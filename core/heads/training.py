"""The training side of a head type: what ``mtbranch train``, ``sweep``, ``distill``, ``build`` and ``migrate``
look up by the head type's name (``HeadType.training``). Plain data and callables; no torch here.

A head type without a training side can be validated, composed, served and exported, but not trained. The
record may be given directly or named by a ``"package.module:attribute"`` string imported on first use (the
built-in heads name theirs in ``mtbranch.sdk.tasks``, as the built-in trunk families name their torch side).

Labels travel in three forms: the **label** of an example as the data reader returns it (a class name, a
float, a tuple of names, ...), the **label names** of the head (its outputs, in order, or ``None`` for a head
without names such as regression), and the **target** the loss and the metrics receive (an int class id, a
float, a tuple of floats per example; token data: one id per token, ``-100`` where no tag is scored).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mtbranch.errors import MtbranchError

DataKind = Literal["table", "tokens"]
DATA_KINDS: tuple[str, ...] = ("table", "tokens")


class LabelError(ValueError):
    """A label reader's refusal of one cell; the SDK adds the file and line (``hint``: how to fix it)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class HeadTraining:
    """How the SDK trains branches of one head type.

    ``data``: ``"table"`` (a TSV/CSV/JSONL table or a seq.in + label folder: a text, an optional pair text and
    a label column) or ``"tokens"`` (CoNLL or seq.in + seq.out: words and one BIO tag each).
    ``read_label(cell)``: a table's label cell (a string, or a JSON value) -> the example's label; raises
    ``ValueError`` (or :class:`LabelError` with a hint) for a bad one. Unused for token data (tags are checked
    as BIO tags).
    ``label_names_in(label)``: the label names one example's label holds (a class: ``[label]``; tags: the
    tags); ``None`` for a head without label names (regression), which then gets ``None`` everywhere below.
    ``order_labels(names)``: the head's label order when the user gives none (default: sorted).
    ``make_spec(label_names, dropout)``: the head spec (a pydantic model) of a new branch.
    ``encode(label, label_ids)``: an example's label -> its training target (an int, a float, or a tuple of
    floats); ``label_ids`` maps each label name to its output index (dev labels training never saw get ids past
    the head's outputs: score them as misses). Unused for token data.
    ``loss(logits, targets)`` and ``soft_loss(student_logits, teacher_logits, targets, temperature)``: torch
    scalars (import torch inside); the soft loss is distillation's (``distill``, ``build``, ``migrate``).
    ``score(outputs, targets, label_names)``: numpy arrays -> ``{metric: value}`` holding every name in
    ``metrics``; ``default_metric`` picks the best epoch unless ``--metric`` names another;
    ``lower_is_better`` lists the metrics where less is better (e.g. mse).
    ``pseudo_label(spec, outputs)``: one example's outputs -> the label they stand for (``migrate`` scores a
    student's agreement with its teacher as the metric against these labels; token data: one tag per row).
    """

    make_spec: Callable[[list[str] | None, float], Any]
    loss: Callable[[Any, Any], Any]
    soft_loss: Callable[[Any, Any, Any, float], Any]
    score: Callable[[Any, Any, list[str] | None], dict[str, float]]
    metrics: tuple[str, ...]
    default_metric: str
    pseudo_label: Callable[[Any, Any], Any]
    data: DataKind = "table"
    read_label: Callable[[Any], Any] | None = None
    label_names_in: Callable[[Any], Iterable[str]] | None = None
    order_labels: Callable[[set[str]], list[str]] = sorted
    encode: Callable[[Any, dict[str, int]], Any] | None = None
    lower_is_better: tuple[str, ...] = ()

    def better(self, metric: str, new: float, old: float) -> bool:
        return new < old if metric in self.lower_is_better else new > old


def training_problem(training: Any) -> str | None:
    """Why a head type's ``training`` field is unusable (a plugin's record is reported, P003), or None."""
    if training is None or (isinstance(training, str) and ":" in training):
        return None
    if not isinstance(training, HeadTraining):
        return f"training is {type(training).__name__}, not a HeadTraining or 'package.module:attribute'"
    return record_problem(training)


def record_problem(t: HeadTraining) -> str | None:
    for name in ("make_spec", "loss", "soft_loss", "score", "pseudo_label", "order_labels"):
        if not callable(getattr(t, name)):
            return f"training.{name} is not callable"
    if t.data not in DATA_KINDS:
        return f"training.data is {t.data!r}, not one of {', '.join(DATA_KINDS)}"
    if t.data == "table" and (not callable(t.read_label) or not callable(t.encode)):
        return "training.read_label and training.encode must be callable for table data"
    if t.data == "tokens" and not callable(t.label_names_in):
        return "training.label_names_in must be callable for token data (its tags are the head's labels)"
    if not t.metrics or not all(isinstance(m, str) and m for m in t.metrics):
        return f"training.metrics is {t.metrics!r}, not a non-empty tuple of metric names"
    if t.default_metric not in t.metrics:
        return f"training.default_metric {t.default_metric!r} is not one of its metrics {list(t.metrics)}"
    return None


_resolved: dict[str, HeadTraining] = {}


def resolve_training(head_name: str, training: HeadTraining | str) -> HeadTraining:
    """The record itself, or the one a ``"package.module:attribute"`` string names (imported once)."""
    if isinstance(training, HeadTraining):
        return training
    if training in _resolved:
        return _resolved[training]
    module, _, attr = training.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise MtbranchError(f"head type {head_name!r}: its training side {training!r} cannot be imported ({exc})",
                            hint="reinstall the plugin that registers this head type") from None
    if not isinstance(obj, HeadTraining) or (why := record_problem(obj)):
        what = type(obj).__name__ if not isinstance(obj, HeadTraining) else why
        raise MtbranchError(f"head type {head_name!r}: {training!r} is not a usable HeadTraining ({what})",
                            hint="the plugin's HeadType.training must name a HeadTraining record")
    _resolved[training] = obj
    return obj
