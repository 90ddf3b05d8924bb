"""The installed ``mtbranch-paraphrase`` plugin is discovered, and its branch validates once it has been synced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtbranch.plugins.manager import PluginManager

BRANCH = "paraphrase"
PLUGIN = "mtbranch-paraphrase"
HEAD = "classification"
SIGNATURE = "pair"


def test_plugin_is_discovered() -> None:
    pm = PluginManager(autoload=True)
    branches = pm.branches()
    assert BRANCH in branches, f"{BRANCH!r} not provided; plugin findings: {pm.findings}"
    plugin, location = branches[BRANCH]
    assert plugin == PLUGIN
    assert Path(location.path).name == "branch"
    info = {i.name: i for i in pm.plugin_infos()}[PLUGIN]
    assert info.distribution == PLUGIN and info.hooks == ["mtbranch_branches"] and not info.errors


def test_import_does_not_import_torch() -> None:
    code = ("import sys, mtbranch_paraphrase; mtbranch_paraphrase.mtbranch_branches(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_branch_validates() -> None:
    from mtbranch.validation.validator import Validator

    pm = PluginManager(autoload=True)
    plugin, location = pm.branches()[BRANCH]
    if not (Path(location.path) / "manifest.json").is_file():
        pytest.skip("branch artifact not synced into the package yet: run examples/sync_branches.sh")
    trunk_ref = os.environ.get("MTBRANCH_TEST_TRUNK") or ("minilm-l6" if "minilm-l6" in pm.trunks() else None)
    trunk = None
    if trunk_ref:
        from mtbranch.trunk.source import resolve_trunk

        trunk = resolve_trunk(trunk_ref)
    result, findings = Validator(trunk, plugin_manager=pm).check_branch(Path(location.path), plugin)
    errors = [f for f in findings if f.severity == "error"]
    assert not errors, "\n".join(f"{f.code} {f.message}" for f in errors)
    m = result.manifest
    assert m is not None and m.name == BRANCH and m.head.type == HEAD
    assert m.tokenizer.input_signature == SIGNATURE
    assert m.metrics, "the example branches record their evaluation metrics"
