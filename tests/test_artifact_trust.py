"""Artifacts you can trust (issue 13): what compose copies, where it writes, what the lock proves.

One test (or a few) per item: declared files only and links never followed; the output guard; two real
processes writing one output; umask modes; the lock cross-checked; the fingerprint cache keyed on content;
non-finite outputs refused; environment errors as user errors with the previous artifact intact.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import mtbranch
from mtbranch.branch.model import BranchProvenance
from mtbranch.cli.main import cli
from mtbranch.composition.artifact import LOCK_NAME, compose, load, save_composed, verify_artifact
from mtbranch.errors import FileAccessError, MtbranchError
from mtbranch.io.atomic import atomic_directory, write_bytes_atomic
from mtbranch.io.guard import OutputError
from mtbranch.plugins.manager import PluginManager
from mtbranch.trunk.fingerprint import compute_chain, fingerprint_chain
from mtbranch.trunk.source import load_trunk_source
from mtbranch.validation.validator import Validator

from conftest import make_bert_dir
from helpers import make_branch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    b = tmp_path_factory.mktemp("trust")
    return {
        "trunk": tiny_bert_dir,
        "sentiment": make_branch(tiny_bert_dir, b / "sentiment", name="sentiment", depth=2, layers=1, seed=1),
        "entities": make_branch(tiny_bert_dir, b / "entities", name="entities", depth=3, layers=1,
                                head="token_classification", seed=2),
    }


def run(*args: object) -> tuple[int, str]:
    """Exit status and output, with the console's line wrapping undone."""
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.output.replace("\n", "")


def codes(branch: Path, trunk: Path) -> list[str]:
    report = Validator(load_trunk_source(trunk), plugin_manager=PluginManager(autoload=False)).validate(
        [(branch, "directory")])
    return [f.code for f in report.findings]


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def files_of(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir() or p.is_symlink()}


# -- 1. what a branch contributes -----------------------------------------------------------------------------
def test_a_symlink_out_is_a_finding_and_never_copied(base: dict[str, Path], tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("API_KEY=hunter2\n")
    b = tmp_path / "sentiment"
    shutil.copytree(base["sentiment"], b)
    (b / "README.md").unlink()  # the branch's model card, replaced by a link out
    (b / "README.md").symlink_to(secret)
    assert codes(b, base["trunk"]) == ["F001"]
    code, out = run("validate", "--no-plugins", "--trunk", base["trunk"], "--branch", b)
    assert code == 1 and "F001" in out and "README.md" in out
    code, out = run("compose", "--no-plugins", "--trunk", base["trunk"], "--branch", b, "-o", tmp_path / "c")
    assert code == 1 and "F001" in out and not (tmp_path / "c").exists()
    # bypassing validation (a branch loaded by hand) still copies the declared files only
    model = compose(load_trunk_source(base["trunk"]), [(base["sentiment"], "directory")])
    model.branches[0].provenance = BranchProvenance(path=b)
    lock = save_composed(model, tmp_path / "c")
    assert set(lock.files) == {"branches/sentiment/manifest.json", "branches/sentiment/branch.safetensors",
                               *(f for f in lock.files if f.startswith("trunk/"))}
    assert not any("hunter2" in p.read_text(errors="replace") for p in (tmp_path / "c").rglob("*.md"))
    assert not (tmp_path / "c" / "branches" / "sentiment" / "README.md").exists()


def test_links_to_ancestors_loops_and_special_files_are_findings(base: dict[str, Path], tmp_path: Path) -> None:
    b = tmp_path / "sentiment"
    shutil.copytree(base["sentiment"], b)
    (b / "nested" / "deeper").mkdir(parents=True)
    (b / "nested" / "deeper" / "up").symlink_to("../..")  # the branch directory itself: copytree never ends
    (b / "grandparent").symlink_to(tmp_path.parent)  # an ancestor outside
    (b / "loop-a").symlink_to("loop-b")
    (b / "loop-b").symlink_to("loop-a")
    os.mkfifo(b / "pipe")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(b / "sock"))
        found = Validator(load_trunk_source(base["trunk"]),
                          plugin_manager=PluginManager(autoload=False)).validate([(b, "directory")]).findings
    by_file = {Path(f.location or "").name: f.code for f in found}
    assert by_file == {"up": "F003", "grandparent": "F003", "loop-a": "F002", "loop-b": "F002", "pipe": "F004",
                       "sock": "F004"}, found
    assert all(f.severity == "error" and f.hint for f in found)
    # compose of that directory (validation bypassed) takes only the two declared files, and does not hang
    model = compose(load_trunk_source(base["trunk"]), [(base["sentiment"], "directory")])
    model.branches[0].provenance = BranchProvenance(path=b)
    save_composed(model, tmp_path / "c")
    assert sorted(os.listdir(tmp_path / "c" / "branches" / "sentiment")) == ["branch.safetensors", "manifest.json"]


def test_harmless_extras_compose_but_stay_out(base: dict[str, Path], tmp_path: Path) -> None:
    b = tmp_path / "sentiment"
    shutil.copytree(base["sentiment"], b)
    (b / ".gitkeep").write_text("")
    (b / "docs").mkdir()
    (b / "docs" / "card.md").write_text("# model card\n")
    (b / "link-inside").symlink_to("docs/card.md")
    assert codes(b, base["trunk"]) == []
    code, out = run("compose", "--no-plugins", "--trunk", base["trunk"], "--branch", b, "-o", tmp_path / "c")
    assert code == 0, out
    assert sorted(os.listdir(tmp_path / "c" / "branches" / "sentiment")) == ["branch.safetensors", "manifest.json"]
    assert verify_artifact(tmp_path / "c") == []


# -- 2. where compose writes -----------------------------------------------------------------------------------
def test_output_that_is_not_an_artifact_is_refused(base: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("my notes\n")
    (work / "src").mkdir()
    before = tree(work)
    cwd = os.getcwd()
    os.chdir(work)
    try:  # `-o .` in a working directory
        code, out = run("compose", "--no-plugins", "--trunk", base["trunk"], "--branch", base["sentiment"], "-o", ".")
    finally:
        os.chdir(cwd)
    assert code == 1, out
    assert "not empty" in out and "notes.txt" in out and "hint:" in out and "internal error" not in out
    assert tree(work) == before and sorted(os.listdir(work)) == ["notes.txt", "src"]
    # a branch artifact is not replaced by a composed one either
    b = tmp_path / "b"
    shutil.copytree(base["sentiment"], b)
    code, out = run("compose", "--no-plugins", "--trunk", base["trunk"], "--branch", base["sentiment"], "-o", b)
    assert code == 1 and "is a branch artifact, not a composed artifact" in out
    # an empty directory and an earlier composed artifact are fine
    (tmp_path / "empty").mkdir()
    for _ in range(2):
        code, out = run("compose", "--no-plugins", "--trunk", base["trunk"], "--branch", base["sentiment"],
                        "-o", tmp_path / "empty")
        assert code == 0, out


@pytest.mark.parametrize("where", ["branch", "parent-of-branch", "inside-branch", "inside-trunk", "trunk"])
def test_output_overlapping_an_input_is_refused_before_writing(where: str, base: dict[str, Path],
                                                                tmp_path: Path) -> None:
    trunk = tmp_path / "trunk"
    shutil.copytree(base["trunk"], trunk)
    b = tmp_path / "teams" / "sentiment"
    shutil.copytree(base["sentiment"], b)
    out = {"branch": b, "parent-of-branch": tmp_path / "teams", "inside-branch": b / "out",
           "inside-trunk": trunk / "composed", "trunk": trunk}[where]
    before = tree(tmp_path)
    code, text = run("compose", "--no-plugins", "--trunk", trunk, "--branch", b, "-o", out)
    assert code == 1 and "input" in text and "hint:" in text, text
    assert tree(tmp_path) == before
    assert not [p for p in tmp_path.rglob(".*tmp-*")] and (out.is_dir() or not out.exists())
    with pytest.raises(OutputError):  # the Python API refuses too
        save_composed(compose(load_trunk_source(trunk), [(b, "directory")]), out)
    assert tree(tmp_path) == before


def test_every_writer_uses_the_guard(base: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n")
    c = tmp_path / "c"
    save_composed(compose(load_trunk_source(base["trunk"]), [(base["sentiment"], "directory")]), c)
    calls = {
        "train": ["train", "--trunk", base["trunk"], "--task", "classification", "--train", data, "--dev", data,
                  "--text-col", "sentence", "--label-col", "label", "--name", "s", "-o", work],
        "train-over-data": ["train", "--trunk", base["trunk"], "--task", "classification", "--train", data,
                            "--dev", data, "--name", "s", "-o", tmp_path],
        "distill": ["distill", "--trunk", base["trunk"], "--teacher", base["sentiment"], "--student-layers", "1",
                    "--train", data, "--dev", data, "-o", base["sentiment"]],
        "import-hf": ["import-hf", base["trunk"], "--trunk", base["trunk"], "--layers", "1", "--name", "x",
                      "-o", work],
        "export-onnx": ["export-onnx", c, "-o", c],
        "update": ["update", c, "--put", c / "branches" / "sentiment"],
    }
    for name, args in calls.items():
        code, out = run(*args)
        assert code == 1 and ("not empty" in out or "input" in out), (name, out)
    assert (work / "keep.txt").read_text() == "x" and sorted(os.listdir(work)) == ["keep.txt"]
    assert verify_artifact(c) == []
    # the Python writers refuse as well
    from mtbranch.branch.model import load_branch, save_branch

    with pytest.raises(OutputError, match="not empty"):
        save_branch(load_branch(base["sentiment"]), work)


def test_guard_rules(tmp_path: Path) -> None:
    from mtbranch.io.guard import check_output

    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "missing", "composed") == tmp_path / "missing"
    assert check_output(tmp_path / "empty", "branch") == tmp_path / "empty"
    art = {"composed": ("mtbranch.lock.json", "{}"), "onnx": ("onnx.json", "{}"),
           "branch": ("manifest.json", '{"name": "x", "trunk": {}, "weights": {}}')}
    for kind, (marker, text) in art.items():
        (tmp_path / kind).mkdir()
        (tmp_path / kind / marker).write_text(text)
        check_output(tmp_path / kind, kind)  # an earlier artifact of that kind may be replaced
        for other in art:
            if other != kind:
                with pytest.raises(OutputError, match=r"is an? .*, not an? "):
                    check_output(tmp_path / kind, other)
        (tmp_path / kind / "NOTES.md").write_text("x")  # ... but not with the user's files in it
        with pytest.raises(OutputError, match=r"also holds NOTES\.md"):
            check_output(tmp_path / kind, kind)
    (tmp_path / "npm").mkdir()
    (tmp_path / "npm" / "manifest.json").write_text('{"name": "web app"}')  # not a branch manifest
    with pytest.raises(OutputError, match="not empty"):
        check_output(tmp_path / "npm", "branch")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        check_output(tmp_path / "file", "composed")
    (tmp_path / "current").symlink_to(tmp_path / "composed")
    with pytest.raises(OutputError, match="symbolic link") as info:
        check_output(tmp_path / "current", "composed")
    assert str(tmp_path / "composed") in str(info.value)
    with pytest.raises(OutputError, match="output is also an input"):
        check_output(tmp_path / "current", "composed", inputs=[tmp_path / "composed"])


# -- 3. concurrent writers -------------------------------------------------------------------------------------
WRITER = """
import sys, time
from pathlib import Path
from mtbranch.io.atomic import atomic_directory
out, me, signals = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
def wait(name):
    deadline = time.time() + 60
    while not (signals / name).exists():
        if time.time() > deadline:
            sys.exit("timed out waiting for " + name)
        time.sleep(0.02)
if me == "A":
    with atomic_directory(out) as tmp:
        (tmp / "part1").write_text("A")
        (signals / "A-writing").touch()
        wait("B-done")  # B runs its whole write while A's temporary directory is half-written
        (tmp / "part2").write_text("A")
else:
    wait("A-writing")
    with atomic_directory(out) as tmp:
        (tmp / "part1").write_text("B")
        (tmp / "part2").write_text("B")
    (signals / "B-done").touch()
print("ok", me)
"""


def test_two_processes_writing_one_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "part1").write_text("old")
        (tmp / "part2").write_text("old")
    signals = tmp_path / "signals"
    signals.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(out), who, str(signals)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for who in ("A", "B")]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    content = {p.name: p.read_text() for p in out.iterdir()}
    assert content == {"part1": "A", "part2": "A"}  # A swapped in last: one whole version, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "signals", "writer.py"]  # nothing left over


COMPOSER = """
import sys
from pathlib import Path
from mtbranch.composition.artifact import compose, save_composed
from mtbranch.trunk.source import load_trunk_source
trunk, branch, out = sys.argv[1:4]
for _ in range(3):
    save_composed(compose(load_trunk_source(trunk), [(Path(branch), "directory")]), out)
print("ok")
"""


@pytest.mark.slow
def test_two_compose_processes_race_to_one_output(base: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c"
    script = tmp_path / "composer.py"
    script.write_text(COMPOSER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTBRANCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(base["trunk"]), str(base[name]), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name in ("sentiment", "entities")]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert verify_artifact(out) == []  # one whole artifact, whichever won
    assert load(out).task_names in (["sentiment"], ["entities"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "composer.py"]


def test_stale_temporaries_are_removed_only_when_abandoned(tmp_path: Path) -> None:
    from mtbranch.io import atomic

    out = tmp_path / "out"
    live = tmp_path / f".out.tmp-{atomic._host_tag()}-{os.getppid()}-abcd"  # our parent: alive
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    dead = tmp_path / f".out.tmp-{atomic._host_tag()}-{dead_pid}-abcd"
    other_host = tmp_path / f".out.old-00000000-{dead_pid}-abcd"
    legacy = tmp_path / ".out.tmp-xyz"
    for d in (live, dead, other_host, legacy):
        d.mkdir()
    with atomic_directory(out) as tmp:
        (tmp / "f").write_text("x")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["out", live.name, other_host.name, legacy.name])  # only the dead writer's went


# -- 4. permissions -----------------------------------------------------------------------------------------
@pytest.fixture()
def umask() -> Iterator[object]:
    saved = os.umask(0o022)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(saved)


def modes(d: Path) -> set[tuple[str, int]]:
    return {("d" if p.is_dir() else "f", stat.S_IMODE(p.stat().st_mode)) for p in [d, *d.rglob("*")]}


@pytest.mark.parametrize(("mask", "fmode", "dmode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_written_files_follow_the_umask(mask: int, fmode: int, dmode: int, umask: object, base: dict[str, Path],
                                        tmp_path: Path) -> None:
    from mtbranch.branch.model import load_branch, save_branch

    umask(mask)  # type: ignore[operator]
    save_composed(compose(load_trunk_source(base["trunk"]), [(base["sentiment"], "directory")]), tmp_path / "c")
    assert modes(tmp_path / "c") == {("f", fmode), ("d", dmode)}
    save_branch(load_branch(base["sentiment"]), tmp_path / "b")
    assert modes(tmp_path / "b") == {("f", fmode), ("d", dmode)}
    write_bytes_atomic(tmp_path / "cache" / "x.json", b"{}")
    assert stat.S_IMODE((tmp_path / "cache" / "x.json").stat().st_mode) == fmode


def test_a_permission_error_is_reported_as_one(base: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    c = tmp_path / "c"
    save_composed(compose(load_trunk_source(base["trunk"]), [(base["sentiment"], "directory")]), c)
    from mtbranch.composition import artifact
    from mtbranch.spec import lock as lock_file

    def denied(path: object, *args: object, **kwargs: object) -> object:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    with monkeypatch.context() as m:  # the lock file unreadable (as for another user's 0600 file)
        m.setattr(lock_file, "read_json_object", denied)
        with pytest.raises(FileAccessError, match="Permission denied") as info:
            load(c)
        assert "edited or corrupted" not in str(info.value) and LOCK_NAME in str(info.value)
        code, out = run("verify", c)
        assert code == 1 and "Permission denied" in out and "corrupted" not in out and LOCK_NAME in out
    with monkeypatch.context() as m:  # a weights file unreadable
        m.setattr(artifact, "sha256_file", denied)
        with pytest.raises(FileAccessError, match="Permission denied"):
            verify_artifact(c)
        code, out = run("predict", c, "the film")
        assert code == 1 and "Permission denied" in out and "internal error" not in out


# -- 5. the lock is checked, not trusted ----------------------------------------------------------------------
def edit_lock(c: Path, fn: object) -> None:
    lock = json.loads((c / LOCK_NAME).read_text())
    fn(lock)  # type: ignore[operator]
    (c / LOCK_NAME).write_text(json.dumps(lock))


@pytest.mark.parametrize("edit", ["version", "head", "attach_depth", "num_layers", "sha256", "fingerprint",
                                  "duplicate", "dropped", "file-for-no-branch", "kept-layers"])
def test_lock_entries_must_agree_with_the_files(edit: str, base: dict[str, Path], tmp_path: Path) -> None:
    c = tmp_path / "c"
    save_composed(compose(load_trunk_source(base["trunk"]),
                          [(base["sentiment"], "directory"), (base["entities"], "directory")]), c)
    assert verify_artifact(c) == []

    def fn(lock: dict) -> None:
        e = lock["branches"][0]
        if edit == "version":
            e["version"] = "9.9.9"
        elif edit == "head":
            e["head"] = "regression"
        elif edit in ("attach_depth", "num_layers"):
            e[edit] += 1
        elif edit == "sha256":
            e["sha256"] = "0" * 64
        elif edit == "fingerprint":
            lock["trunk"]["fingerprints"][1] = "0" * 64
        elif edit == "duplicate":
            lock["branches"].append(dict(e))
        elif edit == "dropped":
            lock["branches"].pop(0)
        elif edit == "file-for-no-branch":
            (c / "notes.txt").write_text("hi")
            lock["files"]["notes.txt"] = __import__("hashlib").sha256(b"hi").hexdigest()
        elif edit == "kept-layers":
            lock["trunk"]["kept_layers"] = 2

    edit_lock(c, fn)
    problems = verify_artifact(c)
    assert problems, edit
    with pytest.raises(mtbranch.errors.IntegrityError):
        load(c)
    code, out = run("verify", c)
    assert code == 1, out


def test_update_keeps_the_full_trunks_layer_count(base: dict[str, Path], tmp_path: Path) -> None:
    c = tmp_path / "c"
    lock = save_composed(compose(load_trunk_source(base["trunk"]),
                                 [(base["sentiment"], "directory"), (base["entities"], "directory")]), c)
    assert lock.overhead.text == "3 + 2 = 5 of 8, 62.5%"  # 4-layer trunk kept to depth 3
    code, out = run("update", c, "--put", base["sentiment"])  # a no-op put
    assert code == 0 and "5 of 8, 62.5%" in out, out
    after = json.loads((c / LOCK_NAME).read_text())
    assert after["overhead"] == lock.overhead.model_dump() and after["trunk"]["num_layers"] == 4
    code, out = run("update", c, "--remove", "entities")
    assert code == 0, out
    after = json.loads((c / LOCK_NAME).read_text())
    assert after["trunk"]["num_layers"] == 4 and after["overhead"]["single_task_layers"] == 4
    assert after["overhead"]["ratio"] <= 1.0 and verify_artifact(c) == []


# -- 6. fingerprint cache --------------------------------------------------------------------------------------
def test_fingerprint_cache_sees_a_trunk_replaced_with_its_mtime_kept(tmp_path: Path) -> None:
    a = make_bert_dir(tmp_path / "a", seed=1)
    b = make_bert_dir(tmp_path / "b", seed=2)
    src = load_trunk_source(a)
    first = fingerprint_chain(src.weights, src.structure)
    assert first == compute_chain(src.weights, src.structure)
    st = src.weights.stat()
    # `cp -p b a`: the same inode rewritten in place, same size and header, the mtime put back
    src.weights.write_bytes((b / "model.safetensors").read_bytes())
    os.utime(src.weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert src.weights.stat().st_mtime_ns == st.st_mtime_ns and src.weights.stat().st_size == st.st_size
    again = fingerprint_chain(src.weights, src.structure)
    assert again == compute_chain(src.weights, src.structure) != first


# -- 7. outputs are finite or refused --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def overflowing(base: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from safetensors.torch import load_file, save_file

    from mtbranch.io.files import sha256_file

    d = tmp_path_factory.mktemp("overflow") / "sentiment"
    shutil.copytree(base["sentiment"], d)
    state = load_file(str(d / "branch.safetensors"))
    state["head.classifier.weight"].fill_(3e38)  # finite, near float32's maximum
    save_file(state, str(d / "branch.safetensors"), metadata={"format": "pt"})
    m = json.loads((d / "manifest.json").read_text())
    m["weights"]["sha256"] = sha256_file(d / "branch.safetensors")
    (d / "manifest.json").write_text(json.dumps(m))
    from mtbranch.branch.card import card_text, load_manifest

    (d / "README.md").write_text(card_text(load_manifest(d)))  # the card follows the re-exported manifest
    c = d.parent / "c"
    save_composed(compose(load_trunk_source(base["trunk"]), [(d, "directory"), (base["entities"], "directory")]), c)
    return d, c


def test_weights_that_overflow_are_warned_about(overflowing: tuple[Path, Path], base: dict[str, Path]) -> None:
    d, _ = overflowing
    assert codes(d, base["trunk"]) == ["W010"]
    code, out = run("validate", "--no-plugins", "--trunk", base["trunk"], "--branch", d)
    assert code == 0 and "W010" in out
    assert codes(base["sentiment"], base["trunk"]) == []


def test_non_finite_outputs_are_refused(overflowing: tuple[Path, Path]) -> None:
    _, c = overflowing
    model = load(c)
    with pytest.raises(MtbranchError, match="non-finite"):
        model.predict(["the film was good"], tasks=["sentiment"])
    assert model.predict(["the film was good"], tasks=["entities"])[0]["entities"]  # other tasks still answer
    code, out = run("predict", c, "the film was good", "--task", "sentiment", "--json")
    assert code == 1 and "non-finite" in out and "NaN" not in out.replace("NaN/Inf", "")


def test_non_finite_outputs_over_http(base: dict[str, Path], tmp_path: Path) -> None:
    """A request whose output is not finite gets the documented error body; the others are served."""
    import torch
    from fastapi.testclient import TestClient

    from mtbranch.serve.app import create_app

    c = tmp_path / "c"
    save_composed(compose(load_trunk_source(base["trunk"]),
                          [(base["sentiment"], "directory"), (base["entities"], "directory")]), c)
    model = load(c)
    with TestClient(create_app(model)) as client:
        deadline = time.time() + 120  # loading and warm-up run in the background
        while client.get("/ready").status_code != 200:
            assert time.time() < deadline, client.get("/ready").text
            time.sleep(0.05)
        with torch.no_grad():  # the sentiment branch now overflows (as weights near float32's maximum do)
            dict(model.branch("sentiment").named_parameters())["head.classifier.weight"].fill_(3e38)
        bad = client.post("/predict", json={"texts": ["the film"], "tasks": ["sentiment"]})
        assert bad.status_code == 422, bad.text
        assert "non-finite" in bad.json()["error"] and bad.json()["hint"]
        good = client.post("/predict", json={"texts": ["the film"], "tasks": ["entities"]})
        assert good.status_code == 200
        json.loads(good.text, parse_constant=lambda c: pytest.fail(f"{c} in the response"))


# -- 8. environment errors are user errors --------------------------------------------------------------------
@pytest.mark.parametrize(("err", "where", "needle"), [
    (errno.ENOSPC, "copy", "No space left on device"),
    (errno.EROFS, "mkdtemp", "Read-only file system"),
    (errno.EACCES, "mkdtemp", "Permission denied"),
    (errno.EACCES, "rename", "Permission denied"),
])
def test_environment_errors_exit_1_and_keep_the_previous_artifact(
        err: int, where: str, needle: str, base: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from mtbranch.io import atomic

    out = tmp_path / "c"
    save_composed(compose(load_trunk_source(base["trunk"]), [(base["sentiment"], "directory")]), out)
    before = tree(out)

    def fail(*args: object, **kwargs: object) -> object:
        raise OSError(err, os.strerror(err), None if where == "copy" else str(kwargs.get("dir") or args[-1]))

    if where == "copy":
        monkeypatch.setattr(shutil, "copyfileobj", fail)
    elif where == "mkdtemp":
        monkeypatch.setattr(tempfile, "mkdtemp", fail)
    else:
        real = os.rename

        def rename(a: str, b: str) -> None:  # refuse swapping the new version in
            if ".tmp-" in str(a):
                fail(a, b)
            real(a, b)
        monkeypatch.setattr(atomic.os, "rename", rename)
    code, text = run("compose", "--no-plugins", "--trunk", base["trunk"], "--branch", base["entities"], "-o", out)
    assert code == 1, text
    assert needle in text and str(tmp_path) in text and "hint:" in text
    assert "internal error" not in text and "Traceback" not in text
    monkeypatch.undo()
    assert tree(out) == before and verify_artifact(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_docs_state_the_trust_model() -> None:
    text = (ROOT / "docs" / "reliability.md").read_text()
    section = text[text.index("## Trust model"):text.index("## Integrity")]
    for needle in ("manifest.json", "weights.path", "never walk", "F001", "What the lock proves", "-o DIR"):
        assert needle in section, needle
    assert "umask" in text and "flock" in text
