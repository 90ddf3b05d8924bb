"""``mtbranch migrate``: move branches to a new trunk with no labels, the teacher's outputs as the only targets.

For each teacher branch (from a composed artifact, a branch directory on its trunk, or a fine-tuned transformers
checkpoint imported as a branch: consolidation):

1. **teacher outputs**, computed once and cached in ``OUT/.cache``: class logits, regression values, or per-WORD
   tag logits for token tasks (a word's first sub-token under the teacher's tokenizer; the student is trained on
   its own first sub-token of the same word, so the two tokenizers may differ);
2. **a student on the new trunk**: the SDK's distillation (:func:`mtbranch.sdk.train.fit` with teacher outputs,
   soft targets only), for each L in a layer range at depth ``trunk layers - L`` as ``build`` sweeps, from one
   trunk feature pass;
3. **selection without labels**: the teacher's outputs on held-out unlabelled texts are the dev set, so the
   dev metric is agreement with the teacher (the task's default metric: accuracy for classification, Pearson for
   regression, word-tag entity F1 for tagging, a plugin head type's own), and L is picked from it by ``build``'s
   rule; ``dev`` data gives the real metric beside;
4. **export** to ``OUT/branches/<name>`` bound to the new trunk, version bumped, with the migration's
   provenance (teacher sha256, texts sha256, agreement) in the manifest.

``OUT/migrate-state.json`` records every finished branch: a stopped run, started again, skips them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtbranch.errors import MtbranchError
from mtbranch.io.atomic import write_bytes_atomic, write_text_atomic
from mtbranch.io.files import sha256_file
from mtbranch.sdk.data import Dataset, TextExample, TokenExample
from mtbranch.sdk.metrics import IGNORE_INDEX
from mtbranch.sdk.tasks import Task, get_task
from mtbranch.spec.manifest import MANIFEST_NAME, BranchManifest, read_manifest

STATE_NAME = "migrate-state.json"
REPORT_NAME = "migrate-report.json"
STATE_FORMAT = "mtbranch-migrate-1"
UNKNOWN_LIMIT = 0.5  # more [UNK] than this among a sample's tokens: the tokenizer cannot read the texts
Event = Callable[[str], None]


@dataclass
class Teacher:
    """One branch to migrate: its directory and the trunk it was trained on."""

    name: str
    path: Path
    trunk: Any  # TrunkSource
    manifest: BranchManifest
    checkpoint: dict[str, str] | None = None  # consolidation: the transformers checkpoint it was imported from


@dataclass
class MigrateOptions:
    """How students are trained and chosen. Training defaults are ``build``'s (epochs 8, patience 2, lr 3e-4)."""

    layers: int | None = None  # a fixed L; None: every L in min_layers..max_layers, chosen by ``rule``
    min_layers: int = 1
    max_layers: int | None = None  # default: the teacher's layers, at most the new trunk's
    rule: str = "within:1"
    holdout: float = 0.1
    max_texts: int | None = None
    max_length: int | None = None  # default: the teacher's
    temperature: float = 2.0
    alpha: float | None = None  # soft-target weight; default 1.0 (teacher only), 0.5 when gold labels are mixed in
    epochs: float = 8.0
    patience: int | None = 2
    lr: float = 3e-4
    batch_size: int = 32
    seed: int = 42
    progress: bool = True
    restart: bool = False
    speed_texts: int = 256  # texts timed through the old and the new composed model (0: no timing)

    def digest(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("progress", "restart", "speed_texts")}


@dataclass
class MigrationResult:
    out: Path
    branches: list[dict[str, Any]] = field(default_factory=list)
    speed: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "branches": self.branches, "speed": self.speed}


# -- teachers ---------------------------------------------------------------------------------------------
@dataclass
class CheckpointOptions:
    """A fine-tuned transformers checkpoint as the teacher (consolidation): what its config cannot say."""

    name: str | None = None  # default: the directory's name
    pair: bool = False  # the checkpoint reads text pairs
    max_length: int = 128


def find_teachers(teacher: str | os.PathLike[str], *, only: Sequence[str] = (), from_trunk: str | None = None,
                  checkpoint: CheckpointOptions | None = None) -> list[Teacher]:
    """The branches of a composed artifact (its own trunk), one branch directory (``from_trunk``, else the
    installed trunk its fingerprint fits), or a fine-tuned ``*ForSequenceClassification`` /
    ``*ForTokenClassification`` checkpoint, imported as a branch of all its layers on its own embeddings."""
    from mtbranch.composition.artifact import LOCK_NAME, read_lock
    from mtbranch.trunk.source import load_trunk_source

    root = Path(teacher)
    if not root.is_dir():
        raise MtbranchError("the teacher does not exist or is not a directory", path=str(root),
                            hint="pass a composed artifact (mtbranch compose -o DIR), a branch directory or a "
                                 "fine-tuned transformers checkpoint")
    if not (root / LOCK_NAME).is_file() and not (root / MANIFEST_NAME).is_file() and _is_checkpoint(root):
        return [_checkpoint_teacher(root, checkpoint or CheckpointOptions())]
    if (root / LOCK_NAME).is_file():
        lock = read_lock(root)
        source = load_trunk_source(root / "trunk", reference=lock.trunk.reference)
        names = lock.names
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise MtbranchError(f"--only {', '.join(unknown)}: no such branch in the composed artifact",
                                path=str(root / LOCK_NAME), hint=f"branches: {', '.join(names)}")
        return [_teacher(root / "branches" / n, source) for n in names if not only or n in only]
    if (root / MANIFEST_NAME).is_file():
        m = _manifest(root)
        if only and m.name not in only:
            raise MtbranchError(f"--only {', '.join(only)}: the teacher branch is {m.name!r}", path=str(root))
        return [_teacher(root, _branch_trunk(root, from_trunk))]
    raise MtbranchError(f"neither {LOCK_NAME}, {MANIFEST_NAME} nor a classification checkpoint's config.json here",
                        path=str(root), hint="pass a composed artifact (mtbranch compose -o DIR), a branch directory "
                                             "(manifest.json + weights) or a *ForSequenceClassification / "
                                             "*ForTokenClassification checkpoint (config.json + model.safetensors)")


def _is_checkpoint(root: Path) -> bool:
    try:
        arch = (json.loads((root / "config.json").read_text(encoding="utf-8")).get("architectures") or [""])[0]
    except (OSError, ValueError, AttributeError):
        return False
    return str(arch).endswith(("ForSequenceClassification", "ForTokenClassification"))


def _checkpoint_teacher(root: Path, opts: CheckpointOptions) -> Teacher:
    """Import the checkpoint once (cached by its weights' sha256) as a depth-0 branch of every layer."""
    import re

    from mtbranch.branch.import_hf import import_hf
    from mtbranch.spec.manifest import NAME_RE
    from mtbranch.trunk.fingerprint import cache_dir
    from mtbranch.trunk.source import WEIGHTS_NAME, load_trunk_source

    name = opts.name or re.sub(r"[^a-z0-9_-]+", "-", root.resolve().name.lower()).strip("-_") or "branch"
    if not NAME_RE.fullmatch(name):
        raise MtbranchError(f"{name!r} is not a branch name", path=str(root),
                            hint="give --name (lower case letters, digits, - and _)")
    source = load_trunk_source(root)  # the checkpoint's own embeddings and layers are the teacher's trunk
    weights = root / WEIGHTS_NAME
    weights_sha = sha256_file(weights)
    key = hashlib.sha256(json.dumps([weights_sha, name, opts.pair, opts.max_length]).encode()).hexdigest()
    out = cache_dir() / "migrate-imports" / key[:24]
    if not (out / MANIFEST_NAME).is_file():
        import_hf(root, source, num_layers=source.num_layers, name=name, out=out, max_length=opts.max_length,
                  input_signature="pair" if opts.pair else "single")
    t = _teacher(out, source)
    t.checkpoint = {"path": str(root.resolve()), "sha256": weights_sha,
                    "architecture": str(json.loads((root / "config.json").read_text())["architectures"][0])}
    return t


def _manifest(path: Path) -> BranchManifest:
    try:
        return read_manifest(path / MANIFEST_NAME)
    except ValueError as exc:
        raise MtbranchError(f"invalid branch manifest: {exc}", path=str(path / MANIFEST_NAME)) from None


def _teacher(path: Path, source: Any) -> Teacher:
    m = _manifest(path)
    if m.attach_depth >= len(source.fingerprints) or source.fingerprints[m.attach_depth] != m.trunk.fingerprint:
        raise MtbranchError(f"branch {m.name!r} does not fit the teacher's trunk (fingerprint at depth "
                            f"{m.attach_depth} differs)", path=str(path / MANIFEST_NAME),
                            hint="pass --from-trunk with the trunk the branch was trained on")
    return Teacher(m.name, path, source, m)


def _branch_trunk(path: Path, ref: str | None) -> Any:
    from mtbranch.plugins.manager import get_plugin_manager
    from mtbranch.trunk.choose import choose_trunk

    return choose_trunk(ref, [(path, path.name)], get_plugin_manager(), required=True)


# -- texts ------------------------------------------------------------------------------------------------
def read_texts(path: str | os.PathLike[str], encoding: str = "utf-8-sig") -> list[str]:
    """Non-blank lines of a text file (a tab separates a pair's two texts). A byte the encoding cannot
    decode, a NUL (UTF-16) or a file with no text is an error naming the file and line."""
    from mtbranch.sdk.data import DataError, _lines, _open

    p = Path(path)
    with _open(p, encoding) as fh:
        lines = [line.rstrip("\r\n") for _, line in _lines(fh, p, encoding)]
    texts = [t for t in lines if t.strip()]
    if not texts:
        raise DataError("no texts: the file is empty or holds only blank lines", path=p,
                        hint="give a UTF-8 file with one text per line (text<TAB>second text for pair tasks)")
    return texts


def texts_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def _task(m: BranchManifest) -> Task:
    return get_task(m.head.type)


def _tokens(m: BranchManifest) -> bool:
    """The branch's task reads token/tag data (its outputs are per token)."""
    return _task(m).training.data == "tokens"


def examples_for(m: BranchManifest, texts: list[str], where: str) -> list[Any]:
    """Unlabelled examples in the branch's input form: texts, (text, pair) from tab-separated lines, or the
    whitespace words of each text for token tasks."""
    if _tokens(m):
        return [TokenExample(t.split("\t")[0].split(), []) for t in texts]
    if m.tokenizer.input_signature == "pair":
        out = []
        for i, t in enumerate(texts):
            a, sep, b = t.partition("\t")
            if not sep or not a.strip() or not b.strip():
                raise MtbranchError(f"text {i + 1} has no second text: branch {m.name!r} takes text pairs",
                                    path=where, hint="pair tasks read lines 'first text<TAB>second text'; give "
                                                     f"this branch its own file with --texts {m.name}=FILE")
            out.append(TextExample(a, b))
        return out
    return [TextExample(t.split("\t")[0]) for t in texts]


def check_readable(tok: Any, examples: list[Any], who: str, where: str, sample: int = 200) -> None:
    """Refuse texts the tokenizer mostly cannot read (over half its tokens unknown: another script or vocabulary)."""
    unk = getattr(tok, "unk_token_id", None)
    if unk is None:
        return
    ids: list[int] = []
    for e in examples[:sample]:
        text = " ".join(e.tokens) if isinstance(e, TokenExample) else e.text
        ids += tok(text, add_special_tokens=False)["input_ids"]
    share = ids.count(unk) / max(1, len(ids))
    if share > UNKNOWN_LIMIT:
        raise MtbranchError(f"{who}'s tokenizer cannot read these texts: {100 * share:.0f}% of their tokens are "
                            f"unknown ({tok.unk_token})", path=where,
                            hint="give texts in the language and script the branch was trained on (or check the "
                                 "file's encoding)")


def keep_words(examples: list[Any], tokenizers: Sequence[Any]) -> list[Any]:
    """Drop words some tokenizer turns into no token at all (e.g. a lone control character): every kept word has
    a first sub-token under both the teacher's and the student's tokenizer, so word k matches word k."""
    empty: dict[str, bool] = {}

    def has_tokens(w: str) -> bool:
        if w not in empty:
            empty[w] = all(len(t.tokenize(w)) > 0 for t in tokenizers)
        return empty[w]

    out = [TokenExample([w for w in e.tokens if has_tokens(w)], []) for e in examples]
    return [e for e in out if e.tokens]


def gold_examples(m: BranchManifest, gold: Dataset, tokenizers: Sequence[Any]) -> list[Any]:
    """Labelled examples mixed in (``--train``): token examples keep the words (and tags) both tokenizers read."""
    if not _tokens(m):
        return list(gold.examples)
    out = []
    for e in gold.examples:
        keep = [i for i, w in enumerate(e.tokens) if all(len(t.tokenize(w)) > 0 for t in tokenizers)]
        if keep:
            out.append(TokenExample([e.tokens[i] for i in keep], [e.tags[i] for i in keep]))
    return out


# -- teacher outputs --------------------------------------------------------------------------------------
def _dummy_labels(m: BranchManifest, examples: list[Any]) -> list[Any]:
    """Any label of the right form (what all-zero outputs stand for): prepare() needs labelled examples."""
    width = _spec(m).num_outputs
    zeros = [np.zeros((len(e.tokens), width) if isinstance(e, TokenExample) else width, dtype=np.float32)
             for e in examples]
    return pseudo_labelled(m, examples, zeros)


def _spec(m: BranchManifest) -> Any:
    """The head spec as its head type's own model (a plugin head's fields, e.g. its threshold)."""
    from mtbranch.heads.registry import typed_spec

    return typed_spec(_task(m).head_type, m.head)


def _label_names(m: BranchManifest) -> list[str] | None:
    return getattr(_spec(m), "labels", None)


def teacher_outputs(t: Teacher, examples: list[Any], *, max_length: int, cache_dir: Path, progress: bool
                    ) -> list[np.ndarray]:
    """The teacher's raw outputs per example: ``[classes]``, ``[1]`` or per word ``[words seen, tags]``."""
    from mtbranch.branch.model import load_branch
    from mtbranch.sdk.distill import branch_outputs
    from mtbranch.sdk.train import TrainConfig, prepare

    m = t.manifest
    data = Dataset(_dummy_labels(m, examples))
    cfg = TrainConfig(max_length=max_length, pooling=m.pooling, projection=m.projection, progress=progress,
                      cache_dir=str(cache_dir / "features"))
    prep = prepare(t.trunk, m.head.type, data, Dataset(data.examples[:1]), cfg, [m.attach_depth],
                   labels=_label_names(m))
    outs = branch_outputs(load_branch(t.path), prep, "train")
    if _tokens(m):  # the rows of each word's first sub-token, in word order
        outs = [o[np.flatnonzero(np.asarray(lab) != IGNORE_INDEX)] for o, lab in zip(outs, prep.train.labels,
                                                                                      strict=True)]
    return outs


def _save_outputs(path: Path, outs: list[np.ndarray]) -> None:
    lengths = np.asarray([o.shape[0] if o.ndim == 2 else 0 for o in outs], dtype=np.int64)
    flat = np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs]).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, flat=flat, lengths=lengths, token=np.asarray(outs[0].ndim == 2))
    write_bytes_atomic(path, buf.getvalue())


def _load_outputs(path: Path) -> list[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            flat, lengths, token = z["flat"], z["lengths"], bool(z["token"])
    except Exception as exc:  # a corrupt cache entry is never trusted
        raise MtbranchError(f"cannot read cached teacher outputs: {exc}", path=str(path),
                            hint="delete the file; it will be recomputed") from None
    if not token:
        return list(flat)
    ends = np.cumsum(lengths)
    return [flat[e - n:e] for n, e in zip(lengths.tolist(), ends.tolist(), strict=True)]


def cached_teacher_outputs(t: Teacher, examples: list[Any], texts_sha: str, *, max_length: int, cache_dir: Path,
                           progress: bool, on_event: Event) -> list[np.ndarray]:
    key = hashlib.sha256(json.dumps([STATE_FORMAT, t.manifest.weights.sha256, t.manifest.trunk.fingerprint,
                                     texts_sha, len(examples), max_length]).encode()).hexdigest()
    path = cache_dir / f"teacher-{t.name}-{key[:16]}.npz"
    if path.is_file():
        on_event(f"{t.name}: teacher outputs from the cache ({path.name})")
        return _load_outputs(path)
    on_event(f"{t.name}: teacher outputs over {len(examples)} texts (once; cached)")
    outs = teacher_outputs(t, examples, max_length=max_length, cache_dir=cache_dir, progress=progress)
    _save_outputs(path, outs)
    return outs


# -- student ----------------------------------------------------------------------------------------------
def pseudo_labelled(m: BranchManifest, examples: list[Any], outs: list[np.ndarray]) -> list[Any]:
    """What the teacher's outputs stand for (its task's ``pseudo_label``: the argmax class, the value, one tag per
    word...) as each example's label: the dev set's labels are what agreement scores."""
    spec, label_of = _spec(m), _task(m).training.pseudo_label
    return [TokenExample(e.tokens[: o.shape[0]], label_of(spec, o)) if isinstance(e, TokenExample)
            else replace(e, label=label_of(spec, o)) for e, o in zip(examples, outs, strict=True)]


def student_targets(task: str, encoded_labels: list[Any], outs: list[np.ndarray]) -> list[np.ndarray]:
    """Teacher outputs in the student's positions: per token, word k's row at the student's k-th labelled
    position (its first sub-token of word k)."""
    if get_task(task).training.data != "tokens":
        return outs
    aligned = []
    for lab, o in zip(encoded_labels, outs, strict=True):
        pos = np.flatnonzero(np.asarray(lab) != IGNORE_INDEX)
        row = np.zeros((len(lab), o.shape[-1]), dtype=np.float32)
        row[pos] = o[: len(pos)]
        aligned.append(row)
    return aligned


def split_holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n).tolist()
    k = max(1, round(n * fraction))
    if n - k < 1:
        raise MtbranchError(f"{n} text(s) cannot give both training and held-out texts",
                            hint="give more texts (hundreds at least)")
    return sorted(order[k:]), sorted(order[:k])


def bump_version(version: str) -> str:
    """A new trunk is a breaking change: the next major version (the next minor one before 1.0)."""
    from packaging.version import Version

    v = Version(version)
    return f"0.{v.minor + 1}.0" if v.major == 0 else f"{v.major + 1}.0.0"


def evaluate(branch_dir: Path, source: Any, dev: Dataset, max_length: int, cache_dir: Path,
             progress: bool) -> dict[str, float]:
    """The branch's metrics on a labelled dev set (on ``source``, the trunk it is bound to)."""
    from mtbranch.branch.model import load_branch
    from mtbranch.sdk.distill import _metrics_of, branch_outputs
    from mtbranch.sdk.metrics import compute_metrics
    from mtbranch.sdk.train import TrainConfig, prepare

    branch = load_branch(branch_dir)
    m = branch.manifest
    cfg = TrainConfig(max_length=max_length, pooling=m.pooling, projection=m.projection, progress=progress,
                      cache_dir=str(cache_dir / "features"))
    prep = prepare(source, m.head.type, Dataset(_dummy_labels(m, dev.examples[:1])), dev, cfg,
                   [m.attach_depth], labels=_label_names(m))
    prep.train_features.clear()
    return _metrics_of(prep, branch_outputs(branch, prep, "dev"), compute_metrics)


def preflight(t: Teacher, new: Any, texts: list[Path], opts: MigrateOptions, encoding: str
              ) -> tuple[list[Any], Any, Any, int]:
    """The branch's examples, both tokenizers and the max_length, after every check that needs no training: the
    texts fit the branch's input (pairs), the teacher's tokenizer reads them, the new trunk holds max_length."""
    from mtbranch.trunk.tokenizer import effective_max_length, load_tokenizer

    m = t.manifest
    where = ", ".join(str(p) for p in texts)
    raw = [line for p in texts for line in read_texts(p, encoding)]
    examples = examples_for(m, raw, where)
    if opts.max_texts is not None and len(examples) > opts.max_texts:
        keep = sorted(np.random.default_rng(opts.seed).choice(len(examples), opts.max_texts, replace=False).tolist())
        examples = [examples[i] for i in keep]
    teacher_tok, student_tok = load_tokenizer(t.trunk.path), load_tokenizer(new.path)
    check_readable(teacher_tok, examples, f"the teacher {m.name!r} (trunk {t.trunk.reference or t.trunk.path})",
                   where)
    max_length = opts.max_length or m.tokenizer.max_length
    fits = effective_max_length(max_length, student_tok, new.structure)
    if fits < max_length:
        raise MtbranchError(f"the new trunk takes at most {fits} tokens, the branch {m.name!r} reads "
                            f"{max_length} (tokenizer.max_length)", path=str(new.path / "config.json"),
                            hint=f"pass --max-length {fits} (or less) to migrate with shorter inputs")
    return examples, teacher_tok, student_tok, max_length


def migrate_branch(t: Teacher, new: Any, texts: list[Path], opts: MigrateOptions, out: Path, *,
                   encoding: str = "utf-8-sig", dev: Dataset | None = None, gold: Dataset | None = None,
                   on_event: Event = print) -> dict[str, Any]:
    """Migrate one branch; returns its report record (the branch is in ``out/branches/<name>``)."""
    from mtbranch.sdk.sweep import select_layers
    from mtbranch.sdk.train import BranchInfo, DistillSpec, TrainConfig, export, fit, prepare

    started = time.time()
    m = t.manifest
    task = m.head.type
    examples, teacher_tok, student_tok, max_length = preflight(t, new, texts, opts, encoding)
    if _tokens(m):
        examples = keep_words(examples, [teacher_tok, student_tok])
    cache_dir = out / ".cache"
    texts_sha = texts_digest(texts)
    outs = cached_teacher_outputs(t, examples, texts_sha, max_length=max_length, cache_dir=cache_dir,
                                  progress=opts.progress, on_event=on_event)
    data = pseudo_labelled(m, examples, outs)
    train_idx, hold_idx = split_holdout(len(data), opts.holdout, opts.seed)
    n = new.num_layers
    span = _layer_span(opts, m, n)
    metric = _task(m).training.default_metric  # agreement with the teacher: the task's own default metric
    cfg = TrainConfig(epochs=opts.epochs, patience=opts.patience, lr=opts.lr, batch_size=opts.batch_size,
                      seed=opts.seed, max_length=max_length, pooling=m.pooling, projection=m.projection,
                      metric=metric, cache_dir=str(cache_dir / "features"), progress=opts.progress)
    labels = _label_names(m)
    train_examples, train_outs = [data[i] for i in train_idx], [outs[i] for i in train_idx]
    sources = _sources(texts)
    alpha = 1.0 if opts.alpha is None and gold is None else (0.5 if opts.alpha is None else opts.alpha)
    if gold is not None:  # gold labels as the hard targets of their examples, the teacher's outputs as the soft ones
        g = gold_examples(m, gold, [teacher_tok, student_tok])
        g_sha = hashlib.sha256("".join(src["sha256"] for src in gold.sources).encode()).hexdigest()
        g_outs = cached_teacher_outputs(t, g, g_sha, max_length=max_length, cache_dir=cache_dir,
                                        progress=opts.progress, on_event=on_event)
        if _tokens(m):  # words the teacher's max_length cut off carry no target
            g = [TokenExample(e.tokens[: o.shape[0]], e.tags[: o.shape[0]]) for e, o in zip(g, g_outs, strict=True)]
        train_examples, train_outs = train_examples + g, train_outs + g_outs
        sources = sources + list(gold.sources)
    prep = prepare(new, task, Dataset(train_examples, sources),
                   Dataset([data[i] for i in hold_idx], _sources(texts)), cfg, [n - L for L in span], labels=labels)
    targets = student_targets(task, prep.train.labels, train_outs)
    info = BranchInfo(name=m.name, version=bump_version(m.version), owner=m.owner, description=m.description)
    results = {}
    for L in span:
        on_event(f"{m.name}: student L={L} at depth {n - L} on {len(train_examples)} texts, agreement on "
                 f"{len(hold_idx)}")
        results[L] = fit(prep, n - L, L, cfg, info, teacher_outputs=targets,
                         distill=DistillSpec(alpha=alpha, temperature=opts.temperature))
        on_event(f"{m.name}: L={L}: agreement {metric} {results[L].metrics[metric]:.4f}")
    chosen = select_layers({L: r.metrics[metric] for L, r in results.items()}, opts.rule)
    best = results[chosen]
    agreement = {"metric": metric, "value": best.metrics[metric], "holdout_texts": len(hold_idx),
                 "by_layers": {str(L): r.metrics[metric] for L, r in results.items()}, "rule": opts.rule}
    record: dict[str, Any] = {
        "name": m.name, "task": task, "version": {"teacher": m.version, "student": info.version},
        "teacher": {"path": str(t.path), "sha256": m.weights.sha256, "trunk": t.trunk.reference or str(t.trunk.path),
                    "attach_depth": m.attach_depth, "num_layers": m.num_layers}
        | ({"checkpoint": t.checkpoint} if t.checkpoint else {}),
        "student": {"attach_depth": n - chosen, "num_layers": chosen, "trunk": new.reference or str(new.path)},
        "texts": {"files": [str(p) for p in texts], "sha256": texts_sha, "used": len(examples),
                  "train": len(train_idx), "holdout": len(hold_idx)},
        "agreement": agreement, "alpha": alpha, "temperature": opts.temperature, "max_length": max_length,
    }
    if gold is not None:
        record["gold"] = {"files": gold.sources, "examples": len(train_examples) - len(train_idx)}
    branch_dir = out / "branches" / m.name
    best.metrics = {}  # the agreement is not a dev metric: it goes to the provenance (and dev_* below, when given)
    best.metric = metric
    export(prep, best, cfg, branch_dir, {"migration": record})
    if dev is not None:
        on_event(f"{m.name}: real dev metric of the teacher and the student")
        before = evaluate(t.path, t.trunk, dev, max_length, cache_dir, opts.progress)
        after = evaluate(branch_dir, new, dev, max_length, cache_dir, opts.progress)
        record["dev"] = {"metric": metric, "teacher": before[metric], "student": after[metric],
                         "ratio": after[metric] / before[metric] if before[metric] else None, "teacher_all": before,
                         "student_all": after, "examples": len(dev.examples)}
        best.metrics = after
        export(prep, best, cfg, branch_dir, {"migration": record})
    record["seconds"] = round(time.time() - started, 1)
    record["branch"] = str(branch_dir)
    return record


def _sources(texts: Sequence[Path]) -> list[dict[str, str]]:
    return [{"path": str(p), "sha256": sha256_file(p), "labels": "none (teacher outputs)"} for p in texts]


def _layer_span(opts: MigrateOptions, m: BranchManifest, n: int) -> list[int]:
    if opts.layers is not None:
        lo = hi = opts.layers
    else:
        lo, hi = opts.min_layers, opts.max_layers if opts.max_layers is not None else min(m.num_layers, n)
    if not 0 <= lo <= hi <= n:
        raise MtbranchError(f"student layers {lo}..{hi} do not fit the new trunk's {n} layers",
                            hint=f"use --layers / --min-layers / --max-layers between 0 and {n}")
    return list(range(lo, hi + 1))


# -- the run ----------------------------------------------------------------------------------------------
class _State:
    """``OUT/migrate-state.json``: the run's settings and every finished branch's record."""

    def __init__(self, out: Path, key: str, restart: bool) -> None:
        self.path = out / STATE_NAME
        self.key = key
        self.data: dict[str, Any] = {"format": STATE_FORMAT, "key": key, "branches": {}}
        if self.path.is_file() and not restart:
            try:
                old = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise MtbranchError(f"cannot read the migration state: {exc}", path=str(self.path),
                                    hint="start again with --restart (finished branches are redone)") from None
            if old.get("key") != key:
                raise MtbranchError("this output holds a migration with other settings (teacher, trunk, texts or "
                                    "options)", path=str(self.path),
                                    hint="use the same command to resume, a new -o, or --restart to start over")
            self.data = old

    def done(self, name: str, branch_dir: Path) -> dict[str, Any] | None:
        rec = self.data["branches"].get(name)
        return rec if rec is not None and (branch_dir / MANIFEST_NAME).is_file() else None

    def finish(self, name: str, record: dict[str, Any]) -> None:
        self.data["branches"][name] = record
        write_text_atomic(self.path, json.dumps(self.data, indent=2) + "\n")


def check_out_dir(out: Path, inputs: Sequence[Path]) -> Path:
    """OUT must be new, empty, or an earlier migration's output (which is resumed); never an input, a FIFO, a link
    or a place inside an artifact: the one output guard every writer uses (mtbranch.io.guard, kind "migrate")."""
    from mtbranch.io.guard import check_output

    return check_output(out, "migrate", inputs=list(inputs))


def migrate(teacher: str | os.PathLike[str], to_trunk: str, texts: dict[str | None, list[Path]],
            out: str | os.PathLike[str], *, only: Sequence[str] = (), from_trunk: str | None = None,
            options: MigrateOptions | None = None, dev: dict[str, Dataset] | None = None,
            encoding: str = "utf-8-sig", checkpoint: CheckpointOptions | None = None,
            gold: dict[str, Dataset] | None = None, on_event: Event = print) -> MigrationResult:
    """Migrate every teacher branch to ``to_trunk``. ``texts[None]``: texts for every branch; ``texts[name]``:
    that branch's own (used instead)."""
    from mtbranch.errors import require_extra
    from mtbranch.trunk.source import resolve_trunk

    require_extra("train", "mtbranch migrate")
    opts = options or MigrateOptions()
    root = Path(out)
    teachers = find_teachers(teacher, only=only, from_trunk=from_trunk, checkpoint=checkpoint)
    names = [t.name for t in teachers]
    for what, given in (("--texts", texts), ("--dev", dev), ("--train", gold)):
        unknown = sorted(k for k in (given or {}) if k is not None and k not in names)
        if unknown:
            raise MtbranchError(f"{what} {unknown[0]}=...: no branch {unknown[0]!r} among the teacher's",
                                hint=f"branches: {', '.join(names)}")
    per_branch = {t.name: texts.get(t.name) or texts.get(None) or [] for t in teachers}
    missing = [n for n, ps in per_branch.items() if not ps]
    if missing:
        raise MtbranchError(f"no texts for branch(es) {', '.join(missing)}",
                            hint="give --texts FILE (every branch) or --texts NAME=FILE")
    new = resolve_trunk(to_trunk)
    root = check_out_dir(root, [Path(teacher), *[p for ps in per_branch.values() for p in ps]])
    for t in teachers:  # every branch's inputs are checked before anything is written: a bad one fails fast
        preflight(t, new, per_branch[t.name], opts, encoding)
    key = hashlib.sha256(json.dumps({
        "format": STATE_FORMAT, "trunk": new.fingerprints[-1], "options": opts.digest(), "max_length": opts.max_length,
        "teachers": {t.name: t.manifest.weights.sha256 for t in teachers},
        "texts": {n: texts_digest(ps) for n, ps in per_branch.items()},
        "gold": {n: [src.get("sha256") for src in d.sources] for n, d in (gold or {}).items()}},
        sort_keys=True).encode()).hexdigest()
    root.mkdir(parents=True, exist_ok=True)
    state = _State(root, key, opts.restart)
    result = MigrationResult(root)
    started, spent = time.time(), list[float]()
    for i, t in enumerate(teachers):
        done = state.done(t.name, root / "branches" / t.name)
        if done is not None:
            on_event(f"[{i + 1}/{len(teachers)}] {t.name}: finished in an earlier run, kept")
            result.branches.append(done | {"resumed": True})
            continue
        eta = ""
        if spent:
            left = (len(teachers) - i) * (sum(spent) / len(spent))
            eta = f", about {_duration(left)} left"
        on_event(f"[{i + 1}/{len(teachers)}] {t.name} ({t.manifest.head.type}); {_duration(time.time() - started)} "
                 f"elapsed{eta}")
        t0 = time.time()
        record = migrate_branch(t, new, per_branch[t.name], opts, root, encoding=encoding,
                                dev=(dev or {}).get(t.name), gold=(gold or {}).get(t.name), on_event=on_event)
        spent.append(time.time() - t0)
        state.finish(t.name, record)
        result.branches.append(record)
    if opts.speed_texts > 0:
        on_event(f"timing the old and the new composed model on {opts.speed_texts} texts")
        sample = [line for p in per_branch[teachers[0].name] for line in read_texts(p, encoding)][: opts.speed_texts]
        result.speed = composed_speed(teachers[0].trunk, [t.path for t in teachers], new,
                                      [root / "branches" / t.name for t in teachers], sample)
    write_text_atomic(root / REPORT_NAME, json.dumps(result.to_json(), indent=2) + "\n")
    return result


def composed_speed(old_trunk: Any, old_dirs: Sequence[Path], new_trunk: Any, new_dirs: Sequence[Path],
                   lines: list[str], batch_size: int = 32, repeats: int = 3) -> dict[str, Any]:
    """Texts per second of the teacher's branches composed on the old trunk and the students on the new one, same
    texts, same process (``predict``: tokenization, the trunk once per input signature, every branch; a line's tab
    gives the pair). The two models alternate ``repeats`` times and the fastest pass counts, so a busy machine
    slows both alike."""
    from mtbranch.composition.artifact import compose

    texts = [line.split("\t")[0] for line in lines]
    pairs = [line.split("\t")[1] if "\t" in line else line for line in lines]
    models = {"old": (old_trunk, compose(old_trunk, [(Path(d), str(d)) for d in old_dirs])),
              "new": (new_trunk, compose(new_trunk, [(Path(d), str(d)) for d in new_dirs]))}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _, model in models.values():  # warm-up
        model.predict(texts[:batch_size], text_pairs=pairs[:batch_size], batch_size=batch_size)
    for _ in range(repeats):
        for label, (_, model) in models.items():
            t0 = time.perf_counter()
            model.predict(texts, text_pairs=pairs, batch_size=batch_size)
            times[label].append(time.perf_counter() - t0)
    out: dict[str, Any] = {"texts": len(texts), "batch_size": batch_size, "repeats": repeats}
    for label, (trunk, model) in models.items():
        seconds = min(times[label])
        out[label] = {"trunk": trunk.reference or str(trunk.path),
                      "trunk_layers_run": max(b.manifest.attach_depth for b in model.branches),
                      "branch_layers": sum(b.manifest.num_layers for b in model.branches),
                      "seconds": round(seconds, 3), "all_seconds": [round(x, 3) for x in times[label]],
                      "texts_per_second": round(len(texts) / seconds, 1)}
    out["speedup"] = round(out["new"]["texts_per_second"] / out["old"]["texts_per_second"], 2)
    return out


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
