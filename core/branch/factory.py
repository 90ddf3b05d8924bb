"""Make a new branch for a trunk: its manifest, and a module initialised from the trunk's own layers.

This is what ``import-hf`` starts from (the SDK's ``train`` builds its branch in ``mtbranch.sdk.train.new_branch``);
tests use it to build branches at any depth.
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
    """Copy trunk layers d+1..d+n into the branch's layers, the family's context / final modules into the
    branch's copies, and the trunk's pooler (BERT) into the projection.

    Returns the module keys that were initialised from the trunk.
    """
    from safetensors import safe_open

    from mtbranch.trunk.model import trunk_state_keys

    d = module.manifest.attach_depth
    state = {}
    from mtbranch.io.files import check_regular

    check_regular(trunk.weights)
    with safe_open(str(trunk.weights), framework="pt") as f:
        names = set(f.keys())
        for name, key in trunk_state_keys(trunk, d + len(module.layers)).items():
            part, _, rest = key.partition(".")
            if part == "layers":
                k, _, tail = rest.partition(".")
                if int(k) >= d:
                    state[f"layers.{int(k) - d}.{tail}"] = f.get_tensor(name)
            elif part in ("context", "final"):  # the family's shared context / final module (frozen copies)
                state[key] = f.get_tensor(name)
        if hasattr(module, "pooler"):
            for p in ("weight", "bias"):
                src = next((n for n in names if n.endswith(f"pooler.dense.{p}")), None)  # BERT's pooler
                if src is not None:
                    state[f"pooler.dense.{p}"] = f.get_tensor(src)
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(state, strict=False)
    return sorted(state)
