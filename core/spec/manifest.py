"""The branch manifest: a versioned pydantic model, published as JSON Schema.

``schema_version`` is ``MAJOR.MINOR``. Older versions are converted forward by :data:`CONVERTERS` before
validation; a newer major version is refused (an older mtbranch cannot know what it means).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mtbranch.io.files import read_json_object
from mtbranch.spec.dtypes import ManifestDType
from mtbranch.spec.heads import HeadSpec
from mtbranch.spec.structure import TrunkStructure
from mtbranch.spec.tokenizer_contract import TokenizerContract

SCHEMA_VERSION = "1.2"
MANIFEST_NAME = "manifest.json"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_LAYERS = 1024  # far deeper than any transformer; bounds the work validating a hostile manifest can cause


class TrunkBinding(BaseModel):
    """What the branch requires of the trunk below it."""

    model_config = ConfigDict(extra="forbid")

    structure: TrunkStructure
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$",
                             description="h_d: the trunk fingerprint chain at the branch's attach depth")
    num_layers: int = Field(gt=0, le=MAX_LAYERS, description="layers of the trunk the branch was trained on")
    reference: str | None = Field(None, description="informational: the trunk reference used in training")


class WeightsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field("branch.safetensors", description="relative to the artifact directory")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    dtype: ManifestDType = "float32"
    num_parameters: int = Field(ge=0)


class BranchManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="mtbranch branch manifest")

    schema_version: str = Field(SCHEMA_VERSION, pattern=r"^\d+\.\d+$")
    name: str = Field(description="unique task name: lowercase letters, digits, '-' and '_'")
    version: str = Field("0.1.0", description="PEP 440 version of this branch")
    owner: str | None = None
    description: str = ""
    tags: list[str] = Field(default_factory=list, description=(
        "labels a service can ask for instead of task names (a request's \"tags\": [\"safety\"]), each like a name"))
    trunk: TrunkBinding
    attach_depth: int = Field(ge=0, le=MAX_LAYERS, description="0 = embeddings output, trunk.num_layers = top layer")
    num_layers: int = Field(ge=0, le=MAX_LAYERS,
                            description="transformer layers in the branch (0 = feature-based head)")
    pooling: Literal["cls", "mean", "attention"] = "cls"
    projection: bool = Field(
        True, description="dense+tanh on the pooled vector before the classifier (BERT's pooler)"
    )
    head: HeadSpec
    pair_mode: Literal["joint", "shared"] = Field(
        "joint", description="pair branches only: 'joint' reads the two texts encoded together (one sequence); "
                             "'shared' encodes each text alone (the single-text pass), pools each and its head "
                             "reads [u, v, |u-v|, u*v]")
    tokenizer: TokenizerContract
    weights: WeightsSpec
    metrics: dict[str, float] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict, description="data and training provenance")
    requires: str = Field(">=0.1", description="PEP 440 range of mtbranch versions this branch works with")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must match ^[a-z0-9][a-z0-9_-]{0,63}$ (e.g. 'sentiment', 'ner-en')")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if not NAME_RE.match(t)]
        if bad:
            raise ValueError(f"tag {bad[0]!r} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$ (e.g. 'safety')")
        if len(set(v)) != len(v):
            raise ValueError("tags must be unique")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        try:
            Version(v)
        except InvalidVersion:
            raise ValueError(f"{v!r} is not a PEP 440 version (e.g. 1.0.2)") from None
        return v

    @field_validator("requires")
    @classmethod
    def _requires(cls, v: str) -> str:
        try:
            SpecifierSet(v)
        except InvalidSpecifier:
            raise ValueError(f"{v!r} is not a PEP 440 version range (e.g. '>=0.1,<1')") from None
        return v

    @model_validator(mode="after")
    def _pair_mode(self) -> BranchManifest:
        if self.pair_mode == "shared" and self.tokenizer.input_signature != "pair":
            raise ValueError("pair_mode 'shared' needs tokenizer.input_signature 'pair' (a single-text branch "
                             "has no second text to share the pass with)")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"


def _from_0_9(data: dict[str, Any]) -> dict[str, Any]:
    """0.9 (pre-release drafts) named the depth ``depth`` and the layer count ``layers``."""
    data = dict(data)
    if "depth" in data:
        data["attach_depth"] = data.pop("depth")
    if "layers" in data:
        data["num_layers"] = data.pop("layers")
    data["schema_version"] = "1.0"
    return data


def _from_1_0(data: dict[str, Any]) -> dict[str, Any]:
    """1.1 added the token head's ``word_split``; its default (``whitespace``) is what every 1.0 token branch
    was trained on (the SDK reads CoNLL and seq.in files as whitespace-separated words)."""
    return {**data, "schema_version": "1.1"}


def _from_1_1(data: dict[str, Any]) -> dict[str, Any]:
    """1.2 added ``pair_mode``; its default (``joint``) is how every 1.1 pair branch reads its texts."""
    return {**data, "schema_version": "1.2"}


# minor-version or older-major converters, applied in order until SCHEMA_VERSION is reached
CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"0.9": _from_0_9, "1.0": _from_1_0,
                                                                     "1.1": _from_1_1}


class SchemaVersionError(ValueError):
    pass


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    version = str(data.get("schema_version", SCHEMA_VERSION))
    if not re.match(r"^\d+\.\d+$", version):
        raise SchemaVersionError(f"schema_version {version!r} is not MAJOR.MINOR")
    major, minor = (int(x) for x in version.split("."))
    cur_major, cur_minor = (int(x) for x in SCHEMA_VERSION.split("."))
    if (major, minor) > (cur_major, cur_minor):
        raise SchemaVersionError(
            f"schema_version {version} is newer than this mtbranch understands ({SCHEMA_VERSION})"
        )
    seen = set()
    while data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        v = data["schema_version"]
        if v in seen or v not in CONVERTERS:
            raise SchemaVersionError(f"schema_version {v} is not known and cannot be converted")
        seen.add(v)
        data = CONVERTERS[v](data)
    return data


def parse_manifest(data: dict[str, Any]) -> BranchManifest:
    return BranchManifest.model_validate(upgrade(data))


def read_manifest(path: Path) -> BranchManifest:
    """Read and validate; raises OSError, JsonFileError, SchemaVersionError or ValidationError (ValueErrors)."""
    return parse_manifest(read_json_object(path))


def manifest_json_schema() -> dict[str, Any]:
    schema = BranchManifest.model_json_schema()
    schema["$id"] = f"https://mtbranch.dev/schema/branch-manifest-{SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
