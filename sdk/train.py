"""Partial fine-tuning of a branch on cached trunk features, with transformers' Trainer.

A branch of ``n`` layers at depth ``d`` starts from trunk layers ``d+1..d+n`` (and the family's projection where
the trunk's checkpoint has one); the frozen trunk never runs during training: its features at ``d`` are computed
once (see :mod:`mtbranch.sdk.features`). Trainer gives DDP under ``torchrun`` / ``accelerate launch``, progress bars
and schedules. The dev set is evaluated every epoch; the best state is kept and exported as a branch
artifact whose manifest records metrics and provenance.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

import mtbranch
from mtbranch.branch.model import BranchModule, save_branch
from mtbranch.errors import MtbranchError, require_extra
from mtbranch.heads.registry import HeadType
from mtbranch.heads.training import HeadTraining
from mtbranch.sdk.data import Dataset, TextExample, TokenExample
from mtbranch.sdk.defaults import DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_PATIENCE, STILL_IMPROVING
from mtbranch.sdk.divergence import check_config, check_loss, check_weights, guard_callback
from mtbranch.sdk.features import (
    IGNORE_INDEX,
    Encoded,
    FeatureCache,
    FeatureStore,
    Quantize,
    encode_texts,
    encode_tokens,
)
from mtbranch.sdk.metrics import compute_metrics
from mtbranch.sdk.tasks import get_task
from mtbranch.spec.manifest import BranchManifest
from mtbranch.trunk.source import TrunkSource, resolve_trunk
from mtbranch.trunk.tokenizer import effective_max_length, load_tokenizer

log = logging.getLogger("mtbranch.sdk")
Task = str  # a trainable head type's name (mtbranch.sdk.tasks): the built-in ones or a plugin's


@dataclass
class TrainConfig:
    """Hyperparameters. ``head_lr`` (pooler, pooling, classifier) defaults to 10x ``lr``: the head starts
    from scratch while the layers start from pretrained weights."""

    epochs: float = DEFAULT_EPOCHS
    batch_size: int = 32
    lr: float = DEFAULT_LR
    head_lr: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    seed: int = 42
    max_length: int = 128
    dropout: float = 0.1
    pooling: Literal["cls", "mean", "attention"] = "cls"
    projection: bool = True
    quantize: Quantize = "none"
    cache_dir: str | None = None
    metric: str | None = None
    eval_batch_size: int = 64
    progress: bool = True
    max_train_examples: int | None = None  # subsample (seeded) for time-bound runs
    patience: int | None = DEFAULT_PATIENCE  # stop after this many evaluations without a better dev metric
    pair_mode: Literal["joint", "shared"] = "joint"  # pair data: texts encoded together, or each alone (manifest)

    def effective_head_lr(self) -> float:
        return self.head_lr if self.head_lr is not None else 10 * self.lr


@dataclass
class BranchInfo:
    name: str
    version: str = "0.1.0"
    owner: str | None = None
    description: str = ""
    tags: list[str] = field(default_factory=list)  # the manifest's tags (a request's "tags" routes by them)


@dataclass
class Prepared:
    """Tokenized data and trunk features, shared by every run of a sweep or a distillation."""

    source: TrunkSource
    tokenizer: Any
    task: Task
    labels: list[str] | None
    train: Encoded
    dev: Encoded
    train_data: Dataset
    dev_data: Dataset
    input_signature: Literal["single", "pair"]
    max_length: int
    train_features: dict[int, FeatureStore] = field(default_factory=dict)
    dev_features: dict[int, FeatureStore] = field(default_factory=dict)
    quantize: str = "none"
    dev_only_labels: list[str] = field(default_factory=list)  # dev labels training never saw: scored as misses
    pair_mode: Literal["joint", "shared"] = "joint"  # shared: train/dev hold each example's two texts apart

    @property
    def training(self) -> HeadTraining:
        """The task's training side: loss, metrics, label handling (looked up by the head type's name)."""
        return get_task(self.task).training

    @property
    def metric_labels(self) -> list[str] | None:
        """Label names for scoring: the head's labels, then the dev-only ones (ids past the head's range)."""
        return None if self.labels is None else [*self.labels, *self.dev_only_labels]


@dataclass
class TrainResult:
    module: BranchModule
    metrics: dict[str, float]
    metric: str
    history: list[dict[str, float]]
    dev_outputs: np.ndarray
    manifest: BranchManifest | None = None
    out_dir: Path | None = None
    seconds: float = 0.0
    depth: int = 0
    layers: int = 0
    best_epoch: float | None = None
    is_main: bool = True
    still_improving: bool = False  # the best dev epoch was the last one allowed

    @property
    def score(self) -> float:
        return self.metrics[self.metric]


def _source(trunk: str | os.PathLike[str] | TrunkSource) -> TrunkSource:
    return trunk if isinstance(trunk, TrunkSource) else resolve_trunk(os.fspath(trunk))


# -- data preparation -------------------------------------------------------------------------------------
def example_label(e: TextExample | TokenExample) -> Any:
    """What the task's ``label_names_in`` reads: a text's label, or a sentence's tags."""
    return e.tags if isinstance(e, TokenExample) else e.label


def label_names(task: Task, train: Dataset, given: Sequence[str] | None = None) -> list[str] | None:
    training = get_task(task).training
    if training.label_names_in is None:
        return None  # a head without label names (regression)
    seen = {str(n) for e in train.examples for n in training.label_names_in(example_label(e))}
    names = list(given) if given else list(training.order_labels(seen))
    missing = seen - set(names)
    if missing:
        raise MtbranchError(f"training labels {sorted(missing)[:5]} are not in the label list",
                            hint="list every label (a distilled teacher's labels must match the data: pass the same "
                                 "--label-names as for training), or leave the list out to take them from the data")
    if len(names) < 2:
        raise MtbranchError(f"need at least two labels, the training data has {names}")
    return names


def _check_examples(task: Task, data: Dataset, labels: list[str] | None, what: str) -> list[str]:
    """Raises on the wrong kind of data; returns the labels (or BIO tags) of ``data`` outside ``labels``,
    which is an error for training data and a warning for dev data (they are scored as misses)."""
    import collections

    training = get_task(task).training
    sample = data.examples[0]
    if training.data == "tokens":
        if not isinstance(sample, TokenExample):
            raise MtbranchError(f"{what} data holds texts, but {task} needs token/tag files")
    elif not isinstance(sample, TextExample):
        raise MtbranchError(f"{what} data holds token/tag sentences, but {task} needs a table of texts")
    if labels is None or training.label_names_in is None:
        return []
    known = set(labels)
    unseen: collections.Counter[str] = collections.Counter()
    for e in data.examples:
        unseen.update(t for t in map(str, training.label_names_in(example_label(e))) if t not in known)
    if unseen and what == "training":
        src = data.sources[0]["path"] if data.sources else what
        raise MtbranchError(f"training labels {sorted(unseen)[:5]} are not in the label list", path=src,
                            hint=f"labels: {', '.join(labels)}")
    for label, count in sorted(unseen.items()):
        log.warning("%s label %r (%d occurrence(s)) never appears in training: the head keeps the training "
                    "labels and these %s items are scored as misses", what, label, count, what)
    return sorted(unseen)


def subsample(data: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(data.examples):
        return data
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(data.examples), size=n, replace=False).tolist())
    return Dataset([data.examples[i] for i in keep], data.sources)


def prepare(trunk: str | os.PathLike[str] | TrunkSource, task: Task, train_data: Dataset, dev_data: Dataset,
            cfg: TrainConfig, depths: Sequence[int], *, labels: Sequence[str] | None = None) -> Prepared:
    """Tokenize both splits and compute their trunk features at every depth in one pass per split."""
    training = get_task(task).training  # an unknown task is an error naming the trainable ones
    require_extra("train", "training")  # before the trunk feature pass, not after it
    check_config(cfg)
    source = _source(trunk)
    for d in depths:
        if not 0 <= d <= source.num_layers:
            raise MtbranchError(f"depth {d} is outside the trunk's 0..{source.num_layers}", path=str(source.path))
    train_data = subsample(train_data, cfg.max_train_examples, cfg.seed)
    names = label_names(task, train_data, labels)
    _check_examples(task, train_data, names, "training")
    dev_only = _check_examples(task, dev_data, names, "dev")
    tok = load_tokenizer(source.path)
    if not getattr(tok, "is_fast", False):
        raise MtbranchError("the trunk's tokenizer has no fast version (needed for word offsets)",
                            path=str(source.path))
    max_length = effective_max_length(cfg.max_length, tok, source.structure)
    if max_length < cfg.max_length:
        log.warning("max_length %d is more than this trunk takes (tokenizer / position embeddings): using %d",
                    cfg.max_length, max_length)
        cfg.max_length = max_length
    l2i = {n: i for i, n in enumerate(names or [])}
    dev_l2i = l2i | {n: len(l2i) + i for i, n in enumerate(dev_only)}  # dev-only labels: ids past the head's
    pair = training.data == "table" and any(e.pair is not None for e in train_data.examples)
    if cfg.pair_mode == "shared" and not pair:
        raise MtbranchError(f"pair_mode 'shared' needs text-pair data (a table task with a pair text), not {task!r} "
                            f"on {'pairs' if pair else 'single texts'}",
                            hint="give the pair column (--pair-col), or leave --pair-mode joint")
    if training.data == "tokens":
        enc_train = encode_tokens(tok, train_data.examples, cfg.max_length, l2i)
        enc_dev = encode_tokens(tok, dev_data.examples, cfg.max_length, dev_l2i)
    else:
        encode = training.encode
        assert encode is not None  # checked with the record: table data needs it
        split = shared_halves if pair and cfg.pair_mode == "shared" else list
        enc_train = encode_texts(tok, split(train_data.examples), cfg.max_length, None,
                                 encode=lambda lab: encode(lab, l2i))
        enc_dev = encode_texts(tok, split(dev_data.examples), cfg.max_length, None,
                               encode=lambda lab: encode(lab, dev_l2i))
    prep = Prepared(source, tok, task, names, enc_train, enc_dev, train_data, dev_data,
                    "pair" if pair else "single", cfg.max_length, quantize=cfg.quantize, dev_only_labels=dev_only,
                    pair_mode=cfg.pair_mode if pair else "joint")
    cache = FeatureCache(cfg.cache_dir)
    pad = int(tok.pad_token_id or 0)
    with _main_process_first():
        prep.train_features = cache.get(source, enc_train, depths, kind=cfg.quantize, pad_token_id=pad,
                                        progress=cfg.progress)
        # dev features are never quantized: the metric must measure the branch, not a lossy dev set
        prep.dev_features = cache.get(source, enc_dev, depths, kind="none", pad_token_id=pad,
                                      progress=cfg.progress)
    return prep


def shared_halves(examples: Sequence[Any]) -> list[Any]:
    """A ``shared`` pair branch's inputs: every first text alone, then every pair text alone (row i and N+i)."""
    return ([dataclasses.replace(e, pair=None) for e in examples]
            + [dataclasses.replace(e, text=e.pair or "", pair=None) for e in examples])


class _main_process_first:
    """Under torchrun, rank 0 fills an on-disk cache before the other ranks read it."""

    def __enter__(self) -> None:
        self._ctx = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            self._ctx = PartialState().main_process_first()
            self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


# -- the branch module and its initialisation -----------------------------------------------------------
def head_spec(task: Task, labels: list[str] | None, dropout: float) -> Any:
    return get_task(task).training.make_spec(labels, dropout)


def new_branch(prep: Prepared, depth: int, layers: int, cfg: TrainConfig, info: BranchInfo,
               init_state: dict[str, torch.Tensor] | None = None) -> BranchModule:
    """The branch to train: its manifest (:func:`mtbranch.branch.factory.branch_manifest`), started from the
    trunk (:func:`mtbranch.branch.factory.init_from_trunk`) or from ``init_state`` (a distillation's teacher
    or an earlier branch)."""
    from mtbranch.branch.factory import branch_manifest, init_from_trunk
    from mtbranch.plugins.manager import get_plugin_manager

    src = prep.source
    if depth + layers > src.num_layers:
        raise MtbranchError(f"a branch of {layers} layer(s) at depth {depth} needs trunk layers up to "
                            f"{depth + layers}, the trunk has {src.num_layers}",
                            hint="use fewer layers or a lower depth: depth + layers <= trunk layers")
    manifest = branch_manifest(src, prep.tokenizer, name=info.name, version=info.version, owner=info.owner,
                               description=info.description, attach_depth=depth, num_layers=layers,
                               head=head_spec(prep.task, prep.labels, cfg.dropout).model_dump(), pooling=cfg.pooling,
                               projection=cfg.projection, max_length=prep.max_length,
                               input_signature=prep.input_signature, pair_mode=prep.pair_mode,
                               tags=list(info.tags))
    head_type: HeadType = get_plugin_manager().head_type(manifest.head.type)
    module = BranchModule(manifest, head_type)
    if init_state is None:
        init_from_trunk(module, src)
    else:
        own = module.state_dict()
        module.load_state_dict({k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape},
                               strict=False)
    return module


# -- Trainer plumbing -----------------------------------------------------------------------------------
@dataclass
class DistillSpec:
    alpha: float = 0.5  # weight of the soft-target loss
    temperature: float = 2.0


class TrainingModel(nn.Module):
    """Branch + task loss (+ distillation loss when the batch carries teacher outputs)."""

    def __init__(self, branch: BranchModule, task: Task, distill: DistillSpec | None = None) -> None:
        super().__init__()
        self.branch = branch
        self.task = task
        self.task_training = get_task(task).training  # not `training`: nn.Module's train/eval flag
        self.distill = distill

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                teacher: torch.Tensor | None = None, features_b: torch.Tensor | None = None,
                attention_mask_b: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if features_b is not None:  # a shared pair branch: each text's features apart
            out = self.branch.pair_forward(features, attention_mask, features_b, attention_mask_b)
        else:
            out = self.branch(features, attention_mask)
        result = {"logits": out}
        if labels is None:
            return result
        loss = self.task_training.loss(out, labels)
        if teacher is not None and self.distill is not None:
            soft = self.task_training.soft_loss(out, teacher, labels, self.distill.temperature)
            loss = self.distill.alpha * soft + (1 - self.distill.alpha) * loss
        result["loss"] = loss
        return result


def task_loss(task: str, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task's hard-label loss (its head type's ``training.loss``)."""
    return get_task(task).training.loss(out, labels)


def soft_loss(task: str, out: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
              temperature: float) -> torch.Tensor:
    """The task's soft-target (distillation) loss at temperature T (its head type's ``training.soft_loss``)."""
    return get_task(task).training.soft_loss(out, teacher, labels, temperature)


class FeatureDataset(torch.utils.data.Dataset):
    def __init__(self, store: FeatureStore, labels: list[Any], teacher: list[np.ndarray] | None = None) -> None:
        self.store, self.labels, self.teacher = store, labels, teacher

    def __len__(self) -> int:
        return len(self.store)

    def lengths(self) -> list[int]:
        return self.store.lengths()

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"features": self.store[i], "labels": self.labels[i]}
        if self.teacher is not None:
            item["teacher"] = self.teacher[i]
        return item


class PairFeatureDataset(FeatureDataset):
    """A ``shared`` pair branch's examples: row i of the store is the first text, row N+i its pair text."""

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> list[int]:
        n = len(self.labels)
        return [self.store.length(i) + self.store.length(n + i) for i in range(n)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.store[i], "features_b": self.store[len(self.labels) + i], "labels": self.labels[i]}


def _padded_features(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(r.shape[0] for r in rows)
    feats = torch.zeros(len(rows), width, rows[0].shape[1])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for j, r in enumerate(rows):
        feats[j, : r.shape[0]] = r
        mask[j, : r.shape[0]] = 1
    return feats, mask


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad features to the longest example in the batch; the mask marks real tokens."""
    feats, mask = _padded_features([it["features"] for it in items])
    width = feats.shape[1]
    batch = {"features": feats, "attention_mask": mask}
    if "features_b" in items[0]:  # a shared pair branch's second texts
        batch["features_b"], batch["attention_mask_b"] = _padded_features([it["features_b"] for it in items])
    first = items[0]["labels"]  # a target as the task's encode gives it (see mtbranch.heads.training)
    if isinstance(first, list):  # one class id per token
        lab = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for j, it in enumerate(items):
            lab[j, : len(it["labels"])] = torch.tensor(it["labels"])
        batch["labels"] = lab
    elif isinstance(first, float):
        batch["labels"] = torch.tensor([[it["labels"]] for it in items], dtype=torch.float32)
    elif isinstance(first, tuple | np.ndarray):  # a vector of floats per example (e.g. multi-hot labels)
        batch["labels"] = torch.tensor(np.asarray([it["labels"] for it in items], dtype=np.float32))
    else:
        batch["labels"] = torch.tensor([it["labels"] for it in items], dtype=torch.long)
    if "teacher" in items[0]:
        t0 = items[0]["teacher"]
        if t0.ndim == 2:  # per token
            teach = torch.zeros(len(items), width, t0.shape[-1])
            for j, it in enumerate(items):
                teach[j, : it["teacher"].shape[0]] = torch.from_numpy(it["teacher"])
        else:
            teach = torch.from_numpy(np.stack([it["teacher"] for it in items]))
        batch["teacher"] = teach.float()
    return batch


def _trainer_class() -> type:
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class FeatureTrainer(Trainer):
        """Batches of similar length: unpadded features would otherwise be padded up to 4x on SST-2."""

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            ds: Any = train_dataset if train_dataset is not None else self.train_dataset  # a FeatureDataset
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=ds.lengths())

        def training_step(self, *args: Any, **kw: Any) -> torch.Tensor:
            loss = super().training_step(*args, **kw)
            check_loss(loss, self.state)  # Trainer would average a NaN step loss away and go on
            return loss

    return FeatureTrainer


def _better(training: HeadTraining, metric: str, new: float, old: float) -> bool:
    return training.better(metric, new, old)


def _best_keeper(metric: str, history: list[dict[str, float]], best: dict[str, Any], patience: int | None,
                 training: HeadTraining) -> Any:
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):
        """Keep the best dev state in memory: no checkpoint files, the best epoch is what gets exported."""

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        model: Any = None, **kw: Any) -> None:
            if not metrics or f"eval_{metric}" not in metrics:
                return
            row = {"epoch": float(state.epoch or 0)} | {k[5:]: float(v) for k, v in metrics.items()
                                                       if k.startswith("eval_") and isinstance(v, int | float)}
            history.append(row)
            value = metrics[f"eval_{metric}"]
            if "value" not in best or _better(training, metric, value, best["value"]):
                inner = getattr(model, "module", model)
                best["value"] = value
                best["epoch"] = row["epoch"]
                best["evals_since"] = 0
                best["state"] = {k: v.detach().clone() for k, v in inner.branch.state_dict().items()}
            else:
                best["evals_since"] = best.get("evals_since", 0) + 1
                if patience is not None and best["evals_since"] >= patience:  # early stopping
                    control.should_training_stop = True

    return KeepBest()


def _epoch_lines(trainer: Any, metric: str, epochs: float, training: HeadTraining) -> None:
    """One readable line per epoch on stderr (train loss, dev metrics, best so far) instead of Trainer's raw
    log dicts (numbers as strings); the progress bar stays."""
    import sys

    from tqdm.auto import tqdm
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, *a: Any, **kw: Any) -> None:
            pass

    class EpochLines(TrainerCallback):
        def __init__(self) -> None:
            self.loss: float | None = None
            self.best: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kw: Any) -> None:
            if not metrics or not state.is_world_process_zero:
                return
            value = metrics.get(f"eval_{metric}")
            best = value is not None and (self.best is None or _better(training, metric, value, self.best))
            if best:
                self.best = value
            dev = "  ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items()
                            if k.startswith("eval_") and k[5:] in training.metrics and isinstance(v, int | float))
            loss = f"train loss {self.loss:.4f}  " if self.loss is not None else ""
            tqdm.write(f"epoch {float(state.epoch or 0):g}/{epochs:g}  {loss}dev {dev}" + ("  (best)" if best else ""),
                       file=sys.stderr)

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress)
    trainer.add_callback(EpochLines())


def _param_groups(branch: BranchModule, cfg: TrainConfig) -> list[dict[str, Any]]:
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in branch.named_parameters():
        if not p.requires_grad:  # a family's frozen context copy (DeBERTa's relative embeddings)
            continue
        is_layer = name.startswith("layers.")
        no_decay = name.endswith("bias") or "LayerNorm" in name or name.endswith("query")
        groups.setdefault((is_layer, no_decay), []).append(p)
    return [{"params": ps, "lr": cfg.lr if is_layer else cfg.effective_head_lr(),
             "weight_decay": 0.0 if no_decay else cfg.weight_decay}
            for (is_layer, no_decay), ps in groups.items()]


def _training_args(cfg: TrainConfig, output_dir: str, metric: str) -> Any:
    from transformers import TrainingArguments

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return TrainingArguments(
        output_dir=output_dir, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="linear", eval_strategy="epoch", save_strategy="no",
        logging_strategy="epoch", report_to=[], seed=cfg.seed, data_seed=cfg.seed,
        disable_tqdm=not cfg.progress, remove_unused_columns=False, label_names=["labels"],
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        ddp_backend=("gloo" if not torch.cuda.is_available() else "nccl") if distributed else None,
        include_for_metrics=[], eval_do_concat_batches=True,
    )


def fit(prep: Prepared, depth: int, layers: int, cfg: TrainConfig, info: BranchInfo, *,
        out_dir: str | os.PathLike[str] | None = None, init_state: dict[str, torch.Tensor] | None = None,
        teacher_outputs: list[np.ndarray] | None = None, distill: DistillSpec | None = None,
        extra_training: dict[str, Any] | None = None) -> TrainResult:
    """Train one branch on prepared features and (on the main process) export it to ``out_dir``."""
    from transformers import set_seed

    training = prep.training
    metric = cfg.metric or training.default_metric
    if metric not in training.metrics:
        raise MtbranchError(f"metric {metric!r} does not apply to {prep.task}",
                            hint=f"choose one of: {', '.join(training.metrics)}")
    if depth not in prep.train_features:
        raise MtbranchError(f"no trunk features at depth {depth} were prepared")
    set_seed(cfg.seed)
    branch = new_branch(prep, depth, layers, cfg, info, init_state)
    model = TrainingModel(branch, prep.task, distill)
    if prep.pair_mode == "shared":
        if teacher_outputs is not None:
            raise MtbranchError("distilling into a pair_mode 'shared' branch is not supported",
                                hint="distill with pair_mode 'joint'")
        n_train, n_dev = len(prep.train) // 2, len(prep.dev) // 2  # each example's two texts, apart
        train_ds: FeatureDataset = PairFeatureDataset(prep.train_features[depth], prep.train.labels[:n_train])
        dev_ds: FeatureDataset = PairFeatureDataset(prep.dev_features[depth], prep.dev.labels[:n_dev])
    else:
        train_ds = FeatureDataset(prep.train_features[depth], prep.train.labels, teacher_outputs)
        dev_ds = FeatureDataset(prep.dev_features[depth], prep.dev.labels)
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {}
    names = prep.metric_labels

    def metrics_fn(p: Any) -> dict[str, float]:
        preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        return compute_metrics(prep.task, np.asarray(preds), np.asarray(p.label_ids), names)

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mtbranch-train-") as tmp:
        args = _training_args(cfg, tmp, metric)
        optimizer = torch.optim.AdamW(_param_groups(branch, cfg))
        trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                                   data_collator=collate, compute_metrics=metrics_fn,
                                   callbacks=[guard_callback(),
                                              _best_keeper(metric, history, best, cfg.patience, training)],
                                   optimizers=(optimizer, None))
        _epoch_lines(trainer, metric, cfg.epochs, training)
        trainer.train()
        if "state" in best:
            branch.load_state_dict(best["state"])
        pred = trainer.predict(dev_ds)
        is_main = trainer.is_world_process_zero()
    seconds = time.time() - started
    improving = _warn_if_still_improving(history, best.get("epoch"), cfg.epochs)
    outputs = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    dev_metrics = {k[5:]: float(v) for k, v in pred.metrics.items()
                   if k.startswith("test_") and k[5:] in training.metrics}
    branch.eval()
    result = TrainResult(branch, dev_metrics, metric, history, np.asarray(outputs), seconds=seconds,
                         depth=depth, layers=layers, best_epoch=best.get("epoch"), is_main=is_main,
                         still_improving=improving)
    if out_dir is not None:
        export(prep, result, cfg, out_dir, extra_training)
    return result


def _warn_if_still_improving(history: list[dict[str, float]], best_epoch: float | None, ceiling: float) -> bool:
    """Warns (and says) when the best dev epoch was the last one allowed: the branch had not stopped learning."""
    if best_epoch is None or len(history) < 2 or best_epoch < history[-1]["epoch"]:
        return False
    if history[-1]["epoch"] < ceiling - 1e-6:  # stopped before the ceiling for another reason
        return False
    log.warning("the best dev epoch is the last one (%g of %g): %s", best_epoch, ceiling, STILL_IMPROVING)
    return True


def export(prep: Prepared, result: TrainResult, cfg: TrainConfig, out_dir: str | os.PathLike[str],
           extra_training: dict[str, Any] | None = None) -> BranchManifest | None:
    """Write the branch artifact with its dev metrics and provenance (main process only)."""
    if not result.is_main:
        return None
    check_weights(result.module, "the state to export")  # the state kept as best must be finite too
    training = provenance(prep, result.depth, result.layers, cfg, result.metric, result.metrics,
                          result.best_epoch, result.seconds)
    training.update(extra_training or {})
    branch = result.module
    branch.manifest = branch.manifest.model_copy(update={
        "metrics": {f"dev_{k}": round(v, 6) for k, v in result.metrics.items()}, "training": training})
    result.manifest = save_branch(branch, out_dir)
    result.out_dir = Path(out_dir)
    return result.manifest


def provenance(prep: Prepared, depth: int, layers: int, cfg: TrainConfig, metric: str,
               dev_metrics: dict[str, float], best_epoch: float | None, seconds: float) -> dict[str, Any]:
    import transformers

    return {
        "task": prep.task,
        "data": {"train": prep.train_data.sources, "dev": prep.dev_data.sources,
                 "train_examples": len(prep.train_data.examples), "dev_examples": len(prep.dev_data.examples)},
        "trunk": {"reference": prep.source.reference, "num_layers": prep.source.num_layers},
        "attach_depth": depth, "num_layers": layers,
        "init": f"trunk layers {depth + 1}..{depth + layers}" if layers else "none (feature-based)",
        "hyperparameters": {k: v for k, v in asdict(cfg).items() if k not in ("progress", "cache_dir")}
        | {"head_lr": cfg.effective_head_lr()},
        "seed": cfg.seed, "metric": metric, "dev_metric": dev_metrics.get(metric),
        "best_epoch": best_epoch, "train_seconds": round(seconds, 1),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "versions": {"mtbranch": mtbranch.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
    }


def train(trunk: str | os.PathLike[str] | TrunkSource, task: Task, train_data: Dataset, dev_data: Dataset, *,
          layers: int = 2, depth: int | None = None, cfg: TrainConfig | None = None,
          info: BranchInfo | None = None,
          out_dir: str | os.PathLike[str] | None = None, labels: Sequence[str] | None = None) -> TrainResult:
    """Train a branch of ``layers`` layers at ``depth`` (default: the top ``layers`` of the trunk)."""
    cfg = cfg or TrainConfig()
    info = info or BranchInfo(name="branch")
    source = _source(trunk)
    depth = source.num_layers - layers if depth is None else depth
    if depth < 0 or layers < 0 or depth + layers > source.num_layers:
        raise MtbranchError(f"a branch of {layers} layer(s) at depth {depth} does not fit a "
                            f"{source.num_layers}-layer trunk", hint="need 0 <= depth and depth + layers <= "
                                                                     f"{source.num_layers}")
    prep = prepare(source, task, train_data, dev_data, cfg, [depth], labels=labels)
    return fit(prep, depth, layers, cfg, info, out_dir=out_dir)
