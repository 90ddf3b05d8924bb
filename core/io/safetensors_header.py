"""Read a safetensors header without loading tensors (and without torch).

Format: 8-byte little-endian header length N, N bytes of JSON, then the raw tensor data. Every check here
is one a malicious or truncated file could fail, and each failure is a :class:`HeaderError` with a reason.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from mtbranch.errors import MtbranchError
from mtbranch.io.files import JsonFileError, loads_json_object, open_regular

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit

DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


class HeaderError(MtbranchError, ValueError):
    """The file is not a readable safetensors file; ``message`` says why, ``path`` names the file."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute file offset
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    p = Path(path)
    try:
        return _read_header(p)
    except HeaderError as exc:
        raise HeaderError(exc.message, path=str(p),
                          hint="the file is truncated, corrupt or not safetensors: re-export it") from None


def _read_header(p: Path) -> SafetensorsHeader:
    with open_regular(p) as fh:
        size = os.fstat(fh.fileno()).st_size
        raw_len = fh.read(8)
        if len(raw_len) < 8:
            raise HeaderError(f"file is {size} bytes, too short to hold a safetensors header")
        (n,) = struct.unpack("<Q", raw_len)
        if n > MAX_HEADER_BYTES:
            raise HeaderError(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
        if 8 + n > size:
            raise HeaderError(f"header length {n} runs past the end of the {size}-byte file (truncated?)")
        raw = fh.read(n)
    try:
        obj = loads_json_object(raw)
    except JsonFileError as exc:
        raise HeaderError(f"header is unusable: {exc}") from None
    data_start = 8 + n
    data_len = size - data_start
    metadata = obj.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise HeaderError("__metadata__ is not an object")
    tensors: dict[str, TensorInfo] = {}
    spans = []
    for name, info in obj.items():
        if not isinstance(info, dict):
            raise HeaderError(f"tensor {name!r}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise HeaderError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            raise HeaderError(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise HeaderError(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise HeaderError(
                f"tensor {name!r}: data_offsets {offsets} lie beyond the {data_len} data bytes in the file"
            )
        expected = math.prod(shape) * DTYPE_SIZES[dtype]
        if end - begin != expected:
            raise HeaderError(
                f"tensor {name!r}: {end - begin} bytes stored but dtype {dtype} x shape {shape} needs {expected}"
            )
        spans.append((begin, end, name))
        tensors[name] = TensorInfo(name, dtype, tuple(shape), data_start + begin, data_start + end)
    spans.sort()
    for (_b1, e1, n1), (b2, _e2, n2) in itertools.pairwise(spans):
        if b2 < e1:
            raise HeaderError(f"tensors {n1!r} and {n2!r} overlap in the data section")
    return SafetensorsHeader(p, tensors, {str(k): str(v) for k, v in metadata.items()}, data_start)
