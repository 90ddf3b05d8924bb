"""The example team branches that `make demo` installs compose without warnings and say what they measured."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(ROOT.glob("examples/plugin-*/src/mtbranch_*/branch/manifest.json"))


def test_the_eight_example_branches_are_packaged() -> None:
    names = {json.loads(p.read_text())["name"] for p in MANIFESTS}
    assert names == {"sentiment", "similarity", "entities", "paraphrase", "intent", "slots", "banking", "clinc"}


def test_example_branches_share_one_max_length() -> None:
    """Mixed lengths make `mtbranch validate` warn K004 in `make demo` and truncate every task to the shortest."""
    lengths = {p.parent.parent.name: json.loads(p.read_text())["tokenizer"]["max_length"] for p in MANIFESTS}
    assert len(set(lengths.values())) == 1, lengths


def test_manifest_metrics_agree_with_the_training_record() -> None:
    for p in MANIFESTS:
        m = json.loads(p.read_text())
        training = m["training"]
        key = f"dev_{training['metric']}"
        assert abs(m["metrics"][key] - training["dev_metric"]) < 5e-7, (p, key)
        change = training.get("max_length_change")
        if change:  # re-measured at another length: the record says from what, and the manifest carries the new value
            assert change["to"] == m["tokenizer"]["max_length"] and change["dev_metric_after"] == training["dev_metric"]


def test_eight_task_summary_is_current() -> None:
    """docs/results/platform/eight-tasks.json (the table docs/results.md and docs/platform.md print) equals what
    the committed run files and the shipped manifests give now: a re-shipped branch cannot leave it stale."""
    from doc_scripts import load_script

    table = load_script("platform_table")
    assert json.loads(table.SUMMARY.read_text()) == table.summary(), "run: python docs/scripts/platform_table.py"


def test_package_versions_agree() -> None:
    """A re-shipped branch bumps its package: pyproject's version, the module's __version__ and the shipped
    manifest's version move together (they drifted when only pyproject.toml was bumped)."""
    import re
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 (tomli is a core dependency there)
        import tomli as tomllib

    for p in MANIFESTS:
        package = p.parents[3]
        declared = tomllib.loads((package / "pyproject.toml").read_text())["project"]["version"]
        init = (p.parents[1] / "__init__.py").read_text()
        found = re.search(r'^__version__ = "([^"]+)"$', init, re.M)
        assert found and found.group(1) == declared, (package.name, declared)
        # and the branch it ships says the same version (a new branch synced without a bump fails here)
        assert json.loads(p.read_text())["version"] == declared, (package.name, "manifest", declared)
