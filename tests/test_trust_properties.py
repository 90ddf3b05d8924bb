"""Property: whatever else a branch directory holds (nested folders, files, symlinks in and out, loops, links
to itself and its ancestors, FIFOs), validation reports exactly the dangerous entries (F001-F004) and the
composed artifact holds exactly the declared files: the trunk, the lock, and each branch's manifest.json and
weights file, all regular files, nothing else.

Fast by construction: one tiny trunk, one branch built and composed once; each example only lays out new
directory junk next to a copy of the branch's two files, validates it and writes the artifact.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtbranch.branch.model import BranchProvenance
from mtbranch.composition.artifact import LOCK_NAME, compose, save_composed, verify_artifact
from mtbranch.plugins.manager import PluginManager
from mtbranch.trunk.source import load_trunk_source
from mtbranch.validation.validator import Validator

from helpers import make_branch

DECLARED = ("manifest.json", "branch.safetensors")
NAMES = st.sampled_from(["a", "b", "docs", "README.md", ".hidden", "x y", "ünï", "weights", "sub"])
KINDS = {
    # kind: the finding it must cause (None: harmless)
    "file": None, "dir": None, "link-inside": None, "link-dangling-inside": None,
    "link-outside": "F001", "link-dangling-outside": "F001", "link-outside-dir": "F001",
    "link-loop": "F002", "link-self": "F003", "link-parent": "F003", "link-ancestor-abs": "F003",
    "fifo": "F004",
}
ENTRY = st.tuples(st.lists(NAMES, min_size=1, max_size=3), st.sampled_from(sorted(KINDS)))


class Setup:
    def __init__(self, base: Path, trunk: Path) -> None:
        self.base = base
        self.branch = make_branch(trunk, base / "branch", name="sentiment", depth=2, layers=1, seed=3)
        self.model = compose(load_trunk_source(trunk), [(self.branch, "directory")])
        self.validator = Validator(load_trunk_source(trunk), plugin_manager=PluginManager(autoload=False))
        self.outside = base / "outside.txt"
        self.outside.write_text("secret\n")
        self.out = base / "composed"
        save_composed(self.model, self.out)
        self.trunk_files = {str(p.relative_to(self.out)) for p in self.out.rglob("*")
                            if p.is_file() and p.relative_to(self.out).parts[0] == "trunk"}


@pytest.fixture(scope="module")
def setup(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "fsync", lambda _fd: None)  # durability is test_faults' business: here only what is copied
        yield Setup(tmp_path_factory.mktemp("trust-props"), tiny_bert_dir)


def _parents_are_plain_dirs(root: Path, parts: list[str]) -> bool:
    p = root
    for part in parts:
        p = p / part
        if os.path.lexists(p):
            if not stat.S_ISDIR(p.lstat().st_mode):
                return False
        else:
            p.mkdir()
    return True


def lay_out(root: Path, entries: list[tuple[list[str], str]], s: Setup) -> dict[str, str]:
    """Create the junk entries; returns {relative path: expected code} for the dangerous ones."""
    expected: dict[str, str] = {}
    for parts, kind in entries:
        if parts[0] in DECLARED or not _parents_are_plain_dirs(root, parts[:-1]):
            continue
        p = root.joinpath(*parts)
        if os.path.lexists(p):
            continue
        rel_root = os.path.relpath(root, p.parent)  # from the entry's folder back to the branch directory
        if kind == "file":
            p.write_text("notes\n")
        elif kind == "dir":
            p.mkdir()
        elif kind == "link-inside":
            p.symlink_to(os.path.join(rel_root, "manifest.json"))
        elif kind == "link-dangling-inside":
            p.symlink_to(os.path.join(rel_root, "no-such-file"))
        elif kind == "link-outside":
            p.symlink_to(s.outside)
        elif kind == "link-dangling-outside":
            p.symlink_to(s.base / "no-such-file")
        elif kind == "link-outside-dir":
            p.symlink_to(s.branch)  # another directory (the original branch), outside this one
        elif kind == "link-loop":
            p.symlink_to(p.name)  # resolves to itself
        elif kind == "link-self":
            p.symlink_to(".")
        elif kind == "link-parent":
            p.symlink_to("..")
        elif kind == "link-ancestor-abs":
            p.symlink_to(root.parent)
        elif kind == "fifo":
            os.mkfifo(p)
        code = KINDS[kind]
        if code is not None:
            expected[str(p.relative_to(root))] = code
    return expected


@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=st.lists(ENTRY, max_size=8))
def test_compose_copies_exactly_the_declared_files(setup: Setup, entries: list[tuple[list[str], str]]) -> None:
    root = Path(tempfile.mkdtemp(dir=setup.base)) / "sentiment"
    root.mkdir()
    try:
        for name in DECLARED:
            shutil.copyfile(setup.branch / name, root / name)
        expected = lay_out(root, entries, setup)
        event(f"dangerous entries: {min(len(expected), 3)}{'+' if len(expected) > 3 else ''}")
        res, findings = setup.validator.check_branch(root)
        found: dict[str, Any] = {str(Path(f.location or "").relative_to(root)): f.code
                                 for f in findings if f.code.startswith("F")}
        assert found == expected, findings
        assert all(f.severity == "error" for f in findings if f.code in set(expected.values()))
        assert res.checks["files"] == ("failed" if expected else "passed")
        assert not [f for f in findings if not f.code.startswith("F")], findings  # the branch itself is fine
        # compose copies the declared files only, whatever validation said (here it is bypassed on purpose)
        setup.model.branches[0].provenance = BranchProvenance(path=root)
        lock = save_composed(setup.model, setup.out)
        want = setup.trunk_files | {f"branches/sentiment/{n}" for n in DECLARED}
        assert set(lock.files) == want
        on_disk = {str(p.relative_to(setup.out)) for p in setup.out.rglob("*") if not p.is_dir()}
        assert on_disk == want | {LOCK_NAME}
        assert all(stat.S_ISREG((setup.out / f).lstat().st_mode) for f in on_disk)
        assert verify_artifact(setup.out) == []
    finally:
        shutil.rmtree(root.parent)
