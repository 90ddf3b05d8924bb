"""Plugins: hooks, the manager's failure isolation (P001-P006), environment variables, ``mtbranch plugins``,
``new-plugin`` -> pip install -> discovered -> validate -> compose, torch-free listing, documented hooks."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mtbranch.cli.main import cli
from mtbranch.cli.new_plugin import new_plugin
from mtbranch.errors import MtbranchError
from mtbranch.plugins import BranchLocation, Check, TrunkProvider, hookimpl, hookspecs
from mtbranch.plugins.manager import ALLOW_ENV, DISABLE_ENV, PluginManager, set_plugin_manager

from helpers import make_branch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_PACKAGES = ["trunk-minilm", "plugin-sentiment", "plugin-similarity", "plugin-entities", "policy-plugin"]

if "new-plugin" not in cli.commands:  # until cli/main.py registers it
    cli.add_command(new_plugin)


# -- fixtures and helpers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def branch_dirs(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("plugin-branches")
    return {
        "alpha": make_branch(tiny_bert_dir, base / "alpha", name="alpha", depth=2, layers=1, seed=1),
        "beta": make_branch(tiny_bert_dir, base / "beta", name="beta", depth=3, layers=1, head="regression",
                            seed=2),
    }


@pytest.fixture(autouse=True)
def _plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(ALLOW_ENV, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write_dist(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None) -> None:
    """A distribution as pip leaves it: ``<dist>-0.1.dist-info`` with METADATA and entry_points.txt."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mtbranch]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, source in (modules or {}).items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))


def branch_plugin_source(name: str, path: Path) -> str:
    return f"""
        from pathlib import Path
        from mtbranch.plugins import BranchLocation, hookimpl

        @hookimpl
        def mtbranch_branches():
            return [BranchLocation({name!r}, Path({str(path)!r}))]
        """


BROKEN = "raise RuntimeError('boom at import')\n"
GARBAGE = """
    from mtbranch.plugins import hookimpl

    @hookimpl
    def mtbranch_branches():
        return "not a list"

    @hookimpl
    def mtbranch_brnaches():  # typo: an unknown hook
        return []
    """


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path where tests "install" distributions; their modules are unloaded after.

    The environment may hold other mtbranch plugins (``make test`` installs the examples): the manager only
    sees this directory's distributions.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    all_entry_points = importlib.metadata.entry_points

    def site_entry_points(**select: Any) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in all_entry_points(**select)
                if ep.dist is not None and Path(str(ep.dist.locate_file(""))) == root]

    monkeypatch.setattr(importlib.metadata, "entry_points", site_entry_points)
    yield root
    for name, mod in list(sys.modules.items()):
        if str(root) in (getattr(mod, "__file__", None) or ""):
            del sys.modules[name]


@pytest.fixture()
def bad_and_good(site: Path, branch_dirs: dict[str, Path]) -> Path:
    """A plugin raising at import and one returning garbage, installed beside two good ones."""
    write_dist(site, "broken-plugin", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    write_dist(site, "garbage-plugin", {"garbage": "garbage_plugin"}, {"garbage_plugin": GARBAGE})
    write_dist(site, "alpha-plugin", {"alpha": "alpha_plugin"},
               {"alpha_plugin": branch_plugin_source("alpha", branch_dirs["alpha"])})
    write_dist(site, "beta-plugin", {"beta": "beta_plugin"},
               {"beta_plugin": branch_plugin_source("beta", branch_dirs["beta"])})
    set_plugin_manager(None)
    return site


def rows(result: Result) -> dict[str, dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.output)}


def codes(errors: list[str]) -> list[str]:
    return [e.split(":")[0] for e in errors]


# -- hookimpl classes on a fresh manager ---------------------------------------------------------------------
class AlphaPlugin:
    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        return [BranchLocation("alpha", self.path)]


class TrunkPlugin:
    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def mtbranch_trunks(self) -> list[TrunkProvider]:
        return [TrunkProvider("tiny", self.path)]


class RaisingPlugin:
    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        raise ValueError("cannot find my package data")


class GarbageHeadsPlugin:
    @hookimpl
    def mtbranch_head_types(self) -> Any:
        return [{"name": "my-head"}]


class BadRecordPlugin:
    @hookimpl
    def mtbranch_trunks(self) -> list[TrunkProvider]:
        return [TrunkProvider("nameless-path", 42)]  # type: ignore[arg-type]


class MaxLayersPolicy:
    @hookimpl
    def mtbranch_checks(self) -> list[Check]:
        from mtbranch.spec.findings import Finding

        def run(manifest: Any, path: Path) -> list[Finding]:
            return [Finding("ORG001", "error", "too many layers", branch=manifest.name)] \
                if manifest.num_layers > 0 else []

        return [Check("max-layers-0", run)]


def fresh(*plugins: object) -> PluginManager:
    pm = PluginManager(autoload=False)
    for i, p in enumerate(plugins):
        pm.register(p, f"{type(p).__name__.lower()}-{i}")
    set_plugin_manager(pm)
    return pm


def test_registered_plugins_are_listed_and_validated(branch_dirs: dict[str, Path], tiny_bert_dir: Path) -> None:
    fresh(AlphaPlugin(branch_dirs["alpha"]), TrunkPlugin(tiny_bert_dir))
    listed = rows(invoke("plugins", "--json"))
    assert listed["alphaplugin-0"]["branches"] == ["alpha"]
    assert listed["trunkplugin-1"]["trunks"] == ["tiny"]
    assert listed["builtin"]["head_types"] == ["classification", "regression", "token_classification"]
    # no --trunk: the installed trunk whose fingerprint fits is chosen; --with-installed adds the plugin's
    # branches to the --branch directories (without it, --branch means exactly those: tests/test_newcomer.py)
    result = invoke("validate", "--format", "json", "--branch", str(branch_dirs["beta"]), "--with-installed")
    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert report["trunk"]["reference"] == "tiny"
    assert {(b["name"], b["source"]) for b in report["branches"]} == {("alpha", "alphaplugin-0"),
                                                                        ("beta", "directory")}


def test_failing_hooks_are_findings_and_never_hide_the_others(branch_dirs: dict[str, Path],
                                                              tiny_bert_dir: Path) -> None:
    fresh(RaisingPlugin(), GarbageHeadsPlugin(), BadRecordPlugin(), AlphaPlugin(branch_dirs["alpha"]),
          TrunkPlugin(tiny_bert_dir), PolicyTwice(), PolicyTwice())
    listed = rows(invoke("plugins", "--json"))
    assert codes(listed["raisingplugin-0"]["errors"]) == ["P002"]
    assert codes(listed["garbageheadsplugin-1"]["errors"]) == ["P003"]
    assert codes(listed["badrecordplugin-2"]["errors"]) == ["P003"]
    assert codes(listed["policytwice-6"]["errors"]) == ["P006"]  # a check name twice: the first is kept
    assert listed["alphaplugin-3"]["branches"] == ["alpha"] and not listed["alphaplugin-3"]["errors"]
    result = invoke("validate", "--format", "json")
    report = json.loads(result.output)
    assert result.exit_code == 0, result.output  # plugin failures are warnings...
    assert sorted(f["code"] for f in report["findings"]) == ["P002", "P003", "P003", "P006"]
    assert [b["name"] for b in report["branches"]] == ["alpha"]
    assert invoke("validate", "--strict").exit_code == 1  # ...and failures in strict mode


class PolicyTwice:
    @hookimpl
    def mtbranch_checks(self) -> list[Check]:
        return [Check("always-fine", lambda manifest, path: [])]


class HeadTwice:
    @hookimpl
    def mtbranch_head_types(self) -> list[Any]:
        from mtbranch.heads.registry import builtin_head_types

        return [replace(builtin_head_types()[0], name="shared-head")]


def test_duplicate_head_types_and_trunks_are_errors_not_first_wins(branch_dirs: dict[str, Path],
                                                                   tiny_bert_dir: Path) -> None:
    pm = fresh(TrunkPlugin(tiny_bert_dir), TrunkPlugin(tiny_bert_dir), HeadTwice(), HeadTwice())
    listed = rows(invoke("plugins", "--json"))
    assert codes(listed["trunkplugin-1"]["errors"]) == ["P008"] and not listed["trunkplugin-0"]["errors"]
    assert codes(listed["headtwice-3"]["errors"]) == ["P008"]
    assert "tiny" not in pm.trunks() and "shared-head" not in pm.head_types()  # neither registration is used
    assert pm.ambiguous("trunk", "tiny") == ["trunkplugin-0", "trunkplugin-1"]
    with pytest.raises(MtbranchError, match="registered by 'headtwice-2' and 'headtwice-3'"):
        pm.head_type("shared-head")
    result = invoke("validate", "--format", "json", "--trunk", str(tiny_bert_dir),
                    "--branch", str(branch_dirs["alpha"]))
    assert result.exit_code == 1, result.output  # an error finding, also without --strict
    assert sorted(f["code"] for f in json.loads(result.output)["findings"]) == ["P008", "P008"]
    bad = invoke("validate", "--trunk", "tiny", "--branch", str(branch_dirs["alpha"]))
    assert bad.exit_code == 1 and "P008" in bad.output and "Traceback" not in bad.output


def test_one_accessor_with_a_process_wide_default() -> None:
    from mtbranch.plugins.manager import get_plugin_manager, reset_plugin_manager, use_plugin_manager

    default = get_plugin_manager()
    assert get_plugin_manager() is default  # one per process...
    mine = PluginManager(autoload=False)
    assert get_plugin_manager(mine) is mine  # ...unless a caller hands its own down
    with use_plugin_manager(mine):
        assert get_plugin_manager() is mine
    assert get_plugin_manager() is default
    reset_plugin_manager()
    assert get_plugin_manager() is not default


def test_head_type_hook_garbage_is_reported_even_before_heads_are_needed() -> None:
    pm = fresh(GarbageHeadsPlugin())
    assert [f.code for f in pm.findings] == ["P003"]


def test_policy_checks_run_on_every_branch(branch_dirs: dict[str, Path]) -> None:
    fresh(MaxLayersPolicy())
    result = invoke("validate", "--format", "json", "--branch", str(branch_dirs["alpha"]))
    report = json.loads(result.output)
    assert result.exit_code == 1
    assert [(f["code"], f["branch"]) for f in report["findings"]] == [("ORG001", "alpha")]
    assert report["branches"][0]["checks"]["policies"] == "failed"


# -- entry points: distributions on sys.path -----------------------------------------------------------------
def test_entry_point_failures_are_reported_and_the_others_still_work(bad_and_good: Path,
                                                                    tiny_bert_dir: Path) -> None:
    listed = rows(invoke("plugins", "--json"))
    assert codes(listed["broken"]["errors"]) == ["P001"] and "boom at import" in listed["broken"]["errors"][0]
    assert listed["broken"]["distribution"] == "broken-plugin" and listed["broken"]["version"] == "0.1"
    assert sorted(codes(listed["garbage"]["errors"])) == ["P003", "P004"]
    assert listed["alpha"]["branches"] == ["alpha"] and listed["beta"]["branches"] == ["beta"]
    text = invoke("plugins")
    assert "P001" in text.output and "P003" in text.output and "alpha" in text.output

    result = invoke("validate", "--trunk", str(tiny_bert_dir), "--format", "json")
    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert sorted(f["code"] for f in report["findings"]) == ["P001", "P003", "P004"]
    assert sorted(b["name"] for b in report["branches"]) == ["alpha", "beta"]
    assert all(s in ("passed", "skipped") for b in report["branches"] for s in b["checks"].values())
    strict = invoke("validate", "--trunk", str(tiny_bert_dir), "--strict")
    assert strict.exit_code == 1 and "P001" in strict.output and "P003" in strict.output


def test_duplicate_branch_names_across_distributions(bad_and_good: Path, branch_dirs: dict[str, Path],
                                                     tiny_bert_dir: Path) -> None:
    write_dist(bad_and_good, "alpha-fork", {"alpha": "alpha_fork"},  # same entry point name, too
               {"alpha_fork": branch_plugin_source("alpha", branch_dirs["beta"])})
    listed = rows(invoke("plugins", "--json"))
    alphas = [r for n, r in listed.items() if n.split(":")[-1] == "alpha"]  # both kept, whatever the order
    assert sorted(r["distribution"] for r in alphas) == ["alpha-fork", "alpha-plugin"]
    assert sorted(codes(e) for r in alphas for e in [r["errors"]]) == [[], ["P005"]]
    result = invoke("validate", "--trunk", str(tiny_bert_dir), "--format", "json")
    assert result.exit_code == 1
    assert "P005" in [f["code"] for f in json.loads(result.output)["findings"]]


def test_disable_autoload(bad_and_good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert set(rows(invoke("plugins", "--json"))) == {"builtin"}


@pytest.mark.parametrize("allow", ["alpha", "alpha-plugin", "Alpha_Plugin", " alpha , beta "])
def test_allow_list(bad_and_good: Path, monkeypatch: pytest.MonkeyPatch, allow: str) -> None:
    monkeypatch.setenv(ALLOW_ENV, allow)
    listed = rows(invoke("plugins", "--json"))
    assert "alpha" in listed and "broken" not in listed and "garbage" not in listed
    assert ("beta" in listed) == ("beta" in allow)
    assert all(not r["errors"] for r in listed.values())


def test_no_plugins_flag_ignores_installed_branches(bad_and_good: Path, branch_dirs: dict[str, Path]) -> None:
    result = invoke("validate", "--no-plugins", "--branch", str(branch_dirs["beta"]), "--format", "json")
    report = json.loads(result.output)
    assert [(b["name"], b["source"]) for b in report["branches"]] == [("beta", "directory")]


def test_entry_points_are_imported_on_first_need(bad_and_good: Path) -> None:
    pm = PluginManager()
    assert pm.head_type("classification").name == "classification"  # e.g. mtbranch.load() of built-in heads
    assert not {"broken_plugin", "alpha_plugin"} & set(sys.modules)
    assert "alpha" in pm.branches()
    assert "alpha_plugin" in sys.modules


# -- new-plugin ----------------------------------------------------------------------------------------------
def test_new_plugin_generates_a_package(branch_dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "acme-alpha"
    result = invoke("new-plugin", "acme-alpha", "--branch", str(branch_dirs["alpha"]), "-o", str(out),
                    "--requires", "mtbranch-trunk-tiny>=1", "--description", 'Alpha "quoted"')
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/acme_alpha/__init__.py", "src/acme_alpha/branch/README.md",
                     "src/acme_alpha/branch/branch.safetensors", "src/acme_alpha/branch/manifest.json",
                     "src/acme_alpha/py.typed", "tests/test_plugin.py"]
    import tomllib

    meta = tomllib.loads((out / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "acme-alpha" and meta["project"]["description"] == 'Alpha "quoted"'
    assert meta["project"]["dependencies"] == ["mtbranch>=0.1", "mtbranch-trunk-tiny>=1"]
    assert meta["project"]["entry-points"]["mtbranch"] == {"acme-alpha": "acme_alpha"}
    assert "import torch" not in (out / "src/acme_alpha/__init__.py").read_text()
    assert "attached at depth 2" in (out / "README.md").read_text()
    compile((out / "src/acme_alpha/__init__.py").read_text(), "init", "exec")
    compile((out / "tests/test_plugin.py").read_text(), "test", "exec")
    # not over an existing package without --force
    again = invoke("new-plugin", "acme-alpha", "--branch", str(branch_dirs["alpha"]), "-o", str(out))
    assert again.exit_code == 2 and "--force" in again.output
    assert invoke("new-plugin", "acme-alpha", "--branch", str(branch_dirs["beta"]), "-o", str(out),
                  "--force").exit_code == 0
    assert json.loads((out / "src/acme_alpha/branch/manifest.json").read_text())["name"] == "beta"


def test_plugin_testing_helpers(bad_and_good: Path, branch_dirs: dict[str, Path],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """mtbranch.sdk.plugin_testing (what a generated package's tests call) passes on a good plugin and fails with
    what it found on a wrong one."""
    from mtbranch.sdk import plugin_testing as testing

    assert testing.assert_branch_discovered("alpha", plugin="alpha") == branch_dirs["alpha"]
    m = testing.assert_branch_validates("alpha", head="classification", signature="single")
    assert m.name == "alpha"
    with pytest.raises(AssertionError, match="'alpha' comes from 'alpha', not 'beta'"):
        testing.assert_branch_discovered("alpha", plugin="beta")
    with pytest.raises(AssertionError, match="branch 'gamma' not provided"):
        testing.assert_branch_discovered("gamma")
    with pytest.raises(AssertionError, match="head 'classification', expected 'regression'"):
        testing.assert_branch_validates("alpha", head="regression")
    monkeypatch.setenv("PYTHONPATH", str(bad_and_good))  # the import check runs in a fresh interpreter
    testing.assert_import_is_light("alpha_plugin")
    with pytest.raises(AssertionError, match="imported torch"):
        testing.assert_import_is_light("mtbranch.heads.modules", hook="__name__.upper")


def test_new_plugin_refuses_bad_input(tmp_path: Path, branch_dirs: dict[str, Path]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("new-plugin", "acme", "--branch", str(empty), "-o", str(tmp_path / "pkg"))
    assert result.exit_code == 1 and "M001" in result.output and not (tmp_path / "pkg").exists()
    bad = invoke("new-plugin", "-bad name", "--branch", str(branch_dirs["alpha"]), "-o", str(tmp_path / "p2"))
    assert bad.exit_code == 2


# -- real installs in throwaway virtual environments -----------------------------------------------------------
def make_venv(path: Path) -> Path:
    """A venv that sees this environment's packages (mtbranch, torch, pip) but installs into its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "_mtbranch_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def pip_install(python: Path, *packages: Path) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", *map(str, packages)], check=True, env=child_env())


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (DISABLE_ENV, ALLOW_ENV, "PYTHONPATH")}
    env.update(extra)
    return env


def run_cli(python: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "mtbranch.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, env=child_env(**env))


@pytest.mark.slow
def test_new_plugin_install_discover_validate_compose(branch_dirs: dict[str, Path], tiny_bert_dir: Path,
                                                      tmp_path: Path) -> None:
    pkg = tmp_path / "acme-alpha"
    assert invoke("new-plugin", "acme-alpha", "--branch", str(branch_dirs["alpha"]), "-o", str(pkg)).exit_code == 0
    python = make_venv(tmp_path / "venv")
    pip_install(python, pkg)
    listed = json.loads(run_cli(python, "plugins", "--json").stdout)
    row = next(r for r in listed if r["name"] == "acme-alpha")
    assert (row["distribution"], row["version"], row["branches"], row["errors"]) == \
        ("acme-alpha", "0.1.0", ["alpha"], [])
    # the installed copy is used, not the source tree
    installed = subprocess.run([str(python), "-c", "import acme_alpha; print(acme_alpha.BRANCH_DIR)"],
                               capture_output=True, text=True, check=True, env=child_env()).stdout.strip()
    assert str(tmp_path / "venv") in installed and str(pkg) not in installed

    # the parent environment may hold other plugins (make test installs the examples): allow-list ours
    val = run_cli(python, "validate", "--trunk", str(tiny_bert_dir), "--format", "json",
                  MTBRANCH_PLUGINS="acme-alpha")
    report = json.loads(val.stdout)
    assert val.returncode == 0 and report["status"] == "passed", val.stdout + val.stderr
    assert [(b["name"], b["source"]) for b in report["branches"]] == [("alpha", "acme-alpha")]

    out = tmp_path / "composed"
    comp = run_cli(python, "compose", "--trunk", str(tiny_bert_dir), "--branch", str(branch_dirs["beta"]),
                   "--with-installed", "-o", str(out), MTBRANCH_PLUGINS="acme-alpha")
    assert comp.returncode == 0, comp.stdout + comp.stderr
    lock = json.loads((out / "mtbranch.lock.json").read_text())
    assert {(b["name"], b["source"]) for b in lock["branches"]} == {("alpha", "acme-alpha"), ("beta", "directory")}

    # the generated package's own tests pass against the installed plugin, with the trunk check too
    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=pkg,
                           capture_output=True, text=True, env=child_env(MTBRANCH_TEST_TRUNK=str(tiny_bert_dir)))
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout + tests.stderr


TORCH_PROBE = """
import sys
from mtbranch.cli.main import cli

for args in (["--help"], ["plugins"], ["plugins", "--json"]):
    try:
        cli(args, standalone_mode=False, prog_name="mtbranch")
    except SystemExit:
        pass
    print("TORCH-LOADED" if "torch" in sys.modules else "NO-TORCH", *args)
"""


@pytest.mark.slow
def test_help_and_plugins_import_no_torch_with_examples_installed(tmp_path: Path, bad_and_good: Path) -> None:
    src = tmp_path / "examples"
    for name in EXAMPLE_PACKAGES:
        shutil.copytree(EXAMPLES / name, src / name, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    python = make_venv(tmp_path / "venv")
    pip_install(python, *(src / name for name in EXAMPLE_PACKAGES))
    probe = subprocess.run([str(python), "-c", TORCH_PROBE], capture_output=True, text=True,
                           env=child_env(PYTHONPATH=str(bad_and_good)))  # broken + garbage plugins too
    assert probe.returncode == 0, probe.stderr
    marks = [line for line in probe.stdout.splitlines() if line.endswith(("--help", "plugins", "--json"))
             and line.startswith(("NO-TORCH", "TORCH-LOADED"))]
    assert marks == ["NO-TORCH --help", "NO-TORCH plugins", "NO-TORCH plugins --json"], probe.stdout
    listed = json.loads(probe.stdout[probe.stdout.index("[\n"):probe.stdout.rindex("]") + 1])
    by_name = {r["name"]: r for r in listed}
    assert by_name["mtbranch-trunk-minilm"]["trunks"] == ["minilm-l6"]
    for team in ("sentiment", "similarity", "entities"):
        assert by_name[f"mtbranch-{team}"]["branches"] == [team]
    assert by_name["mtbranch-policy-example"]["checks"] == ["max-task-layers", "metrics-required"]
    assert codes(by_name["broken"]["errors"]) == ["P001"]


# -- docs ----------------------------------------------------------------------------------------------------
def hookspec_names() -> list[str]:
    return sorted(n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT}_spec"))


def test_every_hookspec_is_documented() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    documented = sorted(set(re.findall(r"^### `(mtbranch_\w+)", doc, flags=re.M)))
    assert hookspec_names() == documented, "docs/plugins.md needs a '### `hook`' section for every hookspec"
    for name in hookspec_names():  # each section shows the signature
        assert re.search(rf"def {name}\(\) -> list\[\w+\]", doc), f"no signature for {name} in docs/plugins.md"
    assert len(hookspec_names()) >= 4


def test_plugin_codes_are_documented() -> None:
    from mtbranch.spec.findings import CODES

    doc = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for code in (c for c in CODES if c.startswith("P")):
        assert f"| {code} |" in doc, f"{code} missing from the table in docs/plugins.md"
