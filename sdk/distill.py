"""Knowledge distillation with teacher initialisation (paper §3.2): a teacher branch of L layers at depth d
teaches a student of l < L layers at the same depth, initialised from the teacher's bottom l layers, its
pooling, projection and head. Loss = alpha * soft-target loss at temperature T (KL for classification and
per token, MSE for regression) + (1 - alpha) * hard-label loss.

The teacher's outputs on the training set are computed once from the cached features, not every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtbranch.branch import BranchModule, load_branch
from mtbranch.errors import MtbranchError
from mtbranch.sdk.data import Dataset
from mtbranch.sdk.train import BranchInfo, DistillSpec, Prepared, TrainConfig, TrainResult, collate, fit, prepare
from mtbranch.sdk.train import FeatureDataset as _FeatureDataset
from mtbranch.trunk_ref import TrunkSource, resolve_trunk

TASK_OF_HEAD = {"classification": "classification", "regression": "regression",
                "token_classification": "token_classification"}


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
            out_dir: str | os.PathLike[str] | None = None) -> DistillResult:
    spec = spec or DistillSpec()
    teacher = load_branch(teacher_dir)
    m = teacher.manifest
    if not 0 <= student_layers < m.num_layers:
        raise MtbranchError(f"the student needs fewer layers than the teacher's {m.num_layers}, "
                            f"got {student_layers}", path=str(teacher_dir))
    if m.head.type not in TASK_OF_HEAD:
        raise MtbranchError(f"distillation supports built-in heads, not {m.head.type!r}", path=str(teacher_dir))
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
    labels = getattr(m.head, "labels", None)
    task = TASK_OF_HEAD[m.head.type]
    prep = prepare(source, task, train_data, dev_data, cfg, [m.attach_depth], labels=labels)  # type: ignore[arg-type]
    teacher_train = branch_outputs(teacher, prep, "train")
    from mtbranch.sdk.metrics import DEFAULT_METRIC, compute_metrics

    metric = cfg.metric or DEFAULT_METRIC[task]
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


def _metrics_of(prep: Prepared, outputs: list[np.ndarray], compute: object) -> dict[str, float]:
    if prep.task == "token_classification":
        width = max(o.shape[0] for o in outputs)
        arr = np.full((len(outputs), width, outputs[0].shape[-1]), -100.0, dtype=np.float32)
        lab = np.full((len(outputs), width), -100, dtype=np.int64)
        for i, o in enumerate(outputs):
            arr[i, : o.shape[0]] = o
            lab[i, : len(prep.dev.labels[i])] = prep.dev.labels[i]
    else:
        arr = np.stack(outputs)
        lab = np.asarray(prep.dev.labels)
    return compute(prep.task, arr, lab, prep.labels)  # type: ignore[operator]
