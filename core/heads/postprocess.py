"""Turn head outputs into results, as users of transformers' pipelines expect. Pure Python, no torch.

Each function takes the head spec, the outputs for one input (a list of floats, or one list per token)
and a context with the text and the tokenizer's offsets/word ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class TokenContext:
    text: str
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [x / s for x in e]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def classification(spec: Any, row: list[float], ctx: Any = None) -> dict[str, Any]:
    if spec.multi_label:
        probs = [_sigmoid(x) for x in row]
        scores = dict(zip(spec.labels, probs, strict=True))
        return {"labels": [lab for lab, p in scores.items() if p >= spec.threshold], "scores": scores}
    probs = _softmax(row)
    best = max(range(len(probs)), key=probs.__getitem__)
    return {"label": spec.labels[best], "score": probs[best], "scores": dict(zip(spec.labels, probs, strict=True))}


def regression(spec: Any, row: list[float], ctx: Any = None) -> dict[str, Any]:
    values = dict(zip(spec.outputs, row, strict=True))
    out: dict[str, Any] = {"values": values}
    if len(values) == 1:
        out["value"] = row[0]
    return out


def token_classification(spec: Any, rows: list[list[float]], ctx: TokenContext) -> dict[str, Any]:
    """Word-level BIO decoding (first sub-token decides the word's tag), then grouping into entities."""
    words: list[tuple[str, float, int, int]] = []  # (tag, score, start, end)
    seen: dict[int, int] = {}
    for i, wid in enumerate(ctx.word_ids):
        if wid is None or i >= len(rows):
            continue
        start, end = ctx.offsets[i]
        if wid in seen:  # later sub-token of the same word: extend the span
            tag, score, s0, _ = words[seen[wid]]
            words[seen[wid]] = (tag, score, s0, end)
            continue
        probs = _softmax(rows[i])
        best = max(range(len(probs)), key=probs.__getitem__)
        seen[wid] = len(words)
        words.append((spec.labels[best], probs[best], start, end))

    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    scores: list[float] = []

    def close() -> None:
        if current is not None:
            current["score"] = sum(scores) / len(scores)
            current["text"] = ctx.text[current["start"]:current["end"]]
            entities.append(current)

    for tag, score, start, end in words:
        kind = tag[2:] if tag != "O" else None
        if tag == "O":
            close()
            current, scores = None, []
        elif tag.startswith("B-") or current is None or current["label"] != kind:
            close()
            current, scores = {"label": kind, "start": start, "end": end}, [score]
        else:
            current["end"] = end
            scores.append(score)
    close()
    return {"entities": entities}
