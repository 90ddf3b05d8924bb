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


# -- 2. optional extras -------------------------------------------------------------------------------
EXTRA_COMMANDS = [
    ("accelerate", "train", ["train", "--task", "classification", "--trunk", "minilm-l6", "--train", "no.tsv",
                             "--dev", "no.tsv", "--name", "x", "-o", "out"]),
    ("seqeval", "train", ["sweep", "--task", "classification", "--trunk", "minilm-l6", "--train", "no.tsv",
                          "--dev", "no.tsv", "--name", "x", "--min-layers", "1", "--max-layers", "2"]),
    ("sklearn", "train", ["distill", "--teacher", "no-branch", "--trunk", "minilm-l6", "--train", "no.tsv",
                          "--dev", "no.tsv", "--student-layers", "1", "-o", "out"]),
    ("uvicorn", "serve", ["serve", "no-artifact"]),
    ("onnxruntime", "onnx", ["export-onnx", "no-artifact", "-o", "out"]),
    ("matplotlib", "bench", ["bench", "--scenario", "paper-mixed", "--plot", "b.png"]),
]


@pytest.mark.parametrize(("module", "extra", "args"), EXTRA_COMMANDS, ids=[a[0] for _, _, a in EXTRA_COMMANDS])
def test_missing_extra_is_one_clear_line(module: str, extra: str, args: list[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, module, None)  # as if `pip install mtbranch` only
    code, out = run_cli(*args)
    assert code == 1, out
    assert f"pip install 'mtbranch[{extra}]'" in out  # the brackets survive Rich's markup
    assert module in out and "internal error" not in out and "Traceback" not in out


def test_missing_extra_before_feature_pass(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mtbranch.errors import MissingExtra
    from mtbranch.sdk.data import Dataset, TextExample
    from mtbranch.sdk.features import FeatureCache
    from mtbranch.sdk.train import TrainConfig, prepare

    def no_features(*a: Any, **k: Any) -> Any:
        raise AssertionError("trunk features computed before the extra was checked")

    monkeypatch.setattr(FeatureCache, "get", no_features)
    monkeypatch.setitem(sys.modules, "accelerate", None)
    data = Dataset([TextExample("good film", label="pos"), TextExample("bad film", label="neg")])
    with pytest.raises(MissingExtra) as err:
        prepare(tiny_bert_dir, "classification", data, data, TrainConfig(), [2])
    assert err.value.hint == "pip install 'mtbranch[train]'"


def test_ray_without_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from mtbranch.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "mtbranch.serve.ray_app", raising=False)
    with pytest.raises(MissingExtra, match=r"\[ray\]"):
        importlib.import_module("mtbranch.serve.ray_app")
