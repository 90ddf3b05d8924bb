"""Turn head outputs into results, as users of transformers' pipelines expect. Pure Python, no torch.

Each function takes the head spec, the outputs for one input (a list of floats, or one list per token)
and, for token heads, a :class:`TokenContext`: the text, its words and the word of every token. Token
heads are decoded per word, the unit a branch is trained on, by the one decoder here: ``predict``,
``serve``, Ray, the ONNX path and the SDK's evaluation all call it.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Any


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


@dataclass
class TokenContext:
    """One input as the decoder sees it.

    ``words``: the character span of every word in ``text``, by the branch's word rule (see
    :func:`word_spans`); ``token_words``: for each token, the index of the word it belongs to (``None`` for
    special tokens and the second text of a pair); ``aggregation``: how a word's sub-tokens give its tag;
    ``with_tags``: the caller passed pre-split words and gets one tag per word back.
    """

    text: str
    words: list[tuple[int, int]]
    token_words: list[int | None]
    aggregation: str = "first"
    with_tags: bool = False


AGGREGATIONS = ("first", "max", "average")  # as transformers' token-classification pipeline names them
WORD_SPLITS = ("whitespace", "tokenizer")
_WHITESPACE = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Whitespace-separated words, as CoNLL files and seq.in lines split a sentence: "st." and "o'hare" are
    one word each (a BERT pre-tokenizer would split them at punctuation, which a branch trained on such data
    never saw as word boundaries)."""
    return [m.span() for m in _WHITESPACE.finditer(text)]


def tokens_to_words(offsets: list[tuple[int, int]], in_text: list[bool],
                    words: list[tuple[int, int]]) -> list[int | None]:
    """The word each token lies in, from the tokenizer's character offsets. A token that starts on whitespace
    (a SentencePiece "▁" piece) belongs to the word it ends in, or the next one."""
    out: list[int | None] = []
    starts = [s for s, _ in words]
    for (s, e), inside in zip(offsets, in_text, strict=True):
        if not inside or e <= s:
            out.append(None)  # special tokens ([CLS], [SEP], padding) and the pair's second text
            continue
        k = bisect.bisect_right(starts, s) - 1
        if k >= 0 and s < words[k][1]:
            out.append(k)
        elif k + 1 < len(words) and words[k + 1][0] <= e:
            out.append(k + 1)
        else:
            out.append(None)
    return out


def word_tags(spec: Any, rows: list[list[float]], token_words: list[int | None], n_words: int,
              aggregation: str = "first") -> list[tuple[str, float] | None]:
    """(tag, score) for each word, or ``None`` for a word none of whose tokens was kept (truncation).

    ``first`` (the default, and how the SDK trains a branch: only a word's first sub-token carries a label)
    takes the first sub-token's tag; ``max`` the tag of the sub-token with the highest score; ``average`` the
    best tag of the sub-tokens' averaged probabilities.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")
    members: list[list[int]] = [[] for _ in range(n_words)]
    for i, w in enumerate(token_words):
        if w is not None and i < len(rows):
            members[w].append(i)
    out: list[tuple[str, float] | None] = []
    for idx in members:
        if not idx:
            out.append(None)
            continue
        if aggregation == "first":
            probs = _softmax(rows[idx[0]])
        elif aggregation == "max":
            probs = max((_softmax(rows[i]) for i in idx), key=max)
        else:
            each = [_softmax(rows[i]) for i in idx]
            probs = [sum(col) / len(each) for col in zip(*each, strict=True)]
        best = max(range(len(probs)), key=probs.__getitem__)
        out.append((spec.labels[best], probs[best]))
    return out


def entities(tags: list[tuple[str, float] | None], words: list[tuple[int, int]], text: str) -> list[dict[str, Any]]:
    """Group word tags into entity spans (conlleval's reading of BIO: an ``I-X`` after ``O``, after a word
    with no tag, or after another type starts a new ``X`` entity). A span starts and ends at word boundaries."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    scores: list[float] = []

    def close() -> None:
        if current is not None:
            current["score"] = sum(scores) / len(scores)
            current["text"] = text[current["start"]:current["end"]]
            out.append(current)

    for tagged, (start, end) in zip(tags, words, strict=True):
        if tagged is None or tagged[0] == "O":
            close()
            current, scores = None, []
            continue
        tag, score = tagged
        kind = tag[2:]
        if tag.startswith("B-") or current is None or current["label"] != kind:
            close()
            current, scores = {"label": kind, "start": start, "end": end}, [score]
        else:
            current["end"] = end
            scores.append(score)
    close()
    return out


def token_classification(spec: Any, rows: list[list[float]], ctx: TokenContext) -> dict[str, Any]:
    """Word-level decoding (see :func:`word_tags`), then grouping into entities; with pre-split input also
    one tag per word (``O`` for a word past max_length)."""
    tags = word_tags(spec, rows, ctx.token_words, len(ctx.words), ctx.aggregation)
    res: dict[str, Any] = {"entities": entities(tags, ctx.words, ctx.text)}
    if ctx.with_tags:
        res["tags"] = ["O" if t is None else t[0] for t in tags]
    return res
