"""The trunk fingerprint chain (docs/concepts.md): ``h0 = sha256(structure || embeddings)``,
``h_k = sha256(h_{k-1} || layer k)``.

Computed from tensor names (prefix-free), dtypes, shapes and raw bytes read straight from the safetensors
file, so a checkpoint saved as ``BertForSequenceClassification`` (names under ``bert.``) and the bare
``BertModel`` give the same chain. A branch at depth d depends on ``h_d`` only. Results are cached on disk
under a key the file's content decides as well as its identity: path, device, inode, size, mtime, ctime
(which no tool can set back) and a sha256 of the safetensors header plus 16 evenly spaced 4 KiB samples of
the data, so a trunk replaced with its mtime preserved (``cp -p``, ``rsync -a``, ``tar x``) is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import IO

from mtbranch.io.atomic import write_text_atomic
from mtbranch.io.files import open_regular, read_text
from mtbranch.io.safetensors_header import SafetensorsHeader, TensorInfo, read_header
from mtbranch.spec.structure import TrunkStructure
from mtbranch.trunk import families

_CHUNK = 1 << 20


def cache_dir() -> Path:
    base = os.environ.get("MTBRANCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mtbranch"
    )
    return Path(base)


def trunk_prefix(names: list[str] | set[str] | dict[str, object], model_type: str = "bert") -> str:
    """The base-model prefix in front of the family's anchor tensor (``''``, ``'bert.'``, ``'roberta.'``)."""
    return families.trunk_prefix(families.record_for(model_type), names)


Group = list[tuple[str, TensorInfo]]  # (name hashed into the chain, tensor)


def split_trunk_tensors(header: SafetensorsHeader, model_type: str = "bert") -> tuple[str, Group, dict[int, Group]]:
    """Group a checkpoint's tensors by the family's rules into ``h0`` (embeddings, and what every layer reads)
    and layers (by index); other tensors (heads, poolers, what follows the last layer) are not hashed.

    The name hashed is the prefix-free name for ``h0`` tensors and the name inside the layer for layer
    tensors (BERT: exactly the names of earlier releases, so their fingerprints are unchanged)."""
    rec = families.record_for(model_type)
    prefix = families.trunk_prefix(rec, header.tensors)
    embeddings: Group = []
    layers: dict[int, Group] = {}
    for name, (group, layer, key) in families.trunk_tensors(rec, header.tensors).items():
        info = header.tensors[name]
        if group == "embeddings":
            embeddings.append((name[len(prefix):], info))
        elif group == "layer" and layer is not None:
            layers.setdefault(layer, []).append((key.removeprefix(f"layers.{layer}."), info))
    return prefix, embeddings, layers


def _update(h: hashlib._Hash, fh: IO[bytes], infos: Group) -> None:
    for rel, info in sorted(infos, key=lambda t: t[1].name):
        h.update(json.dumps([rel, info.dtype, list(info.shape)]).encode())
        fh.seek(info.start)
        remaining = info.nbytes
        while remaining:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                raise ValueError(f"{info.name}: file ends before the tensor's data")
            h.update(chunk)
            remaining -= len(chunk)


def compute_chain(weights: Path, structure: TrunkStructure, max_depth: int | None = None) -> list[str]:
    header = read_header(weights)
    _, embeddings, layers = split_trunk_tensors(header, structure.model_type)
    n = len(layers)
    if sorted(layers) != list(range(n)):
        raise ValueError(f"layer indices are not contiguous from 0: {sorted(layers)}")
    depth = n if max_depth is None else min(n, max_depth)
    chain: list[str] = []
    with open_regular(weights) as fh:
        h = hashlib.sha256(structure.canonical_json().encode())
        _update(h, fh, embeddings)
        chain.append(h.hexdigest())
        for k in range(depth):
            h = hashlib.sha256(chain[-1].encode())
            _update(h, fh, layers[k])
            chain.append(h.hexdigest())
    return chain


SAMPLES, SAMPLE_BYTES = 16, 4096


def content_probe(path: Path) -> str:
    """sha256 of the file's first 64 KiB (the safetensors header) and evenly spaced samples of the rest."""
    h = hashlib.sha256()
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        h.update(fh.read(1 << 16))
        for i in range(SAMPLES):
            fh.seek(size * i // SAMPLES)
            h.update(fh.read(SAMPLE_BYTES))
        fh.seek(max(0, size - SAMPLE_BYTES))
        h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def cache_key(path: Path, structure: TrunkStructure) -> str:
    st = path.stat()
    ident = f"{path}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
    return hashlib.sha256(f"{ident}|{content_probe(path)}|{structure.canonical_json()}".encode()).hexdigest()[:32]


def fingerprint_chain(weights: str | os.PathLike[str], structure: TrunkStructure) -> list[str]:
    """``[h0, h1, ..., hN]`` for the trunk stored in ``weights``; cached on disk (see the module docstring)."""
    path = Path(weights).resolve()
    key = cache_key(path, structure)
    cache_file = cache_dir() / "fingerprints" / f"{key}.json"
    try:
        cached = json.loads(read_text(cache_file))
        if isinstance(cached, list) and all(isinstance(x, str) for x in cached):
            return cached
    except (OSError, ValueError):
        pass
    chain = compute_chain(path, structure)
    with contextlib.suppress(OSError):  # a read-only cache must not break validation
        write_text_atomic(cache_file, json.dumps(chain))
    return chain
