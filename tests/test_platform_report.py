"""The platform view (`inspect`'s task table): retention only where the provenance names a full-FT reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtbranch.composition.report import task_rows


def _artifact(tmp_path: Path, branches: dict[str, dict]) -> dict:
    for name, manifest in branches.items():
        d = tmp_path / "branches" / name
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps(manifest))
    return {"trunk": {"num_layers": 6},
            "branches": [{"name": n, "attach_depth": 4, "num_layers": 2} for n in branches]}


def test_retention_from_each_kind_of_provenance(tmp_path: Path) -> None:
    lock = _artifact(tmp_path, {
        "distilled": {"metrics": {"dev_pearson": 0.85}, "training": {"metric": "pearson", "distillation": {
            "teacher": {"attach_depth": 0, "num_layers": 6}, "teacher_dev_pearson": 0.875}}},
        "partial-teacher": {"metrics": {"dev_accuracy": 0.8}, "training": {"metric": "accuracy", "distillation": {
            "teacher": {"attach_depth": 4, "num_layers": 2}, "teacher_dev_accuracy": 0.82}}},
        "built": {"metrics": {"dev_entity_f1": 0.9}, "training": {"metric": "entity_f1", "build": {
            "reference": {"source": "teacher", "value": 0.92}}}},
        "plain": {"metrics": {"dev_accuracy": 0.88}, "training": {"metric": "accuracy"}},
    })
    (tmp_path / "branches" / "broken").mkdir()
    (tmp_path / "branches" / "broken" / "manifest.json").write_text("{")
    lock["branches"].append({"name": "broken", "attach_depth": 5, "num_layers": 1})
    rows = {r["task"]: r for r in task_rows(tmp_path, lock)}
    assert rows["distilled"]["retention"] == pytest.approx(0.85 / 0.875)
    assert rows["distilled"]["reference_source"] == "full fine-tuning (distillation teacher)"
    # a teacher that is itself a partial branch is no full fine-tuning reference
    assert rows["partial-teacher"]["reference"] is None and rows["partial-teacher"]["dev"] == 0.8
    assert rows["built"]["retention"] == pytest.approx(0.9 / 0.92)
    assert rows["plain"]["retention"] is None and rows["plain"]["metric"] == "accuracy"
    assert rows["broken"]["dev"] is None and rows["broken"]["attach_depth"] == 5
