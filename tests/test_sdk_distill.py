"""Distillation: the student has fewer layers, starts from the teacher's bottom layers, and is scored."""

from __future__ import annotations

from pathlib import Path

import pytest
import sdk_fixtures
import torch
from sdk_fixtures import conll_data, sentiment_data

from mtbranch.branch.model import load_branch
from mtbranch.errors import MtbranchError
from mtbranch.sdk.distill import distill, student_init_state
from mtbranch.sdk.train import BranchInfo, DistillSpec, TrainConfig, soft_loss, train

sdk_trunk_dir = sdk_fixtures.sdk_trunk_dir  # the shared tiny trunk (fixture)
CFG = TrainConfig(epochs=2, lr=1e-3, head_lr=1e-2, batch_size=16, max_length=32, progress=False)


@pytest.mark.parametrize("task", ["classification", "token_classification"])
def test_distill_student_has_fewer_layers(sdk_trunk_dir: Path, tmp_path: Path, task: str) -> None:
    tr, dev = sentiment_data(tmp_path, 64, 16) if task == "classification" else conll_data(tmp_path, 40, 10)
    teacher_dir = tmp_path / "teacher"
    train(str(sdk_trunk_dir), task, tr, dev, layers=3, depth=1, cfg=CFG, info=BranchInfo("t"),  # type: ignore[arg-type]
          out_dir=teacher_dir)
    teacher = load_branch(teacher_dir)
    init = student_init_state(teacher, 1)
    assert not any(k.startswith(("layers.1.", "layers.2.")) for k in init)
    key = "layers.0.output.dense.weight"
    torch.testing.assert_close(init[key], teacher.state_dict()[key])

    res = distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=1, spec=DistillSpec(0.7, 2.0), cfg=CFG,
                  out_dir=tmp_path / "student")
    student = load_branch(tmp_path / "student")
    assert student.manifest.num_layers == 1 and student.manifest.attach_depth == 1
    assert student.manifest.name == "t-l1"
    d = student.manifest.training["distillation"]
    assert d["teacher"]["num_layers"] == 3 and d["alpha"] == 0.7 and d["temperature"] == 2.0
    assert res.metric in res.teacher_metrics and res.metric in res.student.metrics
    if res.teacher_metrics[res.metric]:  # a tiny random trunk may find no entity at all in 2 epochs
        assert res.retained == pytest.approx(res.student.metrics[res.metric] / res.teacher_metrics[res.metric])
    with pytest.raises(MtbranchError, match="fewer layers"):
        distill(str(sdk_trunk_dir), teacher_dir, tr, dev, student_layers=3, cfg=CFG)


def test_soft_losses() -> None:
    z = torch.randn(4, 3)
    labels = torch.zeros(4, dtype=torch.long)
    assert float(soft_loss("classification", z, z, labels, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_loss("classification", z, z + torch.randn(4, 3), labels, 2.0)) > 0
    r = torch.randn(4, 1)
    assert float(soft_loss("regression", r, r + 1, labels, 2.0)) == pytest.approx(1.0)
    tok_s, tok_t = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    tok_labels = torch.full((2, 5), -100)
    tok_labels[:, 1] = 0
    same_where_labelled = tok_t.clone()
    same_where_labelled[:, 1] = tok_s[:, 1]
    # positions without a word tag (sub-tokens, specials, padding) do not count
    assert float(soft_loss("token_classification", tok_s, same_where_labelled, tok_labels, 1.0)) == pytest.approx(
        0.0, abs=1e-6)
