"""``import-hf``: turn a fine-tuned transformers checkpoint into a branch.

For teams that already have a ``*ForSequenceClassification`` / ``*ForTokenClassification`` model whose
bottom layers were kept frozen (or were distilled from the trunk): its top N layers, pooler and classifier
become the branch, attached at depth d = (checkpoint layers) - N. The checkpoint's embeddings and bottom d
layers must be bit-identical to the trunk's, which the fingerprint chain checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from mtbranch.errors import MtbranchError
from mtbranch.io.files import check_regular
from mtbranch.io.guard import check_output
from mtbranch.spec.heads import ClassificationHead, RegressionHead, TokenClassificationHead
from mtbranch.spec.manifest import BranchManifest
from mtbranch.spec.structure import read_config
from mtbranch.trunk.families import num_layers_of, record_for, structure_of, trunk_tensors
from mtbranch.trunk.families import trunk_prefix as family_prefix
from mtbranch.trunk.fingerprint import compute_chain
from mtbranch.trunk.source import WEIGHTS_NAME, TrunkSource


def _labels(cfg: dict[str, Any]) -> list[str]:
    id2label = cfg.get("id2label") or {}
    n = int(cfg.get("num_labels") or len(id2label) or 2)
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]


def head_from_config(cfg: dict[str, Any], path: Path) -> tuple[Any, bool]:
    """(head spec, sequence-level?) from the checkpoint's architecture and problem_type."""
    arch = (cfg.get("architectures") or [""])[0]
    labels = _labels(cfg)
    try:
        return _head(cfg, arch, labels, path)
    except ValidationError as exc:  # e.g. token labels that are not BIO tags
        why = "; ".join(e["msg"] for e in exc.errors())
        raise MtbranchError(f"the checkpoint's labels (id2label) do not fit a {arch} head: {why}",
                            path=str(path / "config.json"),
                            hint="fix id2label in config.json (token classification needs BIO tags: O, B-X, I-X)"
                            ) from None


def _head(cfg: dict[str, Any], arch: str, labels: list[str], path: Path) -> tuple[Any, bool]:
    if arch.endswith("ForTokenClassification"):
        return TokenClassificationHead(labels=labels), False
    if arch.endswith("ForSequenceClassification"):
        if cfg.get("problem_type") == "regression" or len(labels) == 1:
            return RegressionHead(outputs=["score"] if len(labels) == 1 else labels), True
        return ClassificationHead(labels=labels,
                                  multi_label=cfg.get("problem_type") == "multi_label_classification"), True
    raise MtbranchError(f"architecture {arch or '(none)'!r} cannot be imported", path=str(path / "config.json"),
                        hint="import-hf takes *ForSequenceClassification or *ForTokenClassification checkpoints")


def import_hf(model_dir: str | Path, trunk: TrunkSource, *, num_layers: int, name: str, out: str | Path,
              version: str = "0.1.0", max_length: int | None = None,
              input_signature: Literal["single", "pair"] = "single") -> BranchManifest:
    from safetensors import safe_open

    from mtbranch.branch.factory import branch_manifest
    from mtbranch.branch.model import BranchModule, save_branch
    from mtbranch.plugins.manager import get_plugin_manager
    from mtbranch.trunk.tokenizer import load_tokenizer

    src = Path(model_dir)
    out = check_output(out, "branch", inputs=[src, trunk.path])  # before reading anything
    cfg = read_config(src, check_model_type=False)  # structure_of below names the supported families
    weights = src / WEIGHTS_NAME
    if not weights.is_file():
        raise MtbranchError(f"no {WEIGHTS_NAME} in the checkpoint", path=str(src),
                            hint="save it with save_pretrained(); mtbranch never unpickles .bin files")
    structure = structure_of(cfg, str(src / "config.json"))
    diffs = structure.differences(trunk.structure)
    if diffs:
        raise MtbranchError(f"T003 checkpoint structure differs from the trunk: {'; '.join(diffs)}",
                            path=str(src / "config.json"), hint="import onto the trunk it was fine-tuned from")
    total = num_layers_of(cfg)
    depth = total - num_layers
    if num_layers < 0 or depth < 0:
        raise MtbranchError(f"--layers {num_layers} is not within the checkpoint's 0..{total} layers",
                            hint=f"choose --layers between 0 and {total}")
    if depth > trunk.num_layers:
        raise MtbranchError(f"T002 attach depth {depth} exceeds the trunk's {trunk.num_layers} layers",
                            hint=f"use --layers >= {total - trunk.num_layers}")
    chain = compute_chain(weights, structure, max_depth=depth)
    if chain[depth] != trunk.fingerprints[depth]:
        first = next(k for k in range(depth + 1) if chain[k] != trunk.fingerprints[k])
        where = "the embeddings" if first == 0 else f"layer {first}"
        raise MtbranchError(
            f"T001 the checkpoint's bottom {depth} layers do not match the trunk: {where} differs",
            path=str(weights),
            hint=f"only layers above depth {first - 1 if first else 0} were changed by fine-tuning? then "
                 f"use --layers {total - max(first - 1, 0)}; otherwise import onto the trunk it came from")

    head, sequence_level = head_from_config(cfg, src)
    rec = record_for(structure.model_type)
    from mtbranch.trunk.model import family_of

    impl = family_of(structure)
    check_regular(weights)
    with safe_open(str(weights), framework="pt") as f:
        names = set(f.keys())
        prefix = family_prefix(rec, names)
        # the family's head conventions: where its pooler / prediction head and classifier live
        probe = impl.projection_source("dense.weight", prefix, sequence_level)
        has_pooler = probe is not None and probe in names
        # checkpoints often ship without tokenizer files: then the trunk's tokenizer is the contract
        has_tokenizer = any((src / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json"))
        tok = load_tokenizer(src if has_tokenizer else trunk.path)
        pooling: Any = impl.checkpoint_pooling(cfg) if sequence_level else "cls"  # checked by the manifest
        manifest = branch_manifest(trunk, tok, name=name, attach_depth=depth, num_layers=num_layers, head=head,
                                   pooling=pooling, projection=has_pooler, max_length=max_length,
                                   input_signature=input_signature, version=version,
                                   training={"imported_from": str(src.resolve()),
                                             "architecture": (cfg.get("architectures") or [""])[0]})
        module = BranchModule(manifest, get_plugin_manager().head_type(head.type))
        trunk_names = {key: name for name, (_, _, key) in trunk_tensors(rec, names).items()}
        mapping: dict[str, str] = {}
        for key in module.state_dict():
            part, _, rest = key.partition(".")
            if part == "layers":
                i, _, tail = rest.partition(".")
                source = trunk_names.get(f"layers.{depth + int(i)}.{tail}")
            elif part in ("context", "final"):
                source = trunk_names.get(key)
            elif part == "pooler":
                source = impl.projection_source(rest, prefix, sequence_level)
            elif key.startswith("head.classifier."):
                source = impl.classifier_source(key.removeprefix("head.classifier."), prefix, sequence_level)
            else:
                source = None
            mapping[key] = source or f"(no {rec.name} tensor for the branch's {key})"
        missing = [v for v in mapping.values() if v not in names]
        if missing:
            raise MtbranchError(f"checkpoint lacks tensors {missing[:4]}", path=str(weights),
                                hint="is it a complete *ForSequenceClassification/*ForTokenClassification save?")
        state = {k: f.get_tensor(v).float() for k, v in mapping.items()}
    module.load_state_dict(state, strict=True)
    return save_branch(module, out)
