"""One guard for every writer (issue 30, item 1): each command that writes, found by introspecting the click
command tree (tests/writers.py), is driven against every hostile target and must refuse (exit 1) before it
reads or writes anything, leaving the target as it was."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from writers import (
    DOC,
    END,
    INPUTS,
    NOT_OUTPUTS,
    START,
    TARGETS,
    WRITERS,
    Fixture,
    Writer,
    earlier_output,
    path_params,
    snapshot,
    table,
)

from mtbranch.cli.main import cli
from mtbranch.composition.artifact import compose, save_composed
from mtbranch.io.guard import DIR_KINDS, FILE_KINDS, OutputError, check_output
from mtbranch.trunk.source import load_trunk_source

from helpers import make_branch


@pytest.fixture(scope="module")
def fx(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    base = tmp_path_factory.mktemp("writers")
    branch = make_branch(tiny_bert_dir, base / "sentiment", name="sentiment", depth=2, layers=1, seed=1)
    composed = base / "composed"
    save_composed(compose(load_trunk_source(tiny_bert_dir), [(branch, "directory")]), composed)
    data = base / "train.tsv"
    data.write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n")
    return Fixture(trunk=tiny_bert_dir, branch=branch, composed=composed, data=data, work=base)


def test_every_path_option_is_an_input_or_a_driven_writer() -> None:
    """A new command or option that takes a path is an output until it is listed as an input."""
    driven = {(w.command, w.param) for w in WRITERS}
    found = path_params(cli)
    unclassified = [p for p in found if p not in INPUTS and p not in NOT_OUTPUTS and p not in driven]
    assert unclassified == [], f"add these to tests/writers.py (WRITERS, INPUTS or NOT_OUTPUTS): {unclassified}"
    stale = sorted((INPUTS | set(NOT_OUTPUTS) | (driven - {("build", "recipe out")})) - set(found))
    assert stale == [], f"tests/writers.py lists parameters no command has: {stale}"
    assert {w.kind for w in WRITERS} == set(DIR_KINDS) | set(FILE_KINDS)  # every kind of output is driven


def _target(kind: str, w: Writer, fx: Fixture, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if kind == "fifo":
        os.mkfifo(tmp / "pipe")
        return str(tmp / "pipe")
    if kind == "device":
        if os.geteuid() == 0:  # a device node of our own: /dev/null itself is never put at risk
            os.mknod(tmp / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
            return str(tmp / "null")
        return "/dev/null"  # not root: the rename into /dev could not happen anyway
    if kind == "own-input":
        return str(w.own_input(fx))
    if kind == "inside-input":
        (fx.work / "bench").mkdir(exist_ok=True)
        (fx.work / "bench" / "notes.txt").write_text("mine")
        return str(w.inside_input(fx))
    if kind == "foreign":
        d = tmp / "project"
        (d / ".git").mkdir(parents=True)
        (d / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        (d / "README.md").write_text("# mine\n")
        (d / "NOTES").write_text("notes\n")
        earlier_output(d, w.kind)  # even an earlier output of its kind: the user's files are not its
        return str(d)
    if kind == "symlink":
        (tmp / "real").mkdir()
        (tmp / "link").symlink_to(tmp / "real", target_is_directory=True)
        return str(tmp / "link")
    assert kind == "home"
    home = tmp / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    monkeypatch.setenv("HOME", str(home))
    return "~"


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("writer", WRITERS, ids=[f"{w.command}:{w.param}" for w in WRITERS])
def test_writer_refuses_hostile_target(writer: Writer, target: str, fx: Fixture, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = _target(target, writer, fx, tmp_path, monkeypatch)
    args = writer.args(fx, out)
    before = snapshot(tmp_path, fx.work)
    r = CliRunner().invoke(cli, args)
    text = r.output
    assert r.exit_code == 1, (args, text)
    assert "internal error" not in text and "Traceback" not in text, text
    needle = TARGETS[target][1]
    if target == "foreign":
        needle = "NOTES" if writer.kind in DIR_KINDS else "directory"
    elif target == "home":
        needle = "thesis.tex" if writer.kind in DIR_KINDS else "directory"
    assert needle in text, (args, text)
    after = snapshot(tmp_path, fx.work)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:5]
    assert not (cwd / "~").exists()  # `~` is the home folder, never a new folder named "~"


def test_guard_refuses_the_real_dev_null_for_every_kind() -> None:
    """The check itself, on the machine's own /dev/null: refused before anything is opened for writing."""
    for kind in [*DIR_KINDS, *FILE_KINDS]:
        with pytest.raises(OutputError, match="is a device"):
            check_output("/dev/null", kind)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_earlier_output_of_the_same_kind_is_still_replaceable(tmp_path: Path) -> None:
    for kind in DIR_KINDS:
        d = tmp_path / kind
        d.mkdir()
        earlier_output(d, kind)
        assert check_output(d, kind) == d
        (d / "NOTES").write_text("x")
        with pytest.raises(OutputError, match="also holds NOTES"):
            check_output(d, kind)
    for kind, body in {"predictions": b'{"line": 1, "text": "x", "results": {}}\n', "table": b"| L | dev |\n",
                       "json": b'{"a": 1}\n', "png": b"\x89PNG\r\n\x1a\n"}.items():
        f = tmp_path / f"{kind}.out"
        f.write_bytes(body)
        assert check_output(f, kind) == f
        f.write_text("my own data\n")
        with pytest.raises(OutputError, match="not an earlier"):
            check_output(f, kind)


def test_writers_table_in_docs() -> None:
    text = DOC.read_text()
    assert START in text and END in text
    shown = text[text.index(START) + len(START):text.index(END)].strip()
    assert shown == table(), "docs/reliability.md is stale: run `python tests/writers.py`"


def test_a_branch_with_its_generated_card_is_replaceable_a_team_readme_is_not(tmp_path: Path) -> None:
    """save_branch writes the model card (README.md) beside the manifest: an earlier branch with its card is an
    earlier output; a README a team wrote there is theirs and is refused by name."""
    import shutil

    shipped = Path(__file__).parent.parent / "examples/plugin-sentiment/src/mtbranch_sentiment/branch"
    art = tmp_path / "b"
    art.mkdir()
    for name in ("manifest.json", "README.md"):  # the weights need not be there for the guard
        shutil.copy(shipped / name, art / name)
    assert check_output(art, "branch") == art.absolute()
    (art / "README.md").write_text("# our notes\n", encoding="utf-8")
    with pytest.raises(OutputError, match=r"README\.md"):
        check_output(art, "branch")
