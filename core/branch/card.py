"""A branch's model card: README.md with the Hugging Face Hub's metadata header, generated from its manifest.

:func:`branch_card` is the one place a card is composed. ``save_branch`` (train, build, distill, import-hf) and
``new-plugin`` write it next to manifest.json; ``mtbranch inspect --card`` prints it (one section per branch of
a composed model); validation compares a branch's README.md header with it (W011). The header is built with
huggingface_hub's :class:`~huggingface_hub.ModelCardData` (a transformers dependency), so the Hub reads the
task (``pipeline_tag``), the metrics with their dataset and split (``model-index``) and the licence as it reads
any model's; mtbranch's own facts (trunk fingerprint, depth, labels, weights sha256) sit under ``mtbranch:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtbranch.spec.manifest import BranchManifest

if TYPE_CHECKING:
    from huggingface_hub import ModelCard, ModelCardData

CARD_NAME = "README.md"
CARD_MAX_BYTES = 1 << 20  # a card is a page of text; a larger README.md is not read
PIPELINE_TAGS = {"classification": "text-classification", "regression": "text-classification",
                 "token_classification": "token-classification"}
# a metric key's prefix -> the split it was measured on, in the Hub's split names
SPLITS = {"dev": "validation", "validation": "validation", "test": "test", "train": "train"}
SPLIT_DIRS = {"train", "dev", "valid", "validation", "test"}
DEFAULT_LICENSE = "unknown"  # the Hub's value for "not stated"; a team sets training.license in its manifest


def dataset_of(training: dict[str, Any]) -> str:
    """The dataset the dev metrics were measured on, named after its directory (``conll2003/valid.txt`` ->
    conll2003; ``snips/valid/seq.in`` -> snips); "unknown" when the provenance names no file."""
    data = training.get("data")
    data = data if isinstance(data, dict) else {}
    for source in data.get("dev") or data.get("train") or []:
        path = source.get("path") if isinstance(source, dict) else None
        if isinstance(path, str) and path:
            parent = Path(path).parent
            if parent.name.lower() in SPLIT_DIRS and parent.parent.name:
                parent = parent.parent
            return parent.name or Path(path).stem
    return "unknown"


def _split(metric_key: str) -> tuple[str | None, str]:
    """``dev_entity_f1`` -> ("validation", "entity_f1"); a key with no split prefix -> (None, key)."""
    prefix, _, rest = metric_key.partition("_")
    if rest and prefix in SPLITS:
        return SPLITS[prefix], rest
    return None, metric_key


def _license(m: BranchManifest) -> str:
    value = m.training.get("license")
    return value if isinstance(value, str) and value else DEFAULT_LICENSE


def _base_model(m: BranchManifest) -> str | None:
    """The trunk as a Hub repo id when it was given as ``hf:org/name[@rev]`` (a local or plugin trunk has none)."""
    ref = m.trunk.reference or ""
    return ref[3:].partition("@")[0] if ref.startswith("hf:") else None


def mtbranch_facts(m: BranchManifest) -> dict[str, Any]:
    """What composing needs to know, under the header's ``mtbranch:`` key."""
    labels = getattr(m.head, "labels", None)
    facts: dict[str, Any] = {
        "branch": m.name, "version": m.version, "owner": m.owner, "head": m.head.type,
        "labels": list(labels) if labels is not None else None,
        "trunk": {"reference": m.trunk.reference, "model_type": m.trunk.structure.model_type,
                  "num_layers": m.trunk.num_layers, "fingerprint": m.trunk.fingerprint},
        "attach_depth": m.attach_depth, "num_layers": m.num_layers,
        "input_signature": m.tokenizer.input_signature, "max_length": m.tokenizer.max_length,
        "weights_sha256": m.weights.sha256, "requires": m.requires,
    }
    return {k: v for k, v in facts.items() if v is not None}


def card_data(m: BranchManifest) -> ModelCardData:
    from huggingface_hub import EvalResult, ModelCardData

    task = PIPELINE_TAGS.get(m.head.type)  # a plugin's head type: no Hub task claimed for it
    dataset = dataset_of(m.training)
    results = []
    for key, value in sorted(m.metrics.items()):
        split, metric = _split(key)
        results.append(EvalResult(task_type=task or m.head.type, dataset_type=dataset, dataset_name=dataset,
                                  dataset_split=split, metric_type=metric, metric_name=key,
                                  metric_value=value))
    return ModelCardData(
        model_name=m.name, library_name="mtbranch", pipeline_tag=task, license=_license(m),
        base_model=_base_model(m), tags=["mtbranch", "task-branch", m.head.type, m.trunk.structure.model_type],
        metrics=sorted({_split(k)[1] for k in m.metrics}) or None, eval_results=results or None,
        mtbranch=mtbranch_facts(m),
    )


def _metrics_table(m: BranchManifest) -> str:
    if not m.metrics:
        return "No metrics recorded."
    dataset = dataset_of(m.training)
    rows = [f"| {metric} | {value:.4g} | {dataset} | {split or '-'} |"
            for key, value in sorted(m.metrics.items()) for split, metric in [_split(key)]]
    return "\n".join(["| metric | value | dataset | split |", "|---|---|---|---|", *rows])


def _provenance(m: BranchManifest) -> str:
    t = m.training
    if not t:
        return "No training provenance recorded in the manifest."
    lines = []
    data = t.get("data")
    data = data if isinstance(data, dict) else {}
    for part in ("train", "dev"):
        for s in data.get(part) or []:
            if isinstance(s, dict):
                digest = f" (sha256 {s['sha256'][:12]}...)" if isinstance(s.get("sha256"), str) else ""
                note = f", {s['split']}" if s.get("split") else ""
                lines.append(f"- {part} data: `{s.get('path', '?')}`{digest}{note}")
    for key, label in (("train_examples", "train examples"), ("dev_examples", "dev examples")):
        if key in data:
            lines.append(f"- {label}: {data[key]}")
    for key in ("init", "seed", "metric", "best_epoch", "train_seconds"):
        if t.get(key) is not None:
            lines.append(f"- {key.replace('_', ' ')}: {t[key]}")
    hp = t.get("hyperparameters")
    if isinstance(hp, dict):
        shown = ", ".join(f"{k}={hp[k]:g}" if isinstance(hp[k], float) else f"{k}={hp[k]}"
                          for k in ("epochs", "batch_size", "lr", "head_lr", "max_length") if hp.get(k) is not None)
        lines.append(f"- hyperparameters: {shown}" if shown else "- hyperparameters: recorded in manifest.json")
    teacher = (t.get("distillation") or {}).get("teacher") if isinstance(t.get("distillation"), dict) else None
    if isinstance(teacher, dict):
        lines.append(f"- distilled from teacher {teacher.get('name')} {teacher.get('version', '')} "
                     f"({teacher.get('num_layers')} layer(s) at depth {teacher.get('attach_depth')})")
    versions = t.get("versions")
    if isinstance(versions, dict):
        lines.append("- software: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines) + "\n\nThe full record is the manifest's `training` field."


def _usage(m: BranchManifest, composed: bool) -> list[str]:
    """The commands that use the branch: from its directory, or as a task of the composed model."""
    trunk = m.trunk.reference or "TRUNK"
    predict = (f"mtbranch predict composed/ --task {m.name} \"some text\""
               + (' --pair "its pair text"' if m.tokenizer.input_signature == "pair" else ""))
    if composed:
        return ["```bash", predict, "```"]
    return ["```bash", f"mtbranch validate --trunk {trunk} --branch .",
            f"mtbranch compose --trunk {trunk} --branch . -o composed/", predict, "```"]


def card_body(m: BranchManifest, heading: str = "#") -> str:
    """The card's Markdown under the header; ``heading`` is the level of its title (``##`` in a composed card)."""
    sub = heading + "#"
    labels = getattr(m.head, "labels", None)
    label_text = ", ".join(f"`{x}`" for x in labels) if labels else "one score (regression)"
    ref = m.trunk.reference or "the trunk it was trained on"
    description = m.description or f"An mtbranch task branch ({m.head.type}) owned by {m.owner or 'its team'}."
    return "\n".join([
        f"{heading} {m.name} {m.version}", "", description, "",
        f"{sub} Model details", "",
        f"- task: {PIPELINE_TAGS.get(m.head.type, m.head.type)} (head `{m.head.type}`), "
        f"input: {m.tokenizer.input_signature} text, up to {m.tokenizer.max_length} tokens",
        f"- labels: {label_text}",
        f"- owner: {m.owner or 'not stated'}; licence: {_license(m)}",
        f"- trunk: {ref} ({m.trunk.structure.model_type}, {m.trunk.num_layers} layers), fingerprint at depth "
        f"{m.attach_depth}: `{m.trunk.fingerprint}`",
        f"- branch: {m.num_layers} layer(s) attached at depth {m.attach_depth}, {m.weights.num_parameters:,} "
        f"parameters ({m.weights.dtype}), weights sha256 `{m.weights.sha256}`", "",
        f"{sub} Intended use", "",
        f"Predicting `{m.name}` for texts like its training data, as one task of a model composed with mtbranch on "
        f"a trunk whose fingerprint at depth {m.attach_depth} equals the one above (`mtbranch validate` checks "
        "it). Not for other languages or domains than the data below without re-measuring; not a standalone "
        "model: it needs the trunk's hidden states.", "",
        f"{sub} How to use", "", *_usage(m, composed=heading != "#"), "",
        f"{sub} Evaluation", "", _metrics_table(m), "",
        f"{sub} Training provenance", "", _provenance(m), "",
    ])


def branch_card(m: BranchManifest) -> ModelCard:
    """The branch's model card (header + body), from its manifest alone."""
    from huggingface_hub import ModelCard

    return ModelCard(f"---\n{card_data(m).to_yaml()}\n---\n\n{card_body(m)}")


def card_text(m: BranchManifest) -> str:
    return str(branch_card(m))


def composed_card(manifests: list[BranchManifest], title: str) -> str:
    """A composed model's card: a header listing every branch's task and metrics, then one section per branch."""
    from huggingface_hub import ModelCard, ModelCardData

    datas = [card_data(m) for m in manifests]
    data = ModelCardData(
        model_name=title, library_name="mtbranch",
        tags=sorted({t for d in datas for t in (d.tags or [])}),
        eval_results=[r for d in datas for r in (d.eval_results or [])] or None,
        mtbranch={"branches": [mtbranch_facts(m) for m in manifests]},
    )
    body = "\n".join([f"# {title}", "", f"A model composed with mtbranch: {len(manifests)} task branch(es) on one "
                      "shared trunk. One section per branch follows.", "",
                      *(card_body(m, heading="##") for m in manifests)])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def is_card(text: str) -> bool:
    """Whether a README starts with a metadata header (the Hub's ``---`` YAML block): a plain README a team keeps
    next to its branch is not a card, and is not compared."""
    return text.lstrip().startswith("---")


def card_disagreements(text: str, m: BranchManifest) -> list[str]:
    """The header fields of a card (README.md text) that differ from the card the manifest gives; a header a
    team extended (``language:``, ``datasets:``...) agrees as long as the generated fields are unchanged."""
    from huggingface_hub import ModelCard

    if not is_card(text):
        return ["no metadata header (the '---' YAML block the Hub reads)"]
    try:
        found = ModelCard(text, ignore_metadata_errors=True).data.to_dict()
    except Exception as exc:  # malformed YAML: the whole header disagrees
        return [f"the metadata header does not parse ({type(exc).__name__})"]
    want = card_data(m).to_dict()
    if not found:
        return ["no metadata header (the '---' YAML block the Hub reads)"]
    diffs = []
    for key, value in want.items():
        if key == "mtbranch" and isinstance(found.get(key), dict):
            diffs += [f"mtbranch.{k}" for k, v in value.items() if found[key].get(k) != v]
        elif found.get(key) != value:
            diffs.append(key)
    return diffs


def load_manifest(branch_dir: Path) -> BranchManifest:
    """A branch directory's manifest, or an :class:`MtbranchError` naming the file and the fix."""
    from mtbranch.errors import MtbranchError
    from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest

    path = branch_dir / MANIFEST_NAME
    try:
        return read_manifest(path)
    except OSError as exc:
        raise MtbranchError(f"cannot read manifest.json: {exc.strerror or exc}", path=str(branch_dir),
                            hint="pass a branch directory (manifest.json + weights) or a composed artifact") from None
    except ValueError as exc:
        raise MtbranchError(f"manifest.json is invalid: {exc}", path=str(path),
                            hint=f"`mtbranch validate --branch {branch_dir}` lists every finding") from None


def read_card(branch_dir: Path) -> str | None:
    """README.md's text when it is a regular file of card size (never through a link: F001 reports those)."""
    path = branch_dir / CARD_NAME
    if path.is_symlink() or not path.is_file() or path.stat().st_size > CARD_MAX_BYTES:
        return None
    return path.read_text(encoding="utf-8", errors="replace")
