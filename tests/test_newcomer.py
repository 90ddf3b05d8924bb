"""Newcomer paths (issue 19): what a new team walks through, with installed plugins and missing extras."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mtbranch.cli.main import cli
from mtbranch.plugins import BranchLocation, Check, TrunkProvider, hookimpl
from mtbranch.plugins.manager import PluginManager, set_plugin_manager
from mtbranch.spec.findings import Finding

from conftest import make_bert_dir
from helpers import make_branch


def run_cli(*args: Any) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"CLI raised {r.exception!r}\n{r.output}")
    return r.exit_code, r.output


# -- 1. explicit selection ----------------------------------------------------------------------------
class _OtherTeam:
    """An installed plugin whose branch was trained on another trunk, plus a trunk and a policy check."""

    def __init__(self, branch: Path, trunk: Path) -> None:
        self.branch, self.trunk = branch, trunk

    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        return [BranchLocation("other", self.branch)]

    @hookimpl
    def mtbranch_trunks(self) -> list[TrunkProvider]:
        return [TrunkProvider("tiny", self.trunk)]

    @hookimpl
    def mtbranch_checks(self) -> list[Check]:
        def needs_owner(manifest: Any, path: Path) -> list[Any]:
            if manifest.owner:
                return []
            return [Finding(code="X001", severity="warning", message="no owner", branch=manifest.name)]
        return [Check("needs-owner", needs_owner)]


@pytest.fixture
def installed_other(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("other")
    wider = make_bert_dir(base / "wider", hidden=48)
    other = make_branch(wider, base / "other", name="other", depth=3, layers=1, seed=7)
    pm = PluginManager(autoload=False)
    pm.register(_OtherTeam(other, tiny_bert_dir), "other-team")
    set_plugin_manager(pm)
    yield other
    set_plugin_manager(None)


def test_branch_dirs_select_exactly_those(installed_other: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    mine = make_branch(tiny_bert_dir, tmp_path / "mine", name="mine", depth=2, layers=1)
    code, out = run_cli("compose", "--trunk", tiny_bert_dir, "--branch", mine, "-o", tmp_path / "out")
    assert code == 0, out
    lock = json.loads((tmp_path / "out" / "mtbranch.lock.json").read_text())
    assert [e["name"] for e in lock["branches"]] == ["mine"]
    # the installed trunk name and the installed policy check still apply
    code, out = run_cli("validate", "--trunk", "tiny", "--branch", mine, "--format", "json")
    report = json.loads(out)
    assert code == 0, out
    assert [b["name"] for b in report["branches"]] == ["mine"]
    assert [f["code"] for f in report["findings"]] == ["X001"]


def test_installed_branches_join_without_branch_or_with_flag(installed_other: Path, tiny_bert_dir: Path,
                                                             tmp_path: Path) -> None:
    mine = make_branch(tiny_bert_dir, tmp_path / "mine", name="mine", depth=2, layers=1)
    code, out = run_cli("validate", "--trunk", tiny_bert_dir, "--branch", mine, "--with-installed",
                        "--format", "json")
    report = json.loads(out)
    assert {b["name"] for b in report["branches"]} == {"mine", "other"}
    assert code == 1 and any(f["code"].startswith("T") and f["branch"] == "other" for f in report["findings"])
    code, out = run_cli("validate", "--trunk", tiny_bert_dir, "--format", "json")
    assert [b["name"] for b in json.loads(out)["branches"]] == ["other"]
    # --no-plugins: no installed branches, and no plugin checks either
    code, out = run_cli("validate", "--trunk", tiny_bert_dir, "--branch", mine, "--no-plugins", "--format", "json")
    assert code == 0 and json.loads(out)["findings"] == []


def test_selection_rule_in_help_and_docs() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert "exactly those directories are used" in docs and "--with-installed" in docs
    for cmd in ("validate", "compose"):
        _, out = run_cli(cmd, "--help")
        assert "--with-installed" in out and "exactly those directories" in " ".join(out.split())
