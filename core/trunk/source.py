"""Resolve a trunk reference to a local model directory (no torch).

A reference is a local Hugging Face model directory, ``hf:org/name[@revision]`` (from huggingface_hub's cache,
else downloaded: :mod:`mtbranch.hub`), or the name of a trunk provided by an installed plugin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mtbranch.errors import MtbranchError, os_error
from mtbranch.io.files import check_regular
from mtbranch.spec.structure import TrunkStructure, read_config
from mtbranch.trunk.families import num_layers_of, structure_of
from mtbranch.trunk.fingerprint import fingerprint_chain

WEIGHTS_NAME = "model.safetensors"


@dataclass
class TrunkSource:
    reference: str
    path: Path
    config: dict[str, Any] = field(repr=False)

    @cached_property
    def structure(self) -> TrunkStructure:
        return structure_of(self.config, str(self.path / "config.json"))

    @property
    def num_layers(self) -> int:
        return num_layers_of(self.config)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_NAME

    @cached_property
    def fingerprints(self) -> list[str]:
        """``[h0..hN]``; index d is the fingerprint a branch attached at depth d must carry."""
        return fingerprint_chain(self.weights, self.structure)


def load_trunk_source(path: str | os.PathLike[str], reference: str | None = None) -> TrunkSource:
    p = Path(path)
    if not p.is_dir():
        raise MtbranchError("trunk directory does not exist", path=str(p),
                            hint="pass --trunk with a model directory, hf:org/name@rev, or an installed trunk name")
    cfg = read_config(p, check_model_type=False)
    # the family (built-in ones without importing any plugin), or an error naming the supported ones
    structure_of(cfg, str(p / "config.json"))
    if os.path.lexists(p / WEIGHTS_NAME):
        try:
            check_regular(p / WEIGHTS_NAME)
        except OSError as exc:
            raise os_error(exc, f"reading {WEIGHTS_NAME}", str(p / WEIGHTS_NAME)) from None
    if not (p / WEIGHTS_NAME).is_file():
        other = sorted(x.name for x in p.iterdir() if x.suffix in {".bin", ".pt", ".pth", ".ckpt"})
        hint = ("mtbranch never unpickles weights; convert them with "
                "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`"
                if other else "save the model with save_pretrained() to get model.safetensors")
        raise MtbranchError(f"no {WEIGHTS_NAME} in the trunk directory", path=str(p), hint=hint)
    return TrunkSource(reference or str(p), p, cfg)


TRUNK_FILES = ["config.json", WEIGHTS_NAME, "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json"]


def resolve_trunk(reference: str) -> TrunkSource:
    if reference.startswith("hf:"):
        from mtbranch.hub import hub_snapshot

        path = hub_snapshot(reference, TRUNK_FILES, ["config.json", WEIGHTS_NAME], "trunk")
        return load_trunk_source(path, reference)
    if os.sep in reference or reference.startswith(".") or Path(reference).is_dir():
        return load_trunk_source(reference)
    from mtbranch.plugins.manager import get_plugin_manager

    pm = get_plugin_manager()
    trunks = pm.trunks()
    if reference in trunks:
        return load_trunk_source(trunks[reference].path, reference)
    both = pm.ambiguous("trunk", reference)
    if both:
        raise MtbranchError(f"trunk {reference!r} is registered by {' and '.join(map(repr, both))} (P008)",
                            hint="uninstall one of them, or pass the model directory")
    known = ", ".join(sorted(trunks)) or "none installed"
    raise MtbranchError(
        f"unknown trunk {reference!r}",
        hint=f"installed trunks: {known}; or pass a model directory or hf:org/name@rev",
    )
