"""Length buckets: which inputs share one padded trunk pass (``mtbranch serve``'s batches and ``predict``).

Inputs are sorted by token length and cut greedily into passes: a pass takes the next (longer) input while it
stays within ``max_rows`` rows, ``max_tokens`` padded tokens (rows x the longest) and ``max_padding`` (the
fraction of its padded positions that would be padding). Without ``max_padding`` a batch of 32 short requests of
mixed lengths is one pass that is about half padding (docs/benchmarks.md, "Length buckets"); with it the same
rows run as a few passes of near-equal lengths. Each row's result is the same either way: padding is masked.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_PADDING = 0.2  # the default padding fraction of a pass: measured in docs/benchmarks.md ("Length buckets")


def padded_tokens(lengths: Sequence[int]) -> int:
    """Positions a pass of these rows computes: rows x the longest."""
    return len(lengths) * max(lengths, default=0)


def buckets(lengths: Sequence[int], max_rows: int, max_tokens: int | None = None,
            max_padding: float | None = MAX_PADDING) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length, cut into passes; a row over ``max_tokens`` alone is a pass alone.

    ``max_padding`` (0..1, ``None``: no limit) bounds the padding fraction of a pass of two rows or more."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    passes: list[list[int]] = []
    cur: list[int] = []
    real = 0  # tokens of the rows in ``cur``
    for i in order:  # sorted: the row joining is the longest
        n, longest = len(cur) + 1, lengths[i]
        fits = n <= max_rows and (max_tokens is None or n * longest <= max_tokens)
        if cur and max_padding is not None and longest > 0:
            fits = fits and 1 - (real + longest) / (n * longest) <= max_padding
        if cur and not fits:
            passes.append(cur)
            cur, real = [], 0
        cur.append(i)
        real += lengths[i]
    if cur:
        passes.append(cur)
    return passes


__all__ = ["MAX_PADDING", "buckets", "padded_tokens"]
