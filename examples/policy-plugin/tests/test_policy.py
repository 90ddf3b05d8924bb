"""The policy plugin is discovered and its checks accept compliant branches and flag the others."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from mtbranch_policy_example import check_metrics, check_task_layers

from mtbranch.plugins.manager import PluginManager


def manifest(num_layers: int = 2, metrics: dict[str, float] | None = None) -> SimpleNamespace:
    return SimpleNamespace(name="demo", num_layers=num_layers, metrics=metrics if metrics is not None else
                           {"accuracy": 0.9})


def test_checks_are_discovered() -> None:
    pm = PluginManager(autoload=True)
    names = {c.name for c in pm.checks()}
    assert {"max-task-layers", "metrics-required"} <= names, pm.findings


def test_compliant_branch_passes() -> None:
    m = manifest()
    assert check_task_layers(m, Path("x")) == [] and check_metrics(m, Path("x")) == []


def test_too_many_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    [f] = check_task_layers(manifest(num_layers=4), Path("x"))
    assert (f.code, f.severity) == ("ORG001", "error")
    monkeypatch.setenv("MTBRANCH_POLICY_MAX_LAYERS", "4")
    assert check_task_layers(manifest(num_layers=4), Path("x")) == []


def test_metrics_required() -> None:
    [f] = check_metrics(manifest(metrics={}), Path("x"))
    assert (f.code, f.severity, f.branch) == ("ORG002", "error", "demo")
