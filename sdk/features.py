"""Tokenized inputs and cached trunk features.

The frozen trunk is run once per dataset: :func:`compute_features` collects the hidden states at every
requested depth in a single pass, so a sweep over L and every epoch reuse them. Features are stored per
example without padding (one ``[total_tokens, hidden]`` tensor plus offsets), in memory or on disk as
safetensors, optionally quantized per token vector as in papers/003: int8 (absmax scale) or 1 bit
(sign times the vector's mean absolute value).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from mtbranch.errors import MtbranchError
from mtbranch.io.atomic import write_bytes_atomic
from mtbranch.sdk.data import TextExample, TokenExample
from mtbranch.sdk.metrics import IGNORE_INDEX
from mtbranch.trunk.model import load_trunk
from mtbranch.trunk.source import TrunkSource

Quantize = Literal["none", "float16", "int8", "1bit", "1bit-centered"]
QUANTIZE_CHOICES: tuple[str, ...] = ("none", "float16", "int8", "1bit", "1bit-centered")
CACHE_FORMAT = "mtbranch-features-1"


# -- tokenization ---------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """Token ids per example (unpadded) and the training targets aligned with them."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[Any]  # int class, float score, or per-token list with IGNORE_INDEX

    def __len__(self) -> int:
        return len(self.input_ids)

    def digest(self) -> str:
        """Identifies the inputs (not the labels): the cache key part that depends on the data."""
        h = hashlib.sha256()
        for ids, types in zip(self.input_ids, self.token_type_ids, strict=True):
            h.update(np.asarray(ids, dtype=np.int32).tobytes())
            h.update(np.asarray(types, dtype=np.int8).tobytes())
            h.update(b"|")
        return h.hexdigest()


def encode_texts(tokenizer: Any, examples: Sequence[TextExample], max_length: int,
                 label2id: dict[str, int] | None, *, encode: Callable[[Any], Any] | None = None) -> Encoded:
    """Single texts or pairs; each label becomes its target by ``encode`` (a task's, see
    :mod:`mtbranch.sdk.tasks`), else class labels are mapped through ``label2id`` and scores kept as floats."""
    texts = [e.text for e in examples]
    pairs = [e.pair or "" for e in examples] if any(e.pair is not None for e in examples) else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    labels: list[Any] = []
    for e in examples:
        if encode is not None:
            labels.append(encode(e.label))
        elif label2id is None:
            labels.append(float(e.label) if e.label is not None else 0.0)
        else:
            labels.append(label2id[str(e.label)])
    return Encoded(list(enc["input_ids"]), list(types), labels)


def encode_tokens(tokenizer: Any, examples: Sequence[TokenExample], max_length: int,
                  label2id: dict[str, int]) -> Encoded:
    """Pre-split words; only the first sub-token of each word carries its tag (others: -100)."""
    enc = tokenizer([e.tokens for e in examples], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    labels: list[list[int]] = []
    for i, e in enumerate(examples):
        row: list[int] = []
        prev: int | None = None
        for wid in enc.word_ids(i):
            row.append(IGNORE_INDEX if wid is None or wid == prev else label2id[e.tags[wid]])
            prev = wid
        labels.append(row)
    types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return Encoded(list(enc["input_ids"]), list(types), labels)


# -- quantization -----------------------------------------------------------------------------------------
def quantize(x: torch.Tensor, kind: Quantize) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``x`` is ``[tokens, hidden]``; returns stored values and a per-token scale (or None)."""
    x = x.float()
    if kind == "none":
        return x.contiguous(), None
    if kind == "float16":
        return x.half().contiguous(), None
    if kind == "int8":
        scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 127.0
        return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale
    if kind == "1bit":
        scale = x.abs().mean(dim=-1, keepdim=True)
        bits = np.packbits((x >= 0).numpy(), axis=-1)  # 8 signs per byte: 32x smaller than float32
        return torch.from_numpy(bits), scale
    raise ValueError(f"unknown quantization {kind!r}")


def dequantize(values: torch.Tensor, scale: torch.Tensor | None, kind: str, hidden: int) -> torch.Tensor:
    if kind == "none":
        return values
    if kind == "float16":
        return values.float()
    assert scale is not None
    if kind == "int8":
        return values.float() * scale
    if kind == "1bit":
        signs = np.unpackbits(values.numpy(), axis=-1, count=hidden).astype(np.float32) * 2.0 - 1.0
        return torch.from_numpy(signs) * scale
    raise ValueError(f"unknown quantization {kind!r}")


# -- feature store --------------------------------------------------------------------------------------
class FeatureStore:
    """Hidden states at one depth for every example, unpadded: rows ``offsets[i]:offsets[i+1]``."""

    def __init__(self, values: torch.Tensor, scale: torch.Tensor | None, offsets: torch.Tensor,
                 kind: str, hidden: int, depth: int, center: torch.Tensor | None = None) -> None:
        self.values, self.scale, self.offsets = values, scale, offsets
        self.kind, self.hidden, self.depth = kind, hidden, depth
        self.center = center  # "1bit-centered": per-dimension mean, subtracted before taking signs

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def lengths(self) -> list[int]:
        return (self.offsets[1:] - self.offsets[:-1]).tolist()

    def __getitem__(self, i: int) -> torch.Tensor:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        scale = None if self.scale is None else self.scale[a:b]
        if self.center is not None:
            return dequantize(self.values[a:b], scale, "1bit", self.hidden) + self.center
        return dequantize(self.values[a:b], scale, self.kind, self.hidden)

    @classmethod
    def from_examples(cls, per_example: list[torch.Tensor], kind: Quantize, depth: int) -> FeatureStore:
        hidden = per_example[0].shape[-1]
        flat = torch.cat(per_example, dim=0)
        center = None
        if kind == "1bit-centered":
            # BERT features have a few large-offset dimensions; signs around each dimension's mean keep them
            center = flat.mean(dim=0)
            values, scale = quantize(flat - center, "1bit")
        else:
            values, scale = quantize(flat, kind)
        offsets = torch.zeros(len(per_example) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(torch.tensor([t.shape[0] for t in per_example]), 0)
        return cls(values, scale, offsets, kind, hidden, depth, center)

    def nbytes(self) -> int:
        return self.values.nbytes + (0 if self.scale is None else self.scale.nbytes)

    def to_bytes(self, key: str) -> bytes:
        tensors = {"values": self.values, "offsets": self.offsets}
        if self.scale is not None:
            tensors["scale"] = self.scale
        if self.center is not None:
            tensors["center"] = self.center
        meta = {"format": CACHE_FORMAT, "key": key, "kind": self.kind, "hidden": str(self.hidden),
                "depth": str(self.depth)}
        return st_save(tensors, metadata=meta)

    @classmethod
    def load(cls, path: Path) -> FeatureStore:
        from safetensors import safe_open

        from mtbranch.io.files import check_regular

        check_regular(path)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
        return cls(t["values"], t.get("scale"), t["offsets"], meta["kind"], int(meta["hidden"]),
                   int(meta["depth"]), t.get("center"))


# -- computing features -----------------------------------------------------------------------------------
def pad_ids(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


@torch.no_grad()  # not inference_mode: cached tensors must be usable in autograd later
def compute_features(source: TrunkSource, encoded: Encoded, depths: Sequence[int], *,
                     kind: Quantize = "none", max_tokens: int = 8192, pad_token_id: int = 0,
                     progress: bool = False) -> dict[int, FeatureStore]:
    """One trunk pass (embeddings + layers up to the deepest depth) gives the features at every depth."""
    wanted = sorted(set(depths))
    if not wanted:
        return {}
    trunk = load_trunk(source, max(wanted))
    per_depth: dict[int, list[torch.Tensor | None]] = {d: [None] * len(encoded) for d in wanted}
    lengths = [len(ids) for ids in encoded.input_ids]
    from mtbranch.composition.buckets import buckets

    # sorted by length, cut at about max_tokens padded tokens each (the cut predict and serve make, without their
    # row and padding limits: a feature pass has no request to answer quickly)
    batches = buckets(lengths, max_rows=max(1, len(lengths)), max_tokens=max_tokens, max_padding=None)
    bar = _progress(len(batches), f"trunk features (depths {','.join(map(str, wanted))})", progress)
    for idx in batches:
        ids = pad_ids([encoded.input_ids[i] for i in idx], pad_token_id)
        types = pad_ids([encoded.token_type_ids[i] for i in idx], 0)
        mask = pad_ids([[1] * lengths[i] for i in idx], 0)
        states = trunk(ids, mask, types, depth=max(wanted))
        for d in wanted:
            for row, i in enumerate(idx):
                per_depth[d][i] = states[d][row, : lengths[i]].clone()
        bar.update(1)
    bar.close()
    return {d: FeatureStore.from_examples(per_depth[d], kind, d) for d in wanted}  # type: ignore[arg-type]


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


class FeatureCache:
    """Features keyed by (trunk fingerprint at the depth, inputs, quantization), in memory and optionally on
    disk. :meth:`get` computes all missing depths in one trunk pass."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.memory: dict[str, FeatureStore] = {}

    @staticmethod
    def key(source: TrunkSource, encoded_digest: str, depth: int, kind: str) -> str:
        blob = json.dumps([CACHE_FORMAT, source.fingerprints[depth], encoded_digest, depth, kind])
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.safetensors"

    def get(self, source: TrunkSource, encoded: Encoded, depths: Sequence[int], *, kind: Quantize = "none",
            pad_token_id: int = 0, progress: bool = False) -> dict[int, FeatureStore]:
        digest = encoded.digest()
        keys = {d: self.key(source, digest, d, kind) for d in set(depths)}
        out: dict[int, FeatureStore] = {}
        for d, k in keys.items():
            path = self._path(k)
            if k in self.memory:
                out[d] = self.memory[k]
            elif path is not None and path.is_file():
                try:
                    out[d] = self.memory[k] = FeatureStore.load(path)
                except Exception as exc:  # a corrupt cache entry is refused, never trusted
                    raise MtbranchError(f"cannot read cached features: {exc}", path=str(path),
                                        hint="delete the file; it will be recomputed") from None
        missing = [d for d in keys if d not in out]
        if missing:
            fresh = compute_features(source, encoded, missing, kind=kind, pad_token_id=pad_token_id,
                                     progress=progress)
            for d, store in fresh.items():
                self.memory[keys[d]] = out[d] = store
                path = self._path(keys[d])
                if path is not None:
                    write_bytes_atomic(path, store.to_bytes(keys[d]))
        return out
