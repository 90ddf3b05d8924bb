"""Knowledge distillation (paper §3.2). Loss = alpha * soft-target loss at temperature T (KL for
classification and per token, MSE for regression) + (1 - alpha) * hard-label loss.

Two set-ups:

* same depth, teacher initialisation (the default): a teacher branch of L layers at depth d teaches a student
  of l < L layers at the same depth, initialised from the teacher's bottom l layers, its pooling, projection
  and head;
* a deeper student (``student_depth`` > the teacher's depth): e.g. a fully fine-tuned model (depth 0, every
  layer trained) teaches a 2-layer branch at depth 4. The student starts from trunk layers d+1..d+l (as
  :func:`mtbranch.sdk.train.train` does) or from an existing branch of the same depth and layers
  (``init_dir``); it keeps the teacher's pooling, projection and max_length.

The teacher's outputs on the training set are computed once, from the cached features at the teacher's
depth (both depths are prepared in one trunk pass), not every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtbranch.branch.model import BranchModule, load_branch
from mtbranch.errors import MtbranchError
from mtbranch.sdk.data import Dataset
from mtbranch.sdk.metrics import IGNORE_INDEX
from mtbranch.sdk.tasks import get_task
from mtbranch.sdk.train import BranchInfo, DistillSpec, Prepared, TrainConfig, TrainResult, collate, fit, prepare
from mtbranch.sdk.train import FeatureDataset as _FeatureDataset
from mtbranch.spec.manifest import MANIFEST_NAME, BranchManifest
from mtbranch.trunk.source import TrunkSource, resolve_trunk


@dataclass
class DistillResult:
    teacher_metrics: dict[str, float]
    student: TrainResult
    metric: str

    @property
    def retained(self) -> float:
        """Student metric as a fraction of the teacher's."""
        t = self.teacher_metrics[self.metric]
        return self.student.metrics[self.metric] / t if t else float("nan")


def student_init_state(teacher: BranchModule, layers: int) -> dict[str, torch.Tensor]:
    """The teacher's bottom ``layers`` layers and everything above the layers (pooling, projection, head)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in teacher.state_dict().items():
        if k.startswith("layers."):
            if int(k.split(".")[1]) < layers:
                out[k] = v.clone()
        else:
            out[k] = v.clone()
    return out


@torch.inference_mode()
def branch_outputs(branch: BranchModule, prep: Prepared, split: str, batch_size: int = 64) -> list[np.ndarray]:
    """Per-example outputs of ``branch`` on cached features (unpadded for token tasks)."""
    depth = branch.manifest.attach_depth
    store = (prep.train_features if split == "train" else prep.dev_features)[depth]
    labels = prep.train.labels if split == "train" else prep.dev.labels
    ds = _FeatureDataset(store, labels)
    order = sorted(range(len(ds)), key=store.length)  # length-sorted batches: little padding
    out: list[np.ndarray | None] = [None] * len(ds)
    branch.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([ds[i] for i in idx])
        logits = branch(batch["features"], batch["attention_mask"])
        for j, i in enumerate(idx):
            row = logits[j]
            out[i] = (row[: store.length(i)] if row.ndim == 2 else row).float().numpy().copy()
    return out  # type: ignore[return-value]


def distill(trunk: str | os.PathLike[str] | TrunkSource, teacher_dir: str | os.PathLike[str],
            train_data: Dataset, dev_data: Dataset, *, student_layers: int, spec: DistillSpec | None = None,
            cfg: TrainConfig | None = None, info: BranchInfo | None = None,
            out_dir: str | os.PathLike[str] | None = None, student_depth: int | None = None,
            init_dir: str | os.PathLike[str] | None = None) -> DistillResult:
    """Distill the branch in ``teacher_dir`` into a student of ``student_layers`` layers.

    ``student_depth`` None (or the teacher's depth) without ``init_dir``: same depth, teacher initialisation.
    Otherwise the student sits at ``student_depth`` (>= the teacher's) and starts from the trunk layers above
    it, or from the branch in ``init_dir`` (same depth and layers).
    """
    spec = spec or DistillSpec()
    teacher = load_branch(teacher_dir)
    m = teacher.manifest
    if (student_depth is not None and student_depth != m.attach_depth) or init_dir is not None:
        return _distill_to_depth(trunk, teacher, Path(teacher_dir), train_data, dev_data,
                                 student_layers=student_layers,
                                 student_depth=m.attach_depth if student_depth is None else student_depth,
                                 init_dir=None if init_dir is None else Path(init_dir), spec=spec, cfg=cfg,
                                 info=info, out_dir=out_dir)
    if not 0 <= student_layers < m.num_layers:
        raise MtbranchError(f"the student needs fewer layers than the teacher's {m.num_layers}, "
                            f"got {student_layers}", path=str(teacher_dir))
    _trainable(m, str(teacher_dir))
    if not 0.0 <= spec.alpha <= 1.0 or spec.temperature <= 0:
        raise MtbranchError("need 0 <= alpha <= 1 and temperature > 0")
    source = trunk if isinstance(trunk, TrunkSource) else resolve_trunk(str(trunk))
    if source.fingerprints[m.attach_depth] != m.trunk.fingerprint:
        raise MtbranchError(f"the teacher was trained on another trunk (fingerprint at depth {m.attach_depth} "
                            "differs)", path=str(teacher_dir), hint="pass the trunk the teacher was trained on")
    cfg = cfg or TrainConfig()
    cfg.max_length = m.tokenizer.max_length
    cfg.pooling = m.pooling
    cfg.projection = m.projection
    labels = teacher_labels(teacher)
    task = m.head.type  # a trainable head type is also the SDK task name
    prep = prepare(source, task, train_data, dev_data, cfg, [m.attach_depth], labels=labels)
    teacher_train = branch_outputs(teacher, prep, "train")
    from mtbranch.sdk.metrics import compute_metrics

    metric = cfg.metric or prep.training.default_metric
    teacher_metrics = _metrics_of(prep, branch_outputs(teacher, prep, "dev"), compute_metrics)
    info = info or BranchInfo(name=f"{m.name}-l{student_layers}", version=m.version, owner=m.owner)
    extra = {"distillation": {"teacher": {"name": m.name, "version": m.version, "path": str(Path(teacher_dir)),
                                          "sha256": m.weights.sha256, "num_layers": m.num_layers},
                              "alpha": spec.alpha, "temperature": spec.temperature,
                              "init": f"teacher layers 1..{student_layers} + pooler/head",
                              f"teacher_dev_{metric}": teacher_metrics[metric]}}
    student = fit(prep, m.attach_depth, student_layers, cfg, info, out_dir=out_dir,
                  init_state=student_init_state(teacher, student_layers), teacher_outputs=teacher_train,
                  distill=spec, extra_training=extra)
    return DistillResult(teacher_metrics, student, metric)


def _teacher_record(m: BranchManifest, teacher_dir: Path) -> dict[str, Any]:
    return {"name": m.name, "version": m.version, "path": str(teacher_dir), "sha256": m.weights.sha256,
            "num_layers": m.num_layers, "attach_depth": m.attach_depth}


def _check_same_trunk(source: TrunkSource, m: BranchManifest, path: Path, what: str) -> None:
    if source.fingerprints[m.attach_depth] != m.trunk.fingerprint:
        raise MtbranchError(f"the {what} was trained on another trunk (fingerprint at depth {m.attach_depth} "
                            "differs)", path=str(path / MANIFEST_NAME),
                            hint=f"pass the trunk the {what} was trained on, or a {what} trained on this trunk")


def _distill_to_depth(trunk: str | os.PathLike[str] | TrunkSource, teacher: BranchModule, teacher_dir: Path,
                      train_data: Dataset, dev_data: Dataset, *, student_layers: int, student_depth: int,
                      init_dir: Path | None, spec: DistillSpec, cfg: TrainConfig | None,
                      info: BranchInfo | None, out_dir: str | os.PathLike[str] | None) -> DistillResult:
    """A student at ``student_depth`` >= the teacher's depth, initialised from the trunk or ``init_dir``."""
    m = teacher.manifest
    where = str(teacher_dir / MANIFEST_NAME)
    _trainable(m, where)
    if not 0.0 <= spec.alpha <= 1.0 or spec.temperature <= 0:
        raise MtbranchError("need 0 <= alpha <= 1 and temperature > 0")
    if student_depth < m.attach_depth:
        raise MtbranchError(f"the student's depth {student_depth} is below the teacher's attach depth "
                            f"{m.attach_depth}: the teacher could not see the student's input features",
                            path=where, hint=f"use a student depth >= {m.attach_depth}, or a teacher attached at "
                                             f"depth <= {student_depth} (e.g. a full fine-tuning run, depth 0)")
    source = trunk if isinstance(trunk, TrunkSource) else resolve_trunk(str(trunk))
    if student_layers < 0 or student_depth + student_layers > source.num_layers:
        raise MtbranchError(f"a student of {student_layers} layer(s) at depth {student_depth} needs trunk layers "
                            f"up to {student_depth + student_layers}, the trunk has {source.num_layers}",
                            path=str(source.path),
                            hint=f"need 0 <= layers and depth + layers <= {source.num_layers}")
    _check_same_trunk(source, m, teacher_dir, "teacher")
    cfg = cfg or TrainConfig()
    cfg.max_length = m.tokenizer.max_length
    cfg.pooling = m.pooling
    cfg.projection = m.projection
    labels = teacher_labels(teacher)
    init_state: dict[str, torch.Tensor] | None = None
    init_desc = f"trunk layers {student_depth + 1}..{student_depth + student_layers}" if student_layers else "none"
    init_record: dict[str, Any] = {"from": "trunk", "description": init_desc}
    if init_dir is not None:
        init = load_branch(init_dir)
        im = init.manifest
        iwhere = str(init_dir / MANIFEST_NAME)
        if (im.attach_depth, im.num_layers) != (student_depth, student_layers):
            raise MtbranchError(f"the init branch has {im.num_layers} layer(s) at depth {im.attach_depth}, the "
                                f"student {student_layers} at depth {student_depth}", path=iwhere,
                                hint="pass an init branch with the student's depth and layers, or leave --init "
                                     "out to start from the trunk layers")
        if im.head.type != m.head.type or teacher_labels(init) != labels:
            raise MtbranchError(f"the init branch's head ({im.head.type}, labels "
                                f"{teacher_labels(init)}) differs from the teacher's ({m.head.type}, "
                                f"labels {labels})", path=iwhere, hint="use an init branch of the teacher's task")
        _check_same_trunk(source, im, init_dir, "init branch")
        cfg.pooling, cfg.projection = im.pooling, im.projection
        init_state = {k: v.clone() for k, v in init.state_dict().items()}
        init_desc = f"branch {im.name} {im.version} ({init_dir})"
        init_record = {"from": "branch", "description": init_desc, "name": im.name, "version": im.version,
                       "path": str(init_dir), "sha256": im.weights.sha256}
    task = m.head.type  # a trainable head type is also the SDK task name
    depths = sorted({m.attach_depth, student_depth})
    prep = prepare(source, task, train_data, dev_data, cfg, depths, labels=labels)
    teacher_train = branch_outputs(teacher, prep, "train")
    from mtbranch.sdk.metrics import compute_metrics

    metric = cfg.metric or prep.training.default_metric
    teacher_metrics = _metrics_of(prep, branch_outputs(teacher, prep, "dev"), compute_metrics)
    if m.attach_depth != student_depth:  # the teacher's features are no longer needed: free them
        prep.train_features.pop(m.attach_depth, None)
        prep.dev_features.pop(m.attach_depth, None)
    info = info or BranchInfo(name=f"{m.name}-d{student_depth}l{student_layers}", version=m.version, owner=m.owner)
    extra = {"distillation": {"teacher": _teacher_record(m, teacher_dir), "student_depth": student_depth,
                              "student_layers": student_layers, "alpha": spec.alpha,
                              "temperature": spec.temperature, "init": init_desc, "init_source": init_record,
                              f"teacher_dev_{metric}": teacher_metrics[metric]},
             "init": init_desc}
    student = fit(prep, student_depth, student_layers, cfg, info, out_dir=out_dir, init_state=init_state,
                  teacher_outputs=teacher_train, distill=spec, extra_training=extra)
    return DistillResult(teacher_metrics, student, metric)


def _trainable(m: BranchManifest, where: str) -> None:
    """The teacher's head type has a training side (a built-in one, or a plugin's that registers one)."""
    try:
        get_task(m.head.type)
    except MtbranchError as exc:
        raise MtbranchError(f"cannot distill branch {m.name!r}: {exc.message}", path=where, hint=exc.hint) from None


def teacher_labels(branch: BranchModule) -> list[str] | None:
    """The label names of a branch's head (its spec's ``labels``; a plugin head's as its own spec model reads them),
    the student's label list; None for a head without names (regression)."""
    return getattr(branch.head_spec, "labels", None)


def _metrics_of(prep: Prepared, outputs: list[np.ndarray], compute: object) -> dict[str, float]:
    if prep.training.data == "tokens":
        width = max(o.shape[0] for o in outputs)
        arr = np.full((len(outputs), width, outputs[0].shape[-1]), float(IGNORE_INDEX), dtype=np.float32)
        lab = np.full((len(outputs), width), IGNORE_INDEX, dtype=np.int64)
        for i, o in enumerate(outputs):
            arr[i, : o.shape[0]] = o
            lab[i, : len(prep.dev.labels[i])] = prep.dev.labels[i]
    else:
        arr = np.stack(outputs)
        lab = np.asarray(prep.dev.labels)
    return compute(prep.task, arr, lab, prep.metric_labels)  # type: ignore[operator]
