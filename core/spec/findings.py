"""Validation findings: stable code, severity, branch, location and a message with a fix hint.

Codes are grouped like ruff's: P plugins, M manifest schema, T trunk, K tokenizer, W weights, V versions,
C composition, F files in the branch directory. The table in docs/validation-codes.md is checked against
:data:`CODES` by a test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]

CODES: dict[str, tuple[Severity, str]] = {
    "P001": ("warning", "a plugin failed to load (import error)"),
    "P002": ("warning", "a plugin hook raised an exception"),
    "P003": ("warning", "a plugin hook returned something other than a list of the expected records, or a record "
                        "with a field of the wrong type"),
    "P004": ("warning", "a plugin implements a hook mtbranch does not know (typo or newer mtbranch)"),
    "P005": ("error", "two installed plugins provide a branch with the same name"),
    "P006": ("warning", "two plugins register the same check name or trunk family (the first is kept)"),
    "P007": ("warning", "a plugin printed to stdout at import, in a hook or in a check (captured, not shown)"),
    "P008": ("error", "two plugins register the same head type or trunk name (neither is used)"),
    "M001": ("error", "manifest.json is missing"),
    "M002": ("error", "manifest.json is not valid JSON (not an object, not UTF-8, a duplicate key, over 16 MiB)"),
    "M003": ("error", "manifest does not match the schema (field path in the location)"),
    "M004": ("error", "schema_version is newer than this mtbranch, or unknown"),
    "M005": ("error", "head type is not registered by any installed plugin"),
    "T001": ("error", "trunk fingerprint at the branch's attach depth does not match"),
    "T002": ("error", "attach depth (+ layers) is out of the trunk's range"),
    "T003": ("error", "trunk structure (hidden size, heads, intermediate size, activation...) differs"),
    "T004": ("error", "the trunk cannot be loaded"),
    "K001": ("error", "tokenizer gives different token ids for the probe text (incompatible tokenizer)"),
    "K002": ("warning", "tokenizer definition hash differs but probe ids agree (serialisation change)"),
    "K003": ("error", "tokenizer vocab size or special token ids differ"),
    "K004": ("warning", "branches declare different max_length; the smallest is used when composed"),
    "W001": ("error", "weights file is missing"),
    "W002": ("error", "weights sha256 does not match the manifest"),
    "W003": ("error", "weights file is not a readable safetensors file (header corrupt, truncated, too large)"),
    "W004": ("error", "a tensor the architecture needs is missing from the weights file"),
    "W005": ("error", "the weights file holds a tensor the architecture does not use"),
    "W006": ("error", "a tensor has the wrong shape for the declared architecture"),
    "W007": ("error", "a tensor's dtype differs from the manifest's weights.dtype"),
    "W008": ("error", "a path in the manifest escapes the artifact directory"),
    "W009": ("error", "weights contain NaN or Inf values"),
    "W010": ("warning", "weights large enough to overflow to Inf/NaN at run time (absolute values over 1e4)"),
    "W011": ("warning", "the model card (README.md) disagrees with the manifest (regenerate it from the manifest)"),
    "V001": ("error", "the manifest's `requires` range excludes the running mtbranch version"),
    "C001": ("error", "two branches have the same name"),
    "F001": ("error", "a symlink in the branch directory points outside it"),
    "F002": ("error", "a symlink loop in the branch directory"),
    "F003": ("error", "a link to the branch directory itself or one of its ancestors"),
    "F004": ("error", "a FIFO, socket or device file in the branch directory"),
    "F005": ("warning", "the branch directory could not be fully checked (unreadable, or over 10,000 entries)"),
}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    branch: str | None = None
    location: str | None = None  # "path/to/file" or "path/to/file#field.path"
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def finding(code: str, message: str, *, branch: str | None = None, location: str | None = None,
            hint: str | None = None, severity: Severity | None = None) -> Finding:
    return Finding(code, severity or CODES[code][0], message, branch, location, hint)
