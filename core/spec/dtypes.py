"""The one table of floating dtypes: manifest name -> safetensors code -> numpy / torch dtype.

Every other module asks this table (``weights.dtype`` in manifests, the W007 dtype check, the non-finite scan,
``save_branch``, ``--dtype`` options, ``compose(dtype=...)``). Torch is resolved lazily, so ``import mtbranch``
and plugin discovery stay free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from mtbranch.errors import MtbranchError

# what a manifest may declare in weights.dtype (pydantic needs a literal type; the table below must match it)
ManifestDType = Literal["float32", "float16", "bfloat16"]
MANIFEST_DTYPES: tuple[str, ...] = get_args(ManifestDType)


@dataclass(frozen=True)
class DType:
    name: str  # the manifest / CLI name
    code: str  # the safetensors header code
    aliases: tuple[str, ...]  # also accepted by --dtype / compose(dtype=...)
    numpy: str | None  # numpy type with the same bits, None where numpy has none (bfloat16)
    manifest: bool  # may a branch declare it in weights.dtype?


DTYPES: dict[str, DType] = {d.name: d for d in (
    DType("float32", "F32", ("fp32",), "float32", True),
    DType("float16", "F16", ("fp16",), "float16", True),
    DType("bfloat16", "BF16", ("bf16",), None, True),
    DType("float64", "F64", ("fp64",), "float64", False),  # readable in files (non-finite scan), never declared
)}
assert tuple(n for n, d in DTYPES.items() if d.manifest) == MANIFEST_DTYPES

# every accepted spelling -> canonical name
_SPELLINGS: dict[str, str] = {s: d.name for d in DTYPES.values() for s in (d.name, *d.aliases)}
# the names a user may pass to --dtype (float64 is not a compute dtype mtbranch offers)
COMPUTE_DTYPES: tuple[str, ...] = MANIFEST_DTYPES


def dtype_named(name: str) -> DType:
    """The row for a name or alias (``bf16`` -> bfloat16); a user error naming the choices otherwise."""
    canonical = _SPELLINGS.get(name) if isinstance(name, str) else None
    if canonical is None or canonical not in COMPUTE_DTYPES:
        choices = ", ".join(s for s, c in _SPELLINGS.items() if c in COMPUTE_DTYPES)
        raise MtbranchError(f"unknown dtype {name!r}", hint=f"use one of {choices}")
    return DTYPES[canonical]


def safetensors_code(name: str) -> str:
    """``float16`` -> ``F16``."""
    return dtype_named(name).code


def numpy_views() -> dict[str, str]:
    """safetensors code -> numpy type name, for the codes numpy can view directly."""
    return {d.code: d.numpy for d in DTYPES.values() if d.numpy is not None}


def torch_dtype(dtype: Any) -> Any:
    """A name/alias -> ``torch.dtype`` (imports torch); ``None`` and a ``torch.dtype`` pass through."""
    if dtype is None:
        return None
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, dtype_named(dtype).name)
