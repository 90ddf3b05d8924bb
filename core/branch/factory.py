"""Make a new branch for a trunk: its manifest, and a module initialised from the trunk's own layers.

One place for both, whoever makes the branch: ``import-hf`` (the manifest; its weights come from the
checkpoint), the SDK's ``train`` / ``sweep`` / ``distill`` (``mtbranch.sdk.train.new_branch``), the bench's
synthetic branches and the tests.
"""

from __future__ import annotations

from typing import Any, Literal

from mtbranch.spec.manifest import BranchManifest, TrunkBinding, WeightsSpec
from mtbranch.trunk.source import TrunkSource
from mtbranch.trunk.tokenizer import contract_for

ZERO_SHA = "0" * 64  # placeholder: save_branch writes the weights' sha256 and parameter count


def branch_manifest(trunk: TrunkSource, tokenizer: Any, *, name: str, attach_depth: int, num_layers: int,
                    head: Any, pooling: Literal["cls", "mean", "attention"] = "cls", projection: bool = True,
                    max_length: int | None = None, input_signature: Literal["single", "pair"] = "single",
                    version: str = "0.1.0", owner: str | None = None, description: str = "",
                    **extra: Any) -> BranchManifest:
    """A new branch's manifest: bound to the trunk at ``attach_depth`` (structure, fingerprint, layer count,
    reference), the tokenizer's contract, placeholder weights. ``extra``: further manifest fields (``training``)."""
    return BranchManifest(
        name=name, version=version, owner=owner, description=description,
        trunk=TrunkBinding(structure=trunk.structure, fingerprint=trunk.fingerprints[attach_depth],
                           num_layers=trunk.num_layers, reference=trunk.reference),
        attach_depth=attach_depth, num_layers=num_layers, pooling=pooling, projection=projection, head=head,
        tokenizer=contract_for(tokenizer, max_length=max_length, input_signature=input_signature),
        weights=WeightsSpec(sha256=ZERO_SHA, num_parameters=0), **extra,
    )


def init_from_trunk(module: Any, trunk: TrunkSource) -> list[str]:
    """Start a branch (a ``BranchModule``) as partial fine-tuning of the trunk starts, for every family:

    - ``layers.i`` <- trunk layer ``d+i+1`` (``d``: the attach depth);
    - ``context`` / ``final`` <- the trunk's (the family's shared context and final module, frozen copies);
    - ``pooler`` (the projection) <- the tensors where the family's ``*For*Classification`` keeps it
      (``FamilyImpl.projection_source``: BERT's pooler, RoBERTa's ``classifier.dense``, DistilBERT's
      ``pre_classifier``, ModernBERT's prediction head...) when the trunk's checkpoint has them; else it keeps
      its fresh init.

    Returns the module keys that were initialised from the trunk.
    """
    from safetensors import safe_open

    from mtbranch.io.files import check_regular
    from mtbranch.trunk.families import record_for, trunk_prefix, trunk_tensors

    d = module.manifest.attach_depth
    own = module.state_dict()
    check_regular(trunk.weights)
    with safe_open(str(trunk.weights), framework="pt") as f:
        names = list(f.keys())
        rec = record_for(trunk.structure.model_type)
        sources: dict[str, str] = {}
        for name, (_, _, key) in trunk_tensors(rec, names, d + len(module.layers)).items():
            part, _, rest = key.partition(".")
            if part == "layers":
                k, _, tail = rest.partition(".")
                if int(k) >= d:
                    sources[f"layers.{int(k) - d}.{tail}"] = name
            elif part in ("context", "final"):
                sources[key] = name
        prefix = trunk_prefix(rec, names)
        present = set(names)
        for key in own:
            if key.startswith("pooler."):
                src = module.family.projection_source(key.removeprefix("pooler."), prefix, module.sequence_level)
                if src in present:
                    sources[key] = src
        state = {k: f.get_tensor(v) for k, v in sources.items() if k in own}
    state = {k: v for k, v in state.items() if own[k].shape == v.shape}
    module.load_state_dict(state, strict=False)
    return sorted(state)
