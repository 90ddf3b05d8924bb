"""Make a new branch for a trunk: its manifest, and a module initialised from the trunk's own layers.

This is what ``import-hf`` and the SDK's ``train`` start from; tests use it to build branches at any depth.
"""

from __future__ import annotations

from typing import Any, Literal

from mtbranch.spec.manifest import BranchManifest, TrunkBinding, WeightsSpec
from mtbranch.trunk.source import TrunkSource
from mtbranch.trunk.tokenizer import contract_for

ZERO_SHA = "0" * 64


def branch_manifest(trunk: TrunkSource, tokenizer: Any, *, name: str, attach_depth: int, num_layers: int,
                    head: Any, pooling: Literal["cls", "mean", "attention"] = "cls", projection: bool = True,
                    max_length: int | None = None, input_signature: Literal["single", "pair"] = "single",
                    version: str = "0.1.0", owner: str | None = None, **extra: Any) -> BranchManifest:
    return BranchManifest(
        name=name, version=version, owner=owner,
        trunk=TrunkBinding(structure=trunk.structure, fingerprint=trunk.fingerprints[attach_depth],
                           num_layers=trunk.num_layers, reference=trunk.reference),
        attach_depth=attach_depth, num_layers=num_layers, pooling=pooling, projection=projection, head=head,
        tokenizer=contract_for(tokenizer, max_length=max_length, input_signature=input_signature),
        weights=WeightsSpec(sha256=ZERO_SHA, num_parameters=0), **extra,
    )


def init_from_trunk(module: Any, trunk: TrunkSource) -> list[str]:
    """Copy trunk layers d+1..d+n into the branch's layers (and the trunk pooler into the projection).

    Returns the module keys that were initialised from the trunk.
    """
    from safetensors import safe_open

    from mtbranch.trunk.fingerprint import trunk_prefix

    d = module.manifest.attach_depth
    state = {}
    with safe_open(str(trunk.weights), framework="pt") as f:
        names = set(f.keys())
        prefix = trunk_prefix(names)
        for i in range(len(module.layers)):
            src = f"{prefix}encoder.layer.{d + i}."
            for key in module.layers[i].state_dict():
                if src + key in names:
                    state[f"layers.{i}.{key}"] = f.get_tensor(src + key)
        if hasattr(module, "pooler"):
            for p in ("weight", "bias"):
                if f"{prefix}pooler.dense.{p}" in names:
                    state[f"pooler.dense.{p}"] = f.get_tensor(f"{prefix}pooler.dense.{p}")
    module.load_state_dict(state, strict=False)
    return sorted(state)
