"""The platform view of a composed artifact (the paper's Table 2): per task, its dev metric as recorded in the
branch manifest, the full fine-tuning reference where the branch's provenance names one, and the retention.

Read from the manifests inside the artifact only: nothing is re-measured here (``mtbranch predict --input`` on
the dev set does that), and a branch whose provenance names no reference shows none rather than a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtbranch.io.files import JsonFileError, read_json_object


def _reference(training: dict[str, Any], metric: str, trunk_layers: int) -> tuple[float | None, str | None]:
    build = training.get("build") or {}
    ref = build.get("reference") or {}
    if ref.get("source") == "teacher" and isinstance(ref.get("value"), int | float):
        return float(ref["value"]), "full fine-tuning (build teacher)"
    dist = training.get("distillation") or {}
    teacher = dist.get("teacher") or {}
    value = dist.get(f"teacher_dev_{metric}")
    if isinstance(value, int | float) and teacher.get("attach_depth") == 0 \
            and teacher.get("num_layers") == trunk_layers:
        return float(value), "full fine-tuning (distillation teacher)"
    return None, None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def task_rows(artifact: str | Path, lock: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per branch: name, depth, layers, metric, dev value, reference value and source, retention."""
    trunk_layers = int(lock["trunk"]["num_layers"])
    rows = []
    for e in lock["branches"]:
        row: dict[str, Any] = {"task": e["name"], "attach_depth": e["attach_depth"], "num_layers": e["num_layers"],
                               "metric": None, "dev": None, "reference": None, "reference_source": None,
                               "retention": None}
        try:
            manifest = read_json_object(Path(artifact) / "branches" / e["name"] / "manifest.json")
        except JsonFileError:
            rows.append(row)
            continue
        training = _dict(manifest.get("training"))
        metric = training.get("metric")
        value = _dict(manifest.get("metrics")).get(f"dev_{metric}") if isinstance(metric, str) else None
        if isinstance(metric, str) and isinstance(value, int | float):
            row.update(metric=metric, dev=float(value))
            ref, source = _reference(training, metric, trunk_layers)
            if ref:
                row.update(reference=ref, reference_source=source, retention=float(value) / ref)
        rows.append(row)
    return rows
