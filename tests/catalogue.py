"""The bad-input catalogue: every entry is one bad input, what mtbranch must answer, and the CLI exit status.

Each entry's ``run`` builds the input from a good artifact (copied into a temporary directory), feeds it to
the Python API and/or the CLI, and returns what actually happened: the finding codes reported, or the error
class raised, plus the CLI exit status and output. ``tests/test_catalogue.py`` checks every entry and that
docs/reliability.md shows this table; ``python tests/catalogue.py`` rewrites that table.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import shutil
import struct
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from mtbranch.cli.main import cli
from mtbranch.io.files import sha256_file
from mtbranch.plugins import BranchLocation, Check, hookimpl
from mtbranch.plugins.manager import DISABLE_ENV, PluginManager, set_plugin_manager

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
START, END = "<!-- catalogue:start -->", "<!-- catalogue:end -->"


@dataclass
class Ctx:
    """What the runners build on: a tiny trunk, good branch artifacts and a composed artifact of them."""

    trunk: Path
    reseeded: Path  # same architecture, other weights
    wider: Path  # other hidden size
    branches: dict[str, Path]  # sentiment (single), similarity (pair, regression), entities (tokens)
    composed: Path
    model: Any  # mtbranch.load(composed)


@dataclass
class Outcome:
    got: list[str]  # finding codes, an error class name, or an observation such as "ok"
    exit: int | None = None  # CLI exit status (None: checked through the Python API only)
    output: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    input: str
    expect: str  # must be among Outcome.got
    exit: int | None  # expected CLI exit status; None = Python API only
    run: Callable[[Ctx, Path], Outcome]


# -- running things ---------------------------------------------------------------------------------------
def cli_run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"CLI raised {r.exception!r}")
    return r.exit_code, r.output


def api_error(fn: Callable[[], Any]) -> str:
    """The class name of what ``fn`` raises, or "ok"."""
    try:
        fn()
    except Exception as exc:
        return type(exc).__name__
    return "ok"


def validate(*branches: Path, trunk: Path | None, plugins: bool = False, strict: bool = False) -> Outcome:
    args = ["validate", "--format", "json"] + ([] if plugins else ["--no-plugins"])
    args += ["--trunk", str(trunk)] if trunk else []
    for b in branches:
        args += ["--branch", str(b)]
    code, out = cli_run(*args, *(["--strict"] if strict else []))
    report = json.loads(out[out.index("{"):])
    return Outcome([f["code"] for f in report["findings"]] or ["ok"], code, out)


# -- branch artifacts ---------------------------------------------------------------------------------------
def copy_branch(ctx: Ctx, tmp: Path, name: str = "sentiment") -> Path:
    d = tmp / name
    shutil.copytree(ctx.branches[name], d)
    return d


def edit(d: Path, path: str, value: Any = None, *, delete: bool = False) -> None:
    p = d / "manifest.json"
    data = json.loads(p.read_text())
    *parents, last = path.split(".")
    node = data
    for k in parents:
        node = node[k]
    if delete:
        del node[last]
    else:
        node[last] = value
    p.write_text(json.dumps(data))


def rehash(d: Path) -> None:
    """Record the weights file's new sha256, so only the defect under test is reported."""
    edit(d, "weights.sha256", sha256_file(d / "branch.safetensors"))


def branch_case(mutate: Callable[[Path, Ctx], None], trunk: str = "trunk") -> Callable[[Ctx, Path], Outcome]:
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        d = copy_branch(ctx, tmp)
        mutate(d, ctx)
        return validate(d, trunk=getattr(ctx, trunk))
    return run


def set_field(path: str, value: Any) -> Callable[[Path, Ctx], None]:
    return lambda d, _ctx: edit(d, path, value)


def manifest_text(text: str | bytes) -> Callable[[Path, Ctx], None]:
    def mutate(d: Path, _ctx: Ctx) -> None:
        (d / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return mutate


def huge_manifest(d: Path, _ctx: Ctx) -> None:
    with open(d / "manifest.json", "r+b") as fh:  # sparse: 17 MiB on paper, nothing on disk
        fh.truncate(17 * 1024 * 1024)


def duplicate_key(d: Path, _ctx: Ctx) -> None:
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text.replace('"name": "sentiment"', '"name": "sentiment", "name": "other"', 1))


def flip_weights_byte(d: Path, _ctx: Ctx) -> None:
    p = d / "branch.safetensors"
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF
    p.write_bytes(bytes(raw))


def weights_bytes(fn: Callable[[bytes], bytes]) -> Callable[[Path, Ctx], None]:
    def mutate(d: Path, _ctx: Ctx) -> None:
        p = d / "branch.safetensors"
        p.write_bytes(fn(p.read_bytes()))
        rehash(d)
    return mutate


def raw_safetensors(header: bytes | dict[str, Any], data: bytes = b"") -> Callable[[Path, Ctx], None]:
    def mutate(d: Path, _ctx: Ctx) -> None:
        raw = header if isinstance(header, bytes) else json.dumps(header).encode()
        (d / "branch.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data)
        rehash(d)
    return mutate


def tensors(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path, Ctx], None]:
    def mutate(d: Path, _ctx: Ctx) -> None:
        from safetensors.torch import load_file, save_file

        p = d / "branch.safetensors"
        state = load_file(str(p))
        fn(state)
        save_file(state, str(p), metadata={"format": "pt"})
        rehash(d)
    return mutate


def set_value(value: float) -> Callable[[dict[str, Any]], None]:
    def fn(state: dict[str, Any]) -> None:
        state["head.classifier.bias"][0] = value
    return fn


def escape_dotdot(d: Path, _ctx: Ctx) -> None:
    shutil.copy(d / "branch.safetensors", d.parent / "outside.safetensors")
    edit(d, "weights.path", "../outside.safetensors")


def escape_symlink(d: Path, _ctx: Ctx) -> None:
    shutil.move(d / "branch.safetensors", d.parent / "real.safetensors")
    (d / "branch.safetensors").symlink_to(d.parent / "real.safetensors")


def escape_absolute(d: Path, _ctx: Ctx) -> None:
    shutil.copy(d / "branch.safetensors", d.parent / "abs.safetensors")
    edit(d, "weights.path", str((d.parent / "abs.safetensors").resolve()))


def two_of_a_name(ctx: Ctx, tmp: Path) -> Outcome:
    a, b = copy_branch(ctx, tmp / "a"), copy_branch(ctx, tmp / "b")
    return validate(a, b, trunk=ctx.trunk)


def max_length_differs(ctx: Ctx, tmp: Path) -> Outcome:
    a = copy_branch(ctx, tmp / "a")
    b = copy_branch(ctx, tmp / "b", "entities")
    edit(b, "tokenizer.max_length", 32)
    return validate(a, b, trunk=ctx.trunk)


def missing_dir(ctx: Ctx, tmp: Path) -> Outcome:
    return validate(tmp / "no-such-branch", trunk=ctx.trunk)


def trunk_error(trunk: Path, branch: Path) -> Outcome:
    """API: resolve the trunk and validate against it; CLI: ``validate --trunk``."""
    from mtbranch.trunk.source import resolve_trunk
    from mtbranch.validation.validator import Validator

    got = api_error(lambda: Validator(resolve_trunk(str(trunk))).validate([(branch, "directory")]))
    code, out = cli_run("validate", "--no-plugins", "--trunk", trunk, "--branch", branch)
    return Outcome([got], code, out)


def missing_trunk(ctx: Ctx, tmp: Path) -> Outcome:
    return trunk_error(tmp / "no-trunk", ctx.branches["sentiment"])


def corrupt_trunk(ctx: Ctx, tmp: Path) -> Outcome:
    t = tmp / "trunk"
    shutil.copytree(ctx.trunk, t)
    (t / "model.safetensors").write_bytes(b"\x01" * 64)
    return trunk_error(t, ctx.branches["sentiment"])


# -- composed artifacts -----------------------------------------------------------------------------------
def artifact_case(mutate: Callable[[Path], None], *, verify: bool = True,
                  command: str = "predict") -> Callable[[Ctx, Path], Outcome]:
    """API: ``mtbranch.load(c, verify=...)``; CLI: ``predict c TEXT [--no-verify]`` (or ``verify c``)."""
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        import mtbranch

        c = tmp / "c"
        shutil.copytree(ctx.composed, c, symlinks=True)
        mutate(c)
        got = api_error(lambda: mtbranch.load(c, verify=verify))
        if command in ("verify", "inspect"):
            code, out = cli_run(command, c)
        else:
            code, out = cli_run("predict", c, "the film", "--task", "sentiment", *([] if verify else ["--no-verify"]))
        return Outcome([got], code, out)
    return run


def flip_byte(rel: str) -> Callable[[Path], None]:
    def mutate(c: Path) -> None:
        p = c / rel
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        p.write_bytes(bytes(raw))
    return mutate


def truncate(rel: str) -> Callable[[Path], None]:
    return lambda c: (c / rel).write_bytes((c / rel).read_bytes()[:300])


def lock_edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def mutate(c: Path) -> None:
        p = c / "mtbranch.lock.json"
        lock = json.loads(p.read_text())
        fn(lock)
        p.write_text(json.dumps(lock))
    return mutate


def lock_branch_escape(lock: dict[str, Any]) -> None:
    lock["branches"][0]["name"] = "../../elsewhere"


def lock_files_escape(lock: dict[str, Any]) -> None:
    lock["files"]["../outside.txt"] = "0" * 64


def lock_wrong_type(lock: dict[str, Any]) -> None:
    lock["branches"][0]["attach_depth"] = "deep"


def symlink_out(c: Path) -> None:
    tok = c / "trunk" / "tokenizer.json"
    outside = c.parent / "tokenizer.json"
    shutil.move(tok, outside)  # same bytes, but outside the artifact: still refused
    tok.symlink_to(outside)


def unlisted_file(c: Path) -> None:
    (c / "branches" / "sentiment" / "extra.py").write_text("print('hello')\n")


def no_lock(c: Path) -> None:
    (c / "mtbranch.lock.json").unlink()


# -- what a branch contributes, where compose writes, what the lock proves (issue 13) -------------------------
def link_out(d: Path, _ctx: Ctx) -> None:
    (d.parent / "secret.txt").write_text("API_KEY=hunter2\n")
    (d / "README.md").unlink(missing_ok=True)  # the branch's model card, replaced by a link out
    (d / "README.md").symlink_to(d.parent / "secret.txt")


def link_loop(d: Path, _ctx: Ctx) -> None:
    (d / "a").symlink_to("b")
    (d / "b").symlink_to("a")


def fifo(d: Path, _ctx: Ctx) -> None:
    os.mkfifo(d / "pipe")


def output_case(where: str) -> Callable[[Ctx, Path], Outcome]:
    """API: ``save_composed(compose(...), OUT)``; CLI: ``compose --branch B -o OUT`` (refused before writing)."""
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        from mtbranch.composition.artifact import compose, save_composed
        from mtbranch.trunk.source import load_trunk_source

        trunk = tmp / "trunk"
        shutil.copytree(ctx.trunk, trunk)
        b = copy_branch(ctx, tmp / "teams")
        out = {"not-empty": tmp / "work", "branch": b, "contains": tmp / "teams", "trunk": trunk / "out",
               "other-kind": tmp / "other"}[where]
        if where == "not-empty":
            out.mkdir()
            (out / "notes.txt").write_text("mine\n")
        elif where == "other-kind":
            copy_branch(ctx, tmp / "x")
            shutil.move(tmp / "x" / "sentiment", out)
        got = api_error(lambda: save_composed(compose(load_trunk_source(trunk), [(b, "directory")]), out))
        code, text = cli_run("compose", "--no-plugins", "--trunk", trunk, "--branch", b, "-o", out)
        return Outcome([got], code, text)
    return run


# -- reads that must not hang (issue 30, item 3) ---------------------------------------------------------------
HANG_SECONDS = 20.0  # a read still blocked by then is reported as "hung" (and released, so the suite goes on)


def not_a_file(what: str) -> Callable[[Path], None]:
    """Put a FIFO, a device (a link to /dev/null) or a directory where the file was."""
    def mutate(p: Path) -> None:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        if what == "fifo":
            os.mkfifo(p)
        elif what == "device":
            p.symlink_to("/dev/null")
        else:
            p.mkdir()
    return mutate


def no_hang(run: Callable[[Ctx, Path], Outcome]) -> Callable[[Ctx, Path], Outcome]:
    """Run a case; a FIFO still being waited for after HANG_SECONDS is opened for writing (which releases the
    reader with an empty file) and the outcome becomes "hung": the test then fails instead of blocking."""
    def guarded(ctx: Ctx, tmp: Path) -> Outcome:
        import threading

        fired = threading.Event()
        done = threading.Event()

        def release() -> None:
            if done.wait(HANG_SECONDS):
                return
            fired.set()
            while not done.wait(0.2):  # each blocked read (there may be several in turn) sees an empty file
                for p in tmp.rglob("*"):
                    with contextlib.suppress(OSError):
                        if p.is_fifo():
                            os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))

        watchdog = threading.Thread(target=release, daemon=True)
        watchdog.start()
        try:
            outcome = run(ctx, tmp)
        finally:
            done.set()
        return Outcome(["hung"], outcome.exit, outcome.output) if fired.is_set() else outcome
    return guarded


def artifact_file(rel: str, what: str, **kw: Any) -> Callable[[Ctx, Path], Outcome]:
    return no_hang(artifact_case(lambda c: not_a_file(what)(c / rel), **kw))


def branch_file(rel: str, what: str) -> Callable[[Ctx, Path], Outcome]:
    return no_hang(branch_case(lambda d, _ctx: not_a_file(what)(d / rel)))


def trunk_file(rel: str, what: str) -> Callable[[Ctx, Path], Outcome]:
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        t = tmp / "trunk"
        shutil.copytree(ctx.trunk, t)
        not_a_file(what)(t / rel)
        return trunk_error(t, ctx.branches["sentiment"])
    return no_hang(run)


def put_inside(ctx: Ctx, tmp: Path) -> Outcome:
    from mtbranch.composition.artifact import update_composed

    c = tmp / "c"
    shutil.copytree(ctx.composed, c)
    inside = c / "branches" / "sentiment"
    got = api_error(lambda: update_composed(c, put=[inside]))
    code, out = cli_run("update", c, "--put", inside)
    return Outcome([got], code, out)


def lock_version(lock: dict[str, Any]) -> None:
    lock["branches"][0]["version"] = "9.9.9"


def lock_duplicate(lock: dict[str, Any]) -> None:
    lock["branches"].append(dict(lock["branches"][0]))


def lock_fingerprint(lock: dict[str, Any]) -> None:
    lock["trunk"]["fingerprints"][0] = "0" * 64


def lock_drop_branch(lock: dict[str, Any]) -> None:
    lock["branches"] = [e for e in lock["branches"] if e["name"] != "entities"]


def file_for_no_branch(c: Path) -> None:
    (c / "branches" / "ghost").mkdir()
    (c / "branches" / "ghost" / "x.txt").write_text("x")
    digest = sha256_file(c / "branches" / "ghost" / "x.txt")
    lock_edit(lambda lock: lock["files"].__setitem__("branches/ghost/x.txt", digest))(c)


@contextlib.contextmanager
def failing(target: Any, name: str, exc: OSError) -> Iterator[None]:
    real = getattr(target, name)

    def fail(*_a: Any, **_k: Any) -> Any:
        raise exc
    setattr(target, name, fail)
    try:
        yield
    finally:
        setattr(target, name, real)


def disk_full(ctx: Ctx, tmp: Path) -> Outcome:
    import errno

    from mtbranch.composition.artifact import save_composed

    out = tmp / "c"
    shutil.copytree(ctx.composed, out)
    with failing(shutil, "copyfileobj", OSError(errno.ENOSPC, "No space left on device")):
        got = api_error(lambda: save_composed(ctx.model, out))
        code, text = cli_run("compose", "--no-plugins", "--trunk", ctx.trunk, "--branch", ctx.branches["sentiment"],
                             "-o", out)
    intact = sha256_file(out / "mtbranch.lock.json") == sha256_file(ctx.composed / "mtbranch.lock.json")
    return Outcome([got if intact and "No space left" in text else "?"], code, text)


def lock_unreadable(ctx: Ctx, tmp: Path) -> Outcome:
    import errno

    import mtbranch
    from mtbranch.spec import lock as lock_file

    lock = str(ctx.composed / "mtbranch.lock.json")
    with failing(lock_file, "read_json_object", PermissionError(errno.EACCES, "Permission denied", lock)):
        got = api_error(lambda: mtbranch.load(ctx.composed))
        code, out = cli_run("predict", ctx.composed, "the film")
    return Outcome([got if "Permission denied" in out and "corrupted" not in out else "?"], code, out)


def non_finite(ctx: Ctx, tmp: Path) -> Outcome:
    import mtbranch
    from mtbranch.composition.artifact import compose, save_composed
    from mtbranch.trunk.source import load_trunk_source

    d = copy_branch(ctx, tmp)
    tensors(lambda s: s["head.classifier.weight"].fill_(3e38))(d, ctx)
    save_composed(compose(load_trunk_source(ctx.trunk), [(d, "directory")]), tmp / "c")
    got = api_error(lambda: mtbranch.load(tmp / "c").predict(["the film"]))
    code, out = cli_run("predict", tmp / "c", "the film", "--json")
    return Outcome([got if "NaN" not in out.replace("NaN/Inf", "") else "?"], code, out)


# -- plugins ------------------------------------------------------------------------------------------------
class _RaisingBranches:
    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        raise RuntimeError("cannot find my package data")


class _WrongTypeBranches:
    @hookimpl
    def mtbranch_branches(self) -> Any:
        return {"name": "not a list of BranchLocation"}


class _RaisingCheck:
    @hookimpl
    def mtbranch_checks(self) -> list[Check]:
        def run(manifest: Any, path: Path) -> list[Any]:
            raise KeyError("owner")
        return [Check("needs-owner", run)]


class _WrongTypeCheck:
    @hookimpl
    def mtbranch_checks(self) -> list[Check]:
        return [Check("returns-text", lambda manifest, path: "looks fine to me")]


class _FamilyNoModelTypes:
    @hookimpl
    def mtbranch_trunk_families(self) -> list[Any]:
        from mtbranch.plugins import TrunkFamily

        return [TrunkFamily("mine", None, "mine.impl:Family")]  # type: ignore[arg-type]


class _FamilyBadRule:
    @hookimpl
    def mtbranch_trunk_families(self) -> list[Any]:
        from mtbranch.plugins import TensorRule, TrunkFamily

        return [TrunkFamily("mine", ("mine",), "mine.impl:Family", tensors=(TensorRule("(unclosed", "layer", "x"),))]


class _UnknownHook:
    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        return []

    def mtbranch_brnaches(self) -> list[BranchLocation]:  # a typo: a hook mtbranch does not know
        return []


def plugin_case(plugin: object, *, strict: bool = False) -> Callable[[Ctx, Path], Outcome]:
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        pm = PluginManager(autoload=False)
        pm.register(plugin, type(plugin).__name__.strip("_").lower())
        set_plugin_manager(pm)
        try:
            return validate(ctx.branches["sentiment"], trunk=ctx.trunk, plugins=True, strict=strict)
        finally:
            set_plugin_manager(None)
    return run


@contextlib.contextmanager
def installed(site: Path, module: str, source: str) -> Iterator[None]:
    """A distribution "pip-installed" into ``site``: the plugin manager sees its entry point only."""
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mtbranch]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    real = importlib.metadata.entry_points

    def only_site(**select: Any) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in real(**select) if ep.dist is not None and Path(str(ep.dist.locate_file(""))) == site]

    saved_env = os.environ.pop(DISABLE_ENV, None)
    sys.path.insert(0, str(site))
    importlib.metadata.entry_points = only_site  # type: ignore[assignment]
    set_plugin_manager(None)
    try:
        yield
    finally:
        importlib.metadata.entry_points = real  # type: ignore[assignment]
        sys.path.remove(str(site))
        sys.modules.pop(module, None)
        if saved_env is not None:
            os.environ[DISABLE_ENV] = saved_env
        set_plugin_manager(None)


def import_error_case(strict: bool) -> Callable[[Ctx, Path], Outcome]:
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        module = f"broken_plugin_{'strict' if strict else 'lenient'}"
        with installed(tmp / "site", module, "raise ImportError('needs a package that is not installed')\n"):
            return validate(ctx.branches["sentiment"], trunk=ctx.trunk, plugins=True, strict=strict)
    return run


# -- predict ------------------------------------------------------------------------------------------------
def predict_api(**kwargs: Any) -> Callable[[Ctx, Path], Outcome]:
    def run(ctx: Ctx, _tmp: Path) -> Outcome:
        return Outcome([api_error(lambda: ctx.model.predict(**kwargs))])
    return run


def predict_both(api: dict[str, Any], *args: str) -> Callable[[Ctx, Path], Outcome]:
    def run(ctx: Ctx, _tmp: Path) -> Outcome:
        code, out = cli_run("predict", ctx.composed, *args)
        return Outcome([api_error(lambda: ctx.model.predict(**api))], code, out)
    return run


def empty_strings(ctx: Ctx, _tmp: Path) -> Outcome:
    res = ctx.model.predict(["", "the film"], text_pairs=["", ""])
    ok = len(res) == 2 and all(set(r) == set(ctx.model.task_names) for r in res)
    ok = ok and res[0]["entities"]["entities"] == []
    code, out = cli_run("predict", ctx.composed, "", "--json")
    ok = ok and code == 0 and json.loads(out[out.index("["):])[0]["sentiment"]["label"] in ("negative", "positive")
    return Outcome(["ok: a result per task" if ok else "?"], code, out)


def tasks_as_string(ctx: Ctx, _tmp: Path) -> Outcome:
    res = ctx.model.predict(["the film"], tasks="sentiment")
    return Outcome(["ok: one task" if list(res[0]) == ["sentiment"] else "?"])


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def too_long(ctx: Ctx, _tmp: Path) -> Outcome:
    text = "the movie was very good and " * 400  # ~2,400 tokens; max_length is 64
    handler = _Capture()
    logger = logging.getLogger("mtbranch")
    logger.addHandler(handler)
    seen: list[int] = []
    hook = ctx.model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    try:
        res = ctx.model.predict([text, "bad"], tasks=["sentiment", "entities"])
    finally:
        hook.remove()
        logger.removeHandler(handler)
    warned = any("truncated" in m for m in handler.messages)
    ok = warned and max(seen) <= 64 and res[0]["sentiment"]["label"] in ("negative", "positive")
    code, out = cli_run("predict", ctx.composed, text, "--task", "sentiment")
    ok = ok and "truncated" in out
    return Outcome(["truncated, with a warning" if ok else "?"], code, out, [f"token widths {seen}"])


def ten_thousand(ctx: Ctx, _tmp: Path) -> Outcome:
    texts = [f"john visited paris {'and london ' * (i % 7)}{i}" for i in range(10_000)]
    batch_dims: list[int] = []
    # the batch the model actually runs: the first dimension of input_ids at every forward call
    hook = ctx.model.register_forward_pre_hook(lambda _m, args: batch_dims.append(args[0].shape[0]))
    try:
        res = ctx.model.predict(texts, tasks=["sentiment"])
    finally:
        hook.remove()
    ok = len(res) == 10_000 and max(batch_dims) == 32 and sum(batch_dims) == 10_000
    return Outcome(["micro-batches of <= 32" if ok else "?"], None, "",
                   [f"{len(batch_dims)} forward calls, largest batch {max(batch_dims)}"])


# -- hostile text, data files, plugins and API calls (issue 14) -----------------------------------------------
def strict_json(out: str) -> Any:
    """The whole of stdout must be the JSON document: nothing printed before or after it."""
    return json.loads(out)


def echo_literally(*texts: str, shown: tuple[str, ...] | None = None) -> Callable[[Ctx, Path], Outcome]:
    """CLI: ``predict c TEXT...`` prints each text as given (``shown``: the expected echo), exit 0."""
    def run(ctx: Ctx, _tmp: Path) -> Outcome:
        code, out = cli_run("predict", ctx.composed, *texts, "--task", "sentiment")
        lines = out.splitlines()
        ok = code == 0 and all(s in lines for s in (shown or texts))
        return Outcome(["ok: printed as given" if ok else "?"], code, out)
    return run


def markup_in_path(ctx: Ctx, tmp: Path) -> Outcome:
    missing = tmp / "art[/x] [red]y[/red]"
    code, out = cli_run("predict", missing, "the film")
    got = api_error(lambda: ctx.model.predict(["x"], tasks=["nope[/]"]))
    ok = str(missing) in out
    return Outcome([f"{got}: path shown as given" if ok else got], code, out)


def markup_in_output_paths(ctx: Ctx, tmp: Path) -> Outcome:
    """``compose -o`` and ``verify`` of an artifact whose path holds markup: printed as given, exit 0."""
    out = tmp / "out [/x] [red]y[/red]"
    code, text = cli_run("compose", "--no-plugins", "--trunk", ctx.trunk, "--branch", ctx.branches["sentiment"],
                         "-o", out)
    code2, text2 = cli_run("verify", out)
    ok = code == 0 and code2 == 0 and str(out) in text and str(out) in text2
    return Outcome(["ok: printed as given" if ok else "?"], max(code, code2), text + text2)


def argv_not_utf8(ctx: Ctx, _tmp: Path) -> Outcome:
    # what Python makes of the argv bytes b"caf\xe9" (latin-1) on a UTF-8 system: "caf\udce9" (surrogateescape)
    code, out = cli_run("predict", ctx.composed, "caf\udce9", "--task", "sentiment")
    ok = "byte 0xe9" in out and "TEXT #1" in out
    return Outcome(["MtbranchError" if ok else "?"], code, out)


def lone_surrogates_api(ctx: Ctx, _tmp: Path) -> Outcome:
    res = ctx.model.predict(["\ud800 john", "the film"], text_pairs=["x\udfff", "y"])
    ok = len(res) == 2 and all(set(r) == set(ctx.model.task_names) for r in res)
    return Outcome(["ok: a result per text" if ok else "?"])


def post_raw_bodies(ctx: Ctx, bodies: list[str]) -> list[str]:
    """Each JSON body sent as written (escapes and repeated keys kept) to /predict: "STATUS BODY" per body."""
    from fastapi.testclient import TestClient

    from mtbranch.serve.app import create_app

    got = []
    with TestClient(create_app(ctx.model)) as client:
        wait_ready(client)
        for body in bodies:
            r = client.post("/predict", content=body, headers={"content-type": "application/json"})
            got.append(f"{r.status_code} {r.text[:300]}")
    return got


def lone_surrogates_http(ctx: Ctx, _tmp: Path) -> Outcome:
    got = post_raw_bodies(ctx, ['{"texts": ["\\ud800", "the film"]}',
                                '{"texts": ["a", "b"], "text_pairs": ["\\udfff", "ok"]}'])
    ok = all(g.startswith("200") for g in got)
    return Outcome(["200: a result per text" if ok else "?"], None, "", got)


def wait_ready(client: Any) -> None:
    import time

    for _ in range(600):
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("server not ready")


def data_case(name: str, content: bytes, spec: dict[str, Any] | None = None, *, line: int | None = None,
              task: str = "classification", cli: bool = False) -> Callable[[Ctx, Path], Outcome]:
    """API: ``read_table(file, TableSpec(**spec))`` -> DataError naming the file and line; CLI: ``train``."""
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        from mtbranch.sdk.data import DataError, TableSpec, read_table

        p = tmp / name
        p.write_bytes(content)
        try:
            read_table(p, TableSpec(**{"label_kind": "score" if task == "regression" else "class", **(spec or {})}))
            got = "ok"
        except DataError as exc:
            got = "DataError" if exc.path == str(p) and exc.line == line else f"DataError at line {exc.line}"
        except Exception as exc:
            got = type(exc).__name__
        if not cli:
            return Outcome([got])
        assert spec is None, "the CLI rows read columns 0 and 1 of a TSV with a header"
        code, out = cli_run("train", "--task", task, "--train", p, "--dev", p, "--trunk", ctx.trunk,
                            "--name", "x", "-o", tmp / "out")
        return Outcome([got], code, out)
    return run


def latin1_with_encoding(ctx: Ctx, tmp: Path) -> Outcome:
    """``--encoding latin-1`` reaches the reader: line 2 decodes (API: "café"), line 3's extra tab is the error."""
    from mtbranch.sdk.data import TableSpec, read_table

    p = tmp / "latin1.tsv"
    p.write_bytes(b"text\tlabel\ncaf\xe9\tpos\nbad\tfilm\tneg\n")
    p2 = tmp / "ok.tsv"
    p2.write_bytes(b"text\tlabel\ncaf\xe9\tpos\n")
    decoded = read_table(p2, TableSpec(encoding="latin-1"))[0].text == "caf\u00e9"
    code, out = cli_run("train", "--task", "classification", "--train", p, "--dev", p, "--trunk", ctx.trunk,
                        "--encoding", "latin-1", "--name", "x", "-o", tmp / "out")
    ok = decoded and "line 3: row has 3 column(s)" in out
    return Outcome(["decoded; DataError at line 3" if ok else "?"], code, out)


def seq_line_separator(_ctx: Ctx, tmp: Path) -> Outcome:
    from mtbranch.sdk.data import read_seq_files

    (tmp / "seq.in").write_text("play\u2028the song\nstop it\n")
    (tmp / "seq.out").write_text("O O O\nO O\n")
    rows = read_seq_files(tmp / "seq.in", tmp / "seq.out")
    ok = [r.tokens for r in rows] == [["play", "the", "song"], ["stop", "it"]]
    return Outcome(["ok: 2 utterances" if ok else "?"], None, "", [repr(rows)])


class _PrintingHook:
    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        print("hello from a plugin hook")
        return []


def printing_hook(ctx: Ctx, _tmp: Path) -> Outcome:
    pm = PluginManager(autoload=False)
    pm.register(_PrintingHook(), "printing")
    set_plugin_manager(pm)
    try:
        code, out = cli_run("validate", "--format", "json", "--branch", ctx.branches["sentiment"], "--trunk",
                            ctx.trunk)
        codes = [f["code"] for f in strict_json(out)["findings"]]
        pm2 = PluginManager(autoload=False)
        pm2.register(_PrintingHook(), "printing")
        set_plugin_manager(pm2)
        code2, out2 = cli_run("plugins", "--json")
        listed = {i["name"]: i for i in strict_json(out2)}
        codes += [e.split(":")[0] for e in listed["printing"]["errors"]]
        return Outcome(codes or ["ok"], max(code, code2), out + out2)
    finally:
        set_plugin_manager(None)


def printing_import(ctx: Ctx, tmp: Path) -> Outcome:
    with installed(tmp / "site", "chatty_plugin", "print('chatty plugin imported')\n"):
        code, out = cli_run("validate", "--format", "json", "--branch", ctx.branches["sentiment"], "--trunk",
                            ctx.trunk)
        report = strict_json(out)
    return Outcome([f["code"] for f in report["findings"]] or ["ok"], code, out)


def token_head_type() -> Any:
    from typing import Literal

    from pydantic import BaseModel, ConfigDict

    from mtbranch.heads.postprocess import token_classification
    from mtbranch.heads.registry import HeadType, _build_linear, _linear_shapes

    class SpanTags(BaseModel):
        model_config = ConfigDict(extra="forbid")
        type: Literal["span_tags"] = "span_tags"
        labels: list[str]
        dropout: float = 0.0

        @property
        def num_outputs(self) -> int:
            return len(self.labels)

    return HeadType("span_tags", SpanTags, False, _linear_shapes, _build_linear, token_classification,
                    "per-token tags from a plugin")


class _TokenHeadPlugin:
    @hookimpl
    def mtbranch_head_types(self) -> list[Any]:
        return [token_head_type()]


def plugin_token_head(ctx: Ctx, tmp: Path) -> Outcome:
    """A plugin head type with sequence_level=False: its branch has no pooler tensors, and needs none."""
    from mtbranch.branch.factory import branch_manifest
    from mtbranch.branch.model import BranchModule, save_branch
    from mtbranch.trunk.source import load_trunk_source
    from mtbranch.trunk.tokenizer import load_tokenizer

    ht = token_head_type()
    m = branch_manifest(load_trunk_source(ctx.trunk), load_tokenizer(ctx.trunk), name="spans", attach_depth=3,
                        num_layers=1, head=ht.spec_model(labels=["O", "B-X", "I-X"]).model_dump())
    save_branch(BranchModule(m, ht), tmp / "spans")
    pm = PluginManager(autoload=False)
    pm.register(_TokenHeadPlugin(), "spans")
    set_plugin_manager(pm)
    try:
        return validate(tmp / "spans", trunk=ctx.trunk, plugins=True)
    finally:
        set_plugin_manager(None)


class _ChattyTokenHeadPlugin:
    @hookimpl
    def mtbranch_head_types(self) -> list[Any]:
        from dataclasses import replace

        ht = token_head_type()

        def postprocess(spec: Any, rows: Any, ctx: Any) -> Any:
            print("debug: postprocessing")  # a plugin's leftover print, at predict time
            return ht.postprocess(spec, rows, ctx)

        return [replace(ht, postprocess=postprocess)]


def plugin_prints_in_predict(ctx: Ctx, tmp: Path) -> Outcome:
    """``predict --json`` on a composed model whose plugin head prints: stdout stays one JSON document."""
    import mtbranch
    from mtbranch.branch.factory import branch_manifest
    from mtbranch.branch.model import BranchModule, save_branch
    from mtbranch.composition.artifact import save_composed
    from mtbranch.trunk.tokenizer import load_tokenizer

    pm = PluginManager(autoload=False)
    pm.register(_ChattyTokenHeadPlugin(), "chatty")
    ht = pm.head_type("span_tags")
    from mtbranch.trunk.source import load_trunk_source

    m = branch_manifest(load_trunk_source(ctx.trunk), load_tokenizer(ctx.trunk), name="spans", attach_depth=3,
                        num_layers=1, head=ht.spec_model(labels=["O", "B-X", "I-X"]).model_dump())
    save_branch(BranchModule(m, ht), tmp / "spans")
    set_plugin_manager(pm)
    try:
        save_composed(mtbranch.compose(str(ctx.trunk), [tmp / "spans"], plugin_manager=pm), tmp / "c")
        r = CliRunner().invoke(cli, ["predict", str(tmp / "c"), "john visited paris", "--json"])
    finally:
        set_plugin_manager(None)
    if r.exit_code != 0:
        return Outcome([f"exit {r.exit_code}"], r.exit_code, r.output + repr(r.exception))
    results = strict_json(r.stdout)
    ok = r.exit_code == 0 and list(results[0]) == ["spans"] and "printed to stdout" in r.stderr
    return Outcome(["ok: valid JSON, warning on stderr" if ok else "?"], r.exit_code, r.output)


class _LoopBranches:
    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        return [BranchLocation("loop", str(self.path))]


def symlink_loop_branch(ctx: Ctx, tmp: Path) -> Outcome:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    pm = PluginManager(autoload=False)
    pm.register(_LoopBranches(tmp / "a"), "loops")
    set_plugin_manager(pm)
    try:
        out = validate(trunk=ctx.trunk, plugins=True)
    finally:
        set_plugin_manager(None)
    says = "symlink loop" in out.output
    return Outcome([f"{c}: says symlink loop" if says else c for c in out.got], out.exit, out.output)


def compose_after_load(ctx: Ctx, _tmp: Path) -> Outcome:
    import mtbranch
    from mtbranch.trunk.source import load_trunk_source

    mtbranch.load(ctx.composed)
    model = mtbranch.compose(load_trunk_source(ctx.trunk), [(ctx.branches["sentiment"], "directory")])
    return Outcome(["ok: composed" if model.task_names == ["sentiment"] else "?"])


def compose_plain_paths(ctx: Ctx, _tmp: Path) -> Outcome:
    """``mtbranch.compose("trunk-dir", ["branch-dir"])``: references and paths, as the CLI takes them."""
    import mtbranch

    model = mtbranch.compose(str(ctx.trunk), [str(ctx.branches["sentiment"])])
    bad = api_error(lambda: mtbranch.compose(str(ctx.trunk), [42]))
    return Outcome(["ok: composed, [42] refused" if model.task_names == ["sentiment"] and bad == "MtbranchError"
                    else "?"])


def load_not_a_path(_ctx: Ctx, _tmp: Path) -> Outcome:
    import mtbranch

    return Outcome([api_error(lambda: mtbranch.load(None))])  # type: ignore[arg-type]


def put_branch_path(ctx: Ctx, _tmp: Path) -> Outcome:
    import mtbranch

    model = mtbranch.load(ctx.composed)
    return Outcome([api_error(lambda: model.put_branch(str(ctx.branches["sentiment"])))])


# -- issue 30: one compatibility rule, checked arguments ------------------------------------------------------
def put_branch_of(trunk: str) -> Callable[[Ctx, Path], Outcome]:
    """``model.put_branch(b)`` with ``b`` trained on another trunk: the validator ``update`` runs refuses it."""
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        import mtbranch
        from mtbranch.branch.model import load_branch
        from mtbranch.plugins.manager import get_plugin_manager

        from helpers import make_branch

        d = make_branch(getattr(ctx, trunk), tmp / "foreign", name="foreign", depth=2, layers=1)
        model = mtbranch.load(ctx.composed)
        branch = load_branch(d, get_plugin_manager().head_type("classification"))
        got = api_error(lambda: model.put_branch(branch))
        return Outcome([got] + (["still absent"] if "foreign" not in model.task_names else []))
    return run


def lock_overhead_forged(lock: dict[str, Any]) -> None:
    lock["overhead"]["text"] = "0 + 1 = 1 of 12, 8.3%"


def lock_model_type(lock: dict[str, Any]) -> None:
    lock["trunk"]["model_type"] = "roberta"


def lock_format_version(lock: dict[str, Any]) -> None:
    lock["lock_version"] = 2


def swap_weights(c: Path) -> None:
    """sentiment's and entities' weights files swapped, every hash (manifests, lock) fixed up to match."""
    a, b = c / "branches" / "sentiment", c / "branches" / "entities"
    wa, wb = (a / "branch.safetensors").read_bytes(), (b / "branch.safetensors").read_bytes()
    (a / "branch.safetensors").write_bytes(wb)
    (b / "branch.safetensors").write_bytes(wa)
    lock_path = c / "mtbranch.lock.json"
    lock = json.loads(lock_path.read_text())
    for d in (a, b):
        rehash(d)
        for rel in ("branch.safetensors", "manifest.json"):
            lock["files"][f"branches/{d.name}/{rel}"] = sha256_file(d / rel)
        next(e for e in lock["branches"] if e["name"] == d.name)["sha256"] = sha256_file(d / "branch.safetensors")
    lock_path.write_text(json.dumps(lock))


def inspect_forged(ctx: Ctx, tmp: Path) -> Outcome:
    c = tmp / "c"
    shutil.copytree(ctx.composed, c)
    lock_edit(lock_overhead_forged)(c)
    code, out = cli_run("inspect", c)
    return Outcome(["IntegrityError" if "overhead: lock says" in out else "?"], code, out)


def overhead_after_remove(ctx: Ctx, tmp: Path) -> Outcome:
    """sentiment (depth 2, 2 layers) left alone on a 4-layer trunk whose kept copy is 3 layers deep."""
    c = tmp / "c"
    shutil.copytree(ctx.composed, c)
    code, out = cli_run("update", c, "--remove", "similarity", "--remove", "entities")
    assert code == 0, out
    code, out = cli_run("inspect", c)
    return Outcome(["ok: 2 + 2 = 4 of 4" if "2 + 2 = 4 of 4, 100.0%" in out else "?"], code, out)


def many_tensors(d: Path, ctx: Ctx) -> None:
    """5,000 tensors the manifest does not declare (the probe's 21 MB header had 300,000)."""
    header = {f"junk.{i:05d}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(5000)}
    raw_safetensors(header, b"\0" * 4 * 5000)(d, ctx)


def capped_findings(ctx: Ctx, tmp: Path) -> Outcome:
    d = copy_branch(ctx, tmp)
    many_tensors(d, ctx)
    out = validate(d, trunk=ctx.trunk)
    report = json.loads(out.output[out.output.index("{"):])
    # the weights file's findings (the card's W011, for the weights sha256 the edit changed, is not one of them)
    found = [f for f in report["findings"] if f["code"] != "W011"]
    capped = len(found) <= 21 and "more tensor findings" in found[-1]["message"]
    return Outcome([f"W005: {len(found)} findings" + (", the rest counted" if capped else "")],
                   out.exit, out.output[-2000:])


def duplicate_key_http(ctx: Ctx, _tmp: Path) -> Outcome:
    got = post_raw_bodies(ctx, ['{"texts": ["a"], "texts": ["b", "c"]}',
                                '{"texts": ["a"], "tasks": ["sentiment"], "tasks": null}'])
    ok = all(g.startswith("400") and "appears twice" in g for g in got)
    return Outcome(["400: key named" if ok else "?"], None, "", got)


def config_duplicate_key(ctx: Ctx, tmp: Path) -> Outcome:
    t = tmp / "trunk"
    shutil.copytree(ctx.trunk, t)
    text = (t / "config.json").read_text()
    twice = text.replace('"model_type": "bert"', '"model_type": "bert", "model_type": "roberta"')
    (t / "config.json").write_text(twice)
    return trunk_error(t, ctx.branches["sentiment"])


def data_header_one_long_column(ctx: Ctx, tmp: Path) -> Outcome:
    """A CSV read as TSV: its header is one 'column', the whole first line (here with a secret in it)."""
    from mtbranch.sdk.data import TableSpec, read_table

    p = tmp / "t.tsv"
    p.write_text("text,label,api_key=" + "x" * 200 + "\na,pos,1\n")
    err = api_error(lambda: read_table(p, TableSpec(text="text", label="label")))
    try:
        read_table(p, TableSpec(text="text", label="label"))
        msg = ""
    except Exception as exc:
        msg = str(exc)
    short = "x" * 100 not in msg and "one column" in msg
    return Outcome([err + (": names cut short" if short else "")], None, msg)


def input_not_a_file(ctx: Ctx, tmp: Path) -> Outcome:
    """`predict --input` a directory, a FIFO, a missing path: each named as what it is (never opened)."""
    fifo_path = tmp / "pipe"
    os.mkfifo(fifo_path)
    said = []
    for path, want in ((tmp, "is a directory"), (fifo_path, "is a pipe"), (tmp / "none", "does not exist")):
        code, out = cli_run("predict", ctx.composed, "--input", path)
        said.append(f"{code} {want in out} {out[-200:]}")
    ok = all(s.startswith("1 True") for s in said)
    return Outcome(["DataError: says what the path is" if ok else "?"], 1, "\n".join(said))


def input_utf16_bom(ctx: Ctx, tmp: Path) -> Outcome:
    p = tmp / "in.txt"
    p.write_bytes("the film\nanother\n".encode("utf-16"))
    code, out = cli_run("predict", ctx.composed, "--input", p)
    return Outcome(["DataError: names the BOM" if "UTF-16 byte order mark" in out else "?"], code, out)


def output_disk_full(ctx: Ctx, tmp: Path) -> Outcome:
    """ENOSPC while `predict --input F --output O` writes: the message names O."""
    import errno

    import mtbranch.cli.predict_file as pf

    src = tmp / "in.txt"
    src.write_text("the film\n")
    out_path = tmp / "preds.jsonl"
    real = pf.os.fsync

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    pf.os.fsync = full  # type: ignore[assignment]
    try:
        code, out = cli_run("predict", ctx.composed, "--input", src, "--output", out_path)
    finally:
        pf.os.fsync = real  # type: ignore[assignment]
    named = str(out_path) in out and "No space left" in out and not out_path.exists()
    return Outcome(["FileAccessError: names the file" if named else "?"], code, out)


def load_unknown_task(ctx: Ctx, _tmp: Path) -> Outcome:
    import mtbranch

    return Outcome([api_error(lambda: mtbranch.load(ctx.composed, tasks=["nope"]))])


def predict_iter_of(items: Any) -> Callable[[Ctx, Path], Outcome]:
    return lambda ctx, _tmp: Outcome([api_error(lambda: list(ctx.model.predict_iter(items)))])


# -- migrate (issue 27) -------------------------------------------------------------------------------------
FAST_MIGRATE = ("--layers", "1", "--epochs", "1", "--lr", "1e-3", "--no-progress", "--threads", "1",
                "--speed-texts", "0")
GOOD_TEXTS = "the movie was good\nthe plot was very bad\njohn visited paris\na great film\n" * 10


def migrate_cli(ctx: Ctx, out: Path, texts: Any, *extra: Any, teacher: Path | None = None,
                to: Path | None = None) -> tuple[int, str]:
    """``migrate`` of a branch directory (the sentiment one by default) to the reseeded trunk."""
    texts_args = [a for t in (texts if isinstance(texts, list) else [texts]) for a in ("--texts", t)]
    return cli_run("migrate", teacher or ctx.branches["sentiment"], "--from-trunk", ctx.trunk, "--to-trunk",
                   to or ctx.reseeded, *texts_args, "-o", out, *FAST_MIGRATE, *extra)


def migrate_refused(name: str, content: bytes, needles: tuple[str, ...], *, teacher: str = "sentiment",
                    short_trunk: bool = False) -> Callable[[Ctx, Path], Outcome]:
    """A bad input refused before anything is written: exit 1, the message names the file (and the line or field)
    and the fix, and OUT does not exist afterwards."""
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        from conftest import make_bert_dir

        p = tmp / name
        p.write_bytes(content)
        to = make_bert_dir(tmp / "short", layers=2, max_positions=16, tok_max_length=None) if short_trunk else None
        out_dir = tmp / "out"
        code, out = migrate_cli(ctx, out_dir, p, teacher=ctx.branches[teacher], to=to)
        flat = " ".join(out.split())  # rich wraps long messages
        named = str(to / "config.json") if to else str(p)
        missing = [n for n in (named, *needles) if n not in flat]
        ok = not missing and not out_dir.exists()
        return Outcome(["MtbranchError: file, field and fix; nothing written" if ok else f"missing {missing}"],
                       code, out)
    return run


def migrate_out_occupied(ctx: Ctx, tmp: Path) -> Outcome:
    (tmp / "t.txt").write_text(GOOD_TEXTS)
    occupied = tmp / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    code, out = migrate_cli(ctx, occupied, tmp / "t.txt")
    ok = ("not an earlier migration" in out and [p.name for p in occupied.iterdir()] == ["keep.txt"]
          and (occupied / "keep.txt").read_text() == "mine")
    return Outcome(["MtbranchError: names OUT; its file untouched" if ok else "?"], code, out)


def migrate_state(text: str, needle: str) -> Callable[[Ctx, Path], Outcome]:
    """An OUT whose migrate-state.json is unreadable, or from a run with other settings: refused, kept as it was."""
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        (tmp / "t.txt").write_text(GOOD_TEXTS)
        out_dir = tmp / "out"
        out_dir.mkdir()
        (out_dir / "migrate-state.json").write_text(text)
        code, out = migrate_cli(ctx, out_dir, tmp / "t.txt")
        flat = " ".join(out.split())
        ok = (needle in flat and "migrate-state.json" in flat and "--restart" in flat
              and [p.name for p in out_dir.iterdir()] == ["migrate-state.json"]
              and (out_dir / "migrate-state.json").read_text() == text)
        return Outcome(["MtbranchError: names the state file and --restart; OUT untouched" if ok else "?"],
                       code, out)
    return run


def migrate_stopped_resumes(ctx: Ctx, tmp: Path) -> Outcome:
    """Ctrl-C in the second branch (exit 130): the first stays finished (state + branch), the second left no
    directory; the same command then keeps the first (not retrained) and does the second."""
    from mtbranch.sdk import migrate as mig

    (tmp / "s.txt").write_text(GOOD_TEXTS)
    (tmp / "e.txt").write_text(GOOD_TEXTS)
    texts = [f"sentiment={tmp / 's.txt'}", f"entities={tmp / 'e.txt'}"]
    out_dir = tmp / "out"
    args = ("--only", "sentiment", "--only", "entities")
    real, calls = mig.migrate_branch, []

    def stop_in_the_second(t: Any, *a: Any, **kw: Any) -> Any:
        calls.append(t.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(t, *a, **kw)
    mig.migrate_branch = stop_in_the_second  # type: ignore[assignment]
    try:
        stopped, out1 = migrate_cli(ctx, out_dir, texts, *args, teacher=ctx.composed, to=ctx.reseeded)
    finally:
        mig.migrate_branch = real  # type: ignore[assignment]
    state = json.loads((out_dir / "migrate-state.json").read_text())
    first = out_dir / "branches" / "sentiment" / "branch.safetensors"
    kept = list(state["branches"]) == ["sentiment"] and first.is_file() and not (out_dir / "branches" / "entities"
                                                                                 ).exists()
    before = first.stat().st_mtime_ns if first.is_file() else None
    code, out = migrate_cli(ctx, out_dir, texts, *args, teacher=ctx.composed, to=ctx.reseeded)
    ok = (stopped == 130 and kept and "sentiment: finished in an earlier run, kept" in out
          and first.stat().st_mtime_ns == before and (out_dir / "branches" / "entities" / "manifest.json").is_file())
    return Outcome(["resumed: the finished branch kept, not retrained" if ok else "?"], code, out1 + out,
                   [f"stopped exit {stopped}", f"state {state.get('branches', {}).keys()}"])


# -- the catalogue --------------------------------------------------------------------------------------------
# -- newcomer paths (issue 19) ------------------------------------------------------------------------------
def missing_train_extra(_ctx: Ctx, tmp: Path) -> Outcome:
    saved = sys.modules.get("accelerate", "absent")
    sys.modules["accelerate"] = None  # type: ignore[assignment]  # as if installed without [train]
    try:
        code, out = cli_run("train", "--task", "classification", "--trunk", "minilm-l6", "--train", tmp / "t.tsv",
                            "--dev", tmp / "d.tsv", "--name", "x", "-o", tmp / "out")
    finally:
        if saved == "absent":
            del sys.modules["accelerate"]
        else:
            sys.modules["accelerate"] = saved  # type: ignore[assignment]
    got = ["MissingExtra"] if "pip install 'mtbranch[train]'" in out else [out[-200:]]
    return Outcome(got, code, out)


def predict_input_rows(text: str) -> Callable[[Ctx, Path], Outcome]:
    def run(ctx: Ctx, tmp: Path) -> Outcome:
        src = tmp / "in.jsonl"
        src.write_text(text)
        code, out = cli_run("predict", ctx.composed, "--input", src, "--output", tmp / "p.jsonl", "--no-progress")
        ok = "line 3" in out and not (tmp / "p.jsonl").exists()
        return Outcome(["DataError at its line, no output file"] if ok else [out[-300:]], code, out)
    return run


def positions_shorter_than_tokenizer(ctx: Ctx, tmp: Path) -> Outcome:
    from mtbranch.composition.artifact import compose as do_compose
    from mtbranch.composition.artifact import save_composed
    from mtbranch.trunk.source import load_trunk_source

    from conftest import make_bert_dir
    from helpers import make_branch

    trunk = make_bert_dir(tmp / "short", max_positions=128, tok_max_length=512)
    b = make_branch(trunk, tmp / "b", name="sentiment", depth=2, layers=1, max_length=512)
    save_composed(do_compose(load_trunk_source(trunk), [(b, "directory")]), tmp / "c")
    code, out = cli_run("predict", tmp / "c", "the movie was very good and " * 100, "--json")
    ok = code == 0 and "max_length=128" in out
    return Outcome(["truncated to the trunk's 128 positions"] if ok else [out[-300:]], code, out)


class _OtherTrunkBranch:
    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def mtbranch_branches(self) -> list[BranchLocation]:
        return [BranchLocation("foreign", self.path)]


def branch_dir_with_foreign_installed(ctx: Ctx, tmp: Path) -> Outcome:
    from helpers import make_branch

    foreign = make_branch(ctx.wider, tmp / "foreign", name="foreign", depth=3, layers=1)
    pm = PluginManager(autoload=False)
    pm.register(_OtherTrunkBranch(foreign), "other-team")
    set_plugin_manager(pm)
    try:
        code, out = cli_run("compose", "--trunk", ctx.trunk, "--branch", ctx.branches["sentiment"], "-o", tmp / "o")
    finally:
        set_plugin_manager(None)
    lock = tmp / "o" / "mtbranch.lock.json"
    names = [b["name"] for b in json.loads(lock.read_text())["branches"]] if lock.exists() else []
    return Outcome(["ok: exactly the --branch directories"] if names == ["sentiment"] else [out[-300:]], code, out)


CATALOGUE: list[Case] = [
    # manifest: JSON and schema
    Case("manifest-missing", "manifest", "branch directory without manifest.json", "M001", 1,
         branch_case(lambda d, _c: (d / "manifest.json").unlink())),
    Case("manifest-dir-missing", "manifest", "`--branch` names a directory that does not exist", "M001", 1,
         missing_dir),
    Case("manifest-bad-json", "manifest", "malformed JSON (`{ not json`)", "M002", 1,
         branch_case(manifest_text("{ not json"))),
    Case("manifest-not-object", "manifest", "JSON that is a list, not an object", "M002", 1,
         branch_case(manifest_text("[1, 2]"))),
    Case("manifest-not-utf8", "manifest", "bytes that are not UTF-8", "M002", 1,
         branch_case(manifest_text(b"\xff\xfe{}"))),
    Case("manifest-duplicate-key", "manifest", "the same key twice (`name`)", "M002", 1, branch_case(duplicate_key)),
    Case("manifest-nan-literal", "manifest", "a `NaN` literal (not JSON)", "M002", 1,
         branch_case(manifest_text('{"name": "sentiment", "metrics": {"acc": NaN}}'))),
    Case("manifest-deep", "manifest", "arrays nested 100,000 deep", "M002", 1,
         branch_case(manifest_text("[" * 100_000 + "]" * 100_000))),
    Case("manifest-huge", "manifest", "manifest.json of 17 MiB", "M002", 1, branch_case(huge_manifest)),
    Case("manifest-wrong-type", "manifest", "wrong field type (`num_layers: \"two\"`)", "M003", 1,
         branch_case(set_field("num_layers", "two"))),
    Case("manifest-wrong-nested-type", "manifest", "wrong nested type (`head.labels: \"pos\"`)", "M003", 1,
         branch_case(set_field("head.labels", "pos"))),
    Case("manifest-unknown-field", "manifest", "unknown top-level field (`colour`)", "M003", 1,
         branch_case(set_field("colour", "red"))),
    Case("manifest-unknown-nested-field", "manifest", "unknown nested field (`weights.compression`)", "M003", 1,
         branch_case(set_field("weights.compression", "zstd"))),
    Case("manifest-missing-field", "manifest", "required field missing (`trunk`)", "M003", 1,
         branch_case(lambda d, _c: edit(d, "trunk", delete=True))),
    Case("manifest-bad-name", "manifest", "task name that is a path (`../evil`)", "M003", 1,
         branch_case(set_field("name", "../evil"))),
    Case("manifest-negative-depth", "manifest", "`attach_depth: -1`", "M003", 1,
         branch_case(set_field("attach_depth", -1))),
    Case("manifest-bad-sha", "manifest", "`weights.sha256` not 64 hex digits", "M003", 1,
         branch_case(set_field("weights.sha256", "abc"))),
    Case("manifest-newer-schema", "manifest", "`schema_version: \"2.0\"` (newer than this mtbranch)", "M004", 1,
         branch_case(set_field("schema_version", "2.0"))),
    Case("manifest-bad-schema", "manifest", "`schema_version: \"one\"`", "M004", 1,
         branch_case(set_field("schema_version", "one"))),
    Case("manifest-unknown-head", "manifest", "head type no plugin registers (`ranking`)", "M005", 1,
         branch_case(set_field("head", {"type": "ranking", "k": 3}))),
    Case("manifest-requires", "manifest", "`requires: \">=99\"` excludes this mtbranch", "V001", 1,
         branch_case(set_field("requires", ">=99"))),
    # weights: safetensors file and header
    Case("weights-missing", "weights", "branch.safetensors deleted", "W001", 1,
         branch_case(lambda d, _c: (d / "branch.safetensors").unlink())),
    Case("weights-flipped-byte", "weights", "one data byte flipped after export", "W002", 1,
         branch_case(flip_weights_byte)),
    Case("weights-empty", "weights", "0-byte weights file", "W003", 1, branch_case(weights_bytes(lambda _b: b""))),
    Case("weights-truncated", "weights", "weights truncated to 200 bytes", "W003", 1,
         branch_case(weights_bytes(lambda b: b[:200]))),
    Case("header-beyond-file", "weights", "header length field larger than the file", "W003", 1,
         branch_case(weights_bytes(lambda b: struct.pack("<Q", len(b)) + b[8:]))),
    Case("header-too-large", "weights", "header length 2^40 (over the 100 MiB limit)", "W003", 1,
         branch_case(weights_bytes(lambda b: struct.pack("<Q", 1 << 40) + b[8:]))),
    Case("header-not-json", "weights", "header bytes that are not JSON", "W003", 1,
         branch_case(raw_safetensors(b"{nope"))),
    Case("header-offsets-beyond", "weights", "data_offsets beyond the data section", "W003", 1,
         branch_case(raw_safetensors({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8))),
    Case("header-size-mismatch", "weights", "data_offsets span disagrees with dtype x shape", "W003", 1,
         branch_case(raw_safetensors({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8))),
    Case("header-unknown-dtype", "weights", "dtype `Q4` in the header", "W003", 1,
         branch_case(raw_safetensors({"t": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"\0"))),
    Case("header-dtype-not-string", "weights", "dtype given as a list", "W003", 1,
         branch_case(raw_safetensors({"t": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4))),
    Case("header-overlap", "weights", "two tensors sharing bytes", "W003", 1,
         branch_case(raw_safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12))),
    Case("header-duplicate-name", "weights", "one tensor name twice in the header", "W003", 1,
         branch_case(raw_safetensors(b'{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
                                     b'"t": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', b"\0\0"))),
    Case("weights-missing-tensor", "weights", "architecture needs a tensor the file lacks (`num_layers` 3)", "W004", 1,
         branch_case(set_field("num_layers", 3))),
    Case("weights-extra-tensor", "weights", "file holds a tensor the architecture does not use", "W005", 1,
         branch_case(tensors(lambda s: s.__setitem__("head.secret", s["head.classifier.bias"].clone())))),
    Case("weights-shape", "weights", "shape mismatch (3 labels declared, 2 stored)", "W006", 1,
         branch_case(set_field("head.labels", ["a", "b", "c"]))),
    Case("weights-dtype-manifest", "weights", "manifest says float16, file is F32", "W007", 1,
         branch_case(set_field("weights.dtype", "float16"))),
    Case("weights-dtype-int", "weights", "one tensor stored as I64", "W007", 1,
         branch_case(tensors(lambda s: s.__setitem__("head.classifier.bias", s["head.classifier.bias"].long())))),
    Case("weights-dotdot", "weights", "`weights.path: ../outside.safetensors`", "W008", 1, branch_case(escape_dotdot)),
    Case("weights-absolute", "weights", "absolute `weights.path`", "W008", 1, branch_case(escape_absolute)),
    Case("weights-symlink", "weights", "branch.safetensors is a symlink out of the directory", "W008", 1,
         branch_case(escape_symlink)),
    Case("weights-nul-path", "weights", "`weights.path` with a NUL byte", "W008", 1,
         branch_case(set_field("weights.path", "branch\u0000.safetensors"))),
    Case("weights-nan", "weights", "a NaN weight", "W009", 1, branch_case(tensors(set_value(float("nan"))))),
    Case("weights-inf", "weights", "an Inf weight", "W009", 1, branch_case(tensors(set_value(float("inf"))))),
    # trunk and tokenizer
    Case("trunk-fingerprint", "trunk", "trunk with other weights (same architecture)", "T001", 1,
         branch_case(lambda _d, _c: None, trunk="reseeded")),
    Case("trunk-depth", "trunk", "`attach_depth` beyond the trunk's layers", "T002", 1,
         branch_case(set_field("attach_depth", 9))),
    Case("trunk-structure", "trunk", "trunk of another hidden size", "T003", 1,
         branch_case(lambda _d, _c: None, trunk="wider")),
    Case("trunk-missing", "trunk", "`--trunk` directory that does not exist", "MtbranchError", 1, missing_trunk),
    Case("trunk-corrupt", "trunk", "trunk model.safetensors that is garbage", "HeaderError", 1, corrupt_trunk),
    Case("tokenizer-probe", "tokenizer", "tokenizer that splits the probe text differently", "K001", 1,
         branch_case(set_field("tokenizer.probe_sha256", "cd" * 32))),
    Case("tokenizer-vocab", "tokenizer", "tokenizer with another vocabulary size", "K003", 1,
         branch_case(set_field("tokenizer.vocab_size", 7))),
    Case("tokenizer-max-length", "tokenizer", "branches with different max_length (warning only)", "K004", 0,
         max_length_differs),
    Case("duplicate-branch-name", "composition", "two branches named `sentiment`", "C001", 1, two_of_a_name),
    # composed artifacts (mtbranch.load / predict / verify)
    Case("composed-flipped-byte", "composed", "one byte of the trunk weights flipped", "IntegrityError", 1,
         artifact_case(flip_byte("trunk/model.safetensors"))),
    Case("composed-file-missing", "composed", "a branch's weights deleted", "IntegrityError", 1,
         artifact_case(lambda c: (c / "branches/entities/branch.safetensors").unlink())),
    Case("composed-unlisted-file", "composed", "a file the lock does not list (`extra.py`)", "IntegrityError", 1,
         artifact_case(unlisted_file)),
    Case("composed-symlink-out", "composed", "trunk/tokenizer.json symlinked outside (same bytes)", "IntegrityError", 1,
         artifact_case(symlink_out, command="verify")),
    Case("composed-lock-missing", "composed", "no mtbranch.lock.json", "MtbranchError", 1, artifact_case(no_lock)),
    Case("composed-lock-bad-json", "composed", "lock file that is not JSON", "IntegrityError", 1,
         artifact_case(lambda c: (c / "mtbranch.lock.json").write_text("{"))),
    Case("composed-lock-name-escape", "composed", "lock branch name `../../elsewhere`", "IntegrityError", 1,
         artifact_case(lock_edit(lock_branch_escape))),
    Case("composed-lock-path-escape", "composed", "lock lists `../outside.txt`", "IntegrityError", 1,
         artifact_case(lock_edit(lock_files_escape), command="verify")),
    Case("composed-lock-wrong-type", "composed", "lock field of the wrong type", "IntegrityError", 1,
         artifact_case(lock_edit(lock_wrong_type))),
    # load() builds the model while hashing: a file broken enough to fail the build is still reported as tampered
    Case("composed-truncated", "composed", "truncated trunk weights (hashes checked)", "IntegrityError", 1,
         artifact_case(truncate("trunk/model.safetensors"))),
    Case("composed-bad-manifest", "composed", "corrupt branch manifest (hashes checked)", "IntegrityError", 1,
         artifact_case(lambda c: (c / "branches/sentiment/manifest.json").write_text("{"))),
    Case("composed-truncated-no-verify", "composed", "truncated trunk weights, loaded with `--no-verify`",
         "HeaderError", 1, artifact_case(truncate("trunk/model.safetensors"), verify=False)),
    Case("composed-bad-manifest-no-verify", "composed", "corrupt branch manifest, loaded with `--no-verify`",
         "MtbranchError", 1, artifact_case(lambda c: (c / "branches/sentiment/manifest.json").write_text("{"),
                                           verify=False)),
    Case("composed-dir-missing", "composed", "artifact directory that does not exist", "MtbranchError", 1,
         artifact_case(lambda c: shutil.rmtree(c))),
    # what a branch contributes, where compose writes, what the lock proves (issue 13)
    Case("files-symlink-out", "files", "README.md symlinked to a file outside the branch directory", "F001", 1,
         branch_case(link_out)),
    Case("files-symlink-loop", "files", "two symlinks pointing at each other", "F002", 1, branch_case(link_loop)),
    Case("files-ancestor-link", "files", "a symlink to the branch directory's parent", "F003", 1,
         branch_case(lambda d, _c: (d / "up").symlink_to(".."))),
    Case("files-fifo", "files", "a FIFO (named pipe) in the branch directory", "F004", 1, branch_case(fifo)),
    Case("weights-huge", "weights", "weights of 3e38 (finite, but outputs overflow)", "W010", 0,
         branch_case(tensors(lambda s: s["head.classifier.weight"].fill_(3e38)))),
    Case("output-not-empty", "output", "`compose -o DIR` where DIR holds other files", "OutputError", 1,
         output_case("not-empty")),
    Case("output-is-input", "output", "`compose -o` naming the branch directory it reads", "OutputError", 1,
         output_case("branch")),
    Case("output-contains-input", "output", "`compose -o` a directory holding a branch it reads", "OutputError", 1,
         output_case("contains")),
    Case("output-inside-trunk", "output", "`compose -o` inside the trunk directory", "OutputError", 1,
         output_case("trunk")),
    Case("output-other-kind", "output", "`compose -o` an existing branch artifact", "OutputError", 1,
         output_case("other-kind")),
    Case("update-put-inside", "output", "`update C --put C/branches/sentiment` (an input inside the output)",
         "OutputError", 1, put_inside),
    Case("read-fifo-lock-verify", "reads", "a FIFO in place of mtbranch.lock.json (`verify`)", "NotRegularFileError", 1,
         artifact_file("mtbranch.lock.json", "fifo", command="verify")),
    Case("read-fifo-lock-inspect", "reads", "a FIFO in place of mtbranch.lock.json (`inspect`)", "NotRegularFileError",
         1, artifact_file("mtbranch.lock.json", "fifo", command="inspect")),
    Case("read-device-lock", "reads", "mtbranch.lock.json a link to a device (/dev/null), `predict`",
         "NotRegularFileError", 1, artifact_file("mtbranch.lock.json", "device")),
    Case("read-dir-lock", "reads", "a directory in place of mtbranch.lock.json (`verify`)", "NotRegularFileError", 1,
         artifact_file("mtbranch.lock.json", "dir", command="verify")),
    Case("read-fifo-config", "reads", "a FIFO in place of the artifact's trunk/config.json (`predict --no-verify`)",
         "NotRegularFileError", 1, artifact_file("trunk/config.json", "fifo", verify=False)),
    Case("read-fifo-config-verify", "reads", "a FIFO in place of the artifact's trunk/config.json (hashes checked)",
         "IntegrityError", 1, artifact_file("trunk/config.json", "fifo")),
    Case("read-fifo-tokenizer", "reads", "a FIFO in place of trunk/tokenizer.json (`predict --no-verify`)",
         "NotRegularFileError", 1, artifact_file("trunk/tokenizer.json", "fifo", verify=False)),
    Case("read-fifo-trunk-weights", "reads", "a FIFO in place of trunk/model.safetensors (`predict --no-verify`)",
         "NotRegularFileError", 1, artifact_file("trunk/model.safetensors", "fifo", verify=False)),
    Case("read-fifo-branch-manifest", "reads", "a FIFO in place of a composed branch's manifest.json "
         "(`predict --no-verify`)", "MtbranchError", 1,
         artifact_file("branches/sentiment/manifest.json", "fifo", verify=False)),
    Case("read-fifo-branch-weights", "reads", "a FIFO in place of a composed branch's weights "
         "(`predict --no-verify`)", "NotRegularFileError", 1,
         artifact_file("branches/sentiment/branch.safetensors", "fifo", verify=False)),
    Case("read-fifo-manifest-validate", "reads", "a FIFO in place of a branch's manifest.json (`validate`)", "M002",
         1, branch_file("manifest.json", "fifo")),
    Case("read-device-manifest-validate", "reads", "a branch's manifest.json a link to /dev/null (`validate`)",
         "M002", 1, branch_file("manifest.json", "device")),
    Case("read-fifo-weights-validate", "reads", "a FIFO in place of a branch's weights file (`validate`)", "F004", 1,
         branch_file("branch.safetensors", "fifo")),
    Case("read-fifo-trunk-config", "reads", "a FIFO in place of the trunk's config.json (`validate --trunk`)",
         "NotRegularFileError", 1, trunk_file("config.json", "fifo")),
    Case("read-dir-trunk-config", "reads", "a directory in place of the trunk's config.json (`validate --trunk`)",
         "NotRegularFileError", 1, trunk_file("config.json", "dir")),
    Case("read-fifo-trunk-weights-validate", "reads", "a FIFO in place of the trunk's model.safetensors "
         "(`validate --trunk`)", "NotRegularFileError", 1, trunk_file("model.safetensors", "fifo")),
    Case("composed-lock-version", "composed", "lock branch version that disagrees with the branch's manifest",
         "IntegrityError", 1, artifact_case(lock_edit(lock_version))),
    Case("composed-lock-duplicate", "composed", "one branch listed twice in the lock", "IntegrityError", 1,
         artifact_case(lock_edit(lock_duplicate))),
    Case("composed-lock-fingerprint", "composed", "lock trunk fingerprint h0 edited", "IntegrityError", 1,
         artifact_case(lock_edit(lock_fingerprint))),
    Case("composed-lock-unlisted-branch", "composed", "a branch directory the lock's branches do not list",
         "IntegrityError", 1, artifact_case(lock_edit(lock_drop_branch))),
    Case("composed-lock-file-no-branch", "composed", "a file listed for no branch (`branches/ghost/x.txt`)",
         "IntegrityError", 1, artifact_case(file_for_no_branch)),
    Case("env-disk-full", "environment", "disk full while writing over a composed artifact (kept intact)",
         "FileAccessError", 1, disk_full),
    Case("env-lock-permission", "environment", "lock file unreadable (permission denied)", "FileAccessError", 1,
         lock_unreadable),
    Case("predict-non-finite", "predict", "a branch whose outputs overflow to Inf/NaN", "MtbranchError", 1,
         non_finite),
    # plugins
    Case("plugin-import-error", "plugins", "plugin raising at import", "P001", 0, import_error_case(strict=False)),
    Case("plugin-import-error-strict", "plugins", "plugin raising at import, `--strict`", "P001", 1,
         import_error_case(strict=True)),
    Case("plugin-hook-raises", "plugins", "hook raising an exception", "P002", 0, plugin_case(_RaisingBranches())),
    Case("plugin-hook-wrong-type", "plugins", "hook returning a dict instead of a list", "P003", 0,
         plugin_case(_WrongTypeBranches())),
    Case("plugin-check-raises", "plugins", "policy check raising while validating", "P002", 0,
         plugin_case(_RaisingCheck())),
    Case("plugin-check-wrong-type", "plugins", "policy check returning a string", "P003", 0,
         plugin_case(_WrongTypeCheck())),
    Case("plugin-family-model-types-none", "plugins", "trunk family record with `model_types=None`", "P003", 0,
         plugin_case(_FamilyNoModelTypes())),
    Case("plugin-family-bad-rule", "plugins", "trunk family record whose tensor rule is not a regex", "P003", 0,
         plugin_case(_FamilyBadRule())),
    Case("plugin-unknown-hook", "plugins", "plugin implementing a misspelt hook", "P004", 0,
         plugin_case(_UnknownHook())),
    # predict
    Case("predict-empty-string", "predict", "`\"\"` as a text (and as a pair)", "ok: a result per task", 0,
         empty_strings),
    Case("predict-none", "predict", "`None` among the texts", "MtbranchError", None, predict_api(texts=["ok", None])),
    Case("predict-texts-none", "predict", "`texts=None`", "MtbranchError", None, predict_api(texts=None)),
    Case("predict-non-string", "predict", "an int among the texts", "MtbranchError", None,
         predict_api(texts=["ok", 42])),
    Case("predict-bytes", "predict", "`texts=b\"...\"` (bytes)", "MtbranchError", None, predict_api(texts=b"the film")),
    Case("predict-pair-none", "predict", "`None` among the text_pairs", "MtbranchError", None,
         predict_api(texts=["a"], text_pairs=[None])),
    Case("predict-unknown-task", "predict", "unknown task name (`--task nope`)", "MtbranchError", 1,
         predict_both({"texts": ["the film"], "tasks": ["nope"]}, "--task", "nope", "the film")),
    Case("predict-pair-missing", "predict", "pair task without a pair", "MtbranchError", 1,
         predict_both({"texts": ["the film"], "tasks": ["similarity"]}, "--task", "similarity", "the film")),
    Case("predict-pair-count", "predict", "2 pairs for 3 texts", "MtbranchError", 2,
         predict_both({"texts": ["a", "b", "c"], "text_pairs": ["x", "y"]},
                      "--pair", "x", "--pair", "y", "a", "b", "c")),
    Case("predict-batch-size", "predict", "`batch_size=0`", "MtbranchError", None,
         predict_api(texts=["a", "b"], batch_size=0)),
    Case("predict-tasks-string", "predict", "`tasks=\"sentiment\"` (a string, not a list)", "ok: one task", None,
         tasks_as_string),
    Case("predict-too-long", "predict", "a text of ~2,400 tokens (max_length 64)", "truncated, with a warning", 0,
         too_long),
    Case("predict-10k", "predict", "10,000 texts in one call", "micro-batches of <= 32", None, ten_thousand),
    # hostile text (issue 14): printed as given, never parsed as markup; lone surrogates; bytes that are not UTF-8
    Case("predict-markup-text", "text", "rich markup in a text (`the movie [/] was good`, `[red]x[/red]`, `:smile:`)",
         "ok: printed as given", 0, echo_literally("the movie [/] was good", "[red]x[/red]", ":smile: a\\")),
    Case("predict-control-chars", "text", "control characters in a text (ESC, tab, NUL)", "ok: printed as given", 0,
         echo_literally("a\x1b[31mb", "tab\there", "nul\x00", shown=("a\\x1b[31mb", "tab\\there", "nul\\x00"))),
    Case("predict-markup-path", "text", "an artifact path with markup (`art[/x] [red]y[/red]`) in an error message",
         "MtbranchError: path shown as given", 1, markup_in_path),
    Case("output-markup-path", "text", "`compose -o` / `verify` of a path with markup (`out [/x] [red]y[/red]`)",
         "ok: printed as given", 0, markup_in_output_paths),
    Case("predict-argv-not-utf8", "text", "a TEXT argument that is not UTF-8 (latin-1 `caf\\xe9`)", "MtbranchError",
         1, argv_not_utf8),
    Case("predict-lone-surrogate", "text", "lone surrogates in texts and text_pairs (`\"\\ud800\"`)",
         "ok: a result per text", None, lone_surrogates_api),
    Case("serve-lone-surrogate", "text", "HTTP: JSON `\"\\ud800\"` in texts / text_pairs, next to a good text",
         "200: a result per text", None, lone_surrogates_http),
    # data files (issue 14): train / sweep / distill readers
    Case("data-latin1", "data", "a latin-1 TSV (`caf\\xe9`)", "DataError", 1,
         data_case("latin1.tsv", b"text\tlabel\ncaf\xe9\tpos\n", line=2, cli=True)),
    Case("data-latin1-encoding", "data", "the same latin-1 TSV with `--encoding latin-1` (line 3 has an extra tab)",
         "decoded; DataError at line 3", 1, latin1_with_encoding),
    Case("data-utf16", "data", "a UTF-16 TSV (with byte order mark)", "DataError", None,
         data_case("u16.tsv", "text\tlabel\na\tpos\n".encode("utf-16"), line=1)),
    Case("data-utf16-no-bom", "data", "a UTF-16-LE TSV without byte order mark", "DataError", None,
         data_case("u16le.tsv", "text\tlabel\na\tpos\n".encode("utf-16-le"), line=1)),
    Case("data-extra-column", "data", "a TSV row with one more tab than the header", "DataError", 1,
         data_case("extra.tsv", b"text\tlabel\ngood film\tpos\nbad\tfilm\tneg\n", line=3, cli=True)),
    Case("data-label-bool", "data", "JSONL class label `true`", "DataError", None,
         data_case("b.jsonl", b'{"t": "a", "l": "pos"}\n{"t": "b", "l": true}\n', {"text": "t", "label": "l"}, line=2)),
    Case("data-label-list", "data", "JSONL class label `[\"pos\"]` (a list; an object too)", "DataError", None,
         data_case("l.jsonl", b'{"t": "a", "l": ["pos"]}\n', {"text": "t", "label": "l"}, line=1)),
    Case("data-score-nan", "data", "TSV regression score `nan`", "DataError", 1,
         data_case("nan.tsv", b"t\ts\na\t0.5\nb\tnan\n", line=3, task="regression", cli=True)),
    Case("data-score-overflow", "data", "JSONL score `1e999` (overflows to inf)", "DataError", None,
         data_case("inf.jsonl", b'{"t": "a", "s": 1e999}\n', {"text": "t", "label": "s", "label_kind": "score"},
                   line=1)),
    Case("data-score-nan-literal", "data", "JSONL score `NaN` (not JSON)", "DataError", None,
         data_case("nanlit.jsonl", b'{"t": "a", "s": 1}\n{"t": "b", "s": NaN}\n',
                   {"text": "t", "label": "s", "label_kind": "score"}, line=2)),
    Case("data-score-bool", "data", "JSONL score `true`", "DataError", None,
         data_case("sb.jsonl", b'{"t": "a", "s": true}\n', {"text": "t", "label": "s", "label_kind": "score"}, line=1)),
    Case("data-json-deep", "data", "a JSONL row nested 100,000 deep", "DataError", None,
         data_case("deep.jsonl", b'{"t": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", {"text": "t", "label": "l"},
                   line=1)),
    Case("data-json-huge-int", "data", "a JSONL label of 5,000 digits", "DataError", None,
         data_case("big.jsonl", b'{"t": "a", "l": ' + b"7" * 5000 + b"}\n", {"text": "t", "label": "l"}, line=1)),
    Case("data-seq-line-separator", "data", "U+2028 inside a seq.in line", "ok: 2 utterances", None,
         seq_line_separator),
    # plugins (issue 14)
    Case("plugin-prints-in-hook", "plugins", "hook printing to stdout (`validate --format json`, `plugins --json`)",
         "P007", 0, printing_hook),
    Case("plugin-prints-at-import", "plugins", "plugin printing to stdout at import", "P007", 0, printing_import),
    Case("plugin-prints-in-predict", "plugins", "plugin head printing to stdout during `predict --json`",
         "ok: valid JSON, warning on stderr", 0, plugin_prints_in_predict),
    Case("plugin-token-head", "plugins", "plugin head type with `sequence_level=False` (no pooler tensors)", "ok", 0,
         plugin_token_head),
    Case("plugin-symlink-loop", "plugins", "hook returning a branch path that is a symlink loop",
         "M001: says symlink loop", 1, symlink_loop_branch),
    # Python API (issue 14)
    Case("api-compose-after-load", "api", "`mtbranch.compose(...)` after `mtbranch.load(...)`", "ok: composed", None,
         compose_after_load),
    Case("api-compose-paths", "api", "`mtbranch.compose(\"trunk-dir\", [\"branch-dir\"])` (plain paths), and `[42]`",
         "ok: composed, [42] refused", None, compose_plain_paths),
    Case("api-load-none", "api", "`mtbranch.load(None)`", "MtbranchError", None, load_not_a_path),
    Case("api-branch-unknown", "api", "`model.branch(\"nope\")`", "MtbranchError", None,
         lambda ctx, _tmp: Outcome([api_error(lambda: ctx.model.branch("nope"))])),
    Case("predict-raw-not-bool", "predict", "`raw=\"yes\"`", "MtbranchError", None,
         predict_api(texts=["a"], tasks=["sentiment"], raw="yes")),
    Case("predict-tasks-empty", "predict", "`tasks=[]` (HTTP: 422)", "MtbranchError", None,
         predict_api(texts=["a"], tasks=[])),
    Case("predict-tasks-nested", "predict", "`tasks=[[\"sentiment\"]]`", "MtbranchError", None,
         predict_api(texts=["a"], tasks=[["sentiment"]])),
    Case("put-branch-path", "api", "`put_branch(\"path/to/branch\")` (a path, not a loaded branch)", "MtbranchError",
         None, put_branch_path),
    # issue 30: one compatibility rule everywhere; arguments checked
    Case("composed-lock-overhead", "composed", "lock `overhead` edited (`0 + 1 = 1 of 12`); `verify`",
         "IntegrityError", 1, artifact_case(lock_edit(lock_overhead_forged), command="verify")),
    Case("composed-lock-model-type", "composed", "lock `trunk.model_type` edited (`roberta` on a BERT trunk)",
         "IntegrityError", 1, artifact_case(lock_edit(lock_model_type))),
    Case("composed-lock-format", "composed", "lock `lock_version` 2 (a format this mtbranch does not read)",
         "IntegrityError", 1, artifact_case(lock_edit(lock_format_version))),
    Case("composed-weights-swapped", "composed", "two branches' weights files swapped, every hash fixed up; `verify`",
         "IntegrityError", 1, artifact_case(swap_weights, command="verify")),
    Case("inspect-forged-lock", "composed", "`inspect` of an artifact whose lock overhead was edited",
         "IntegrityError", 1, inspect_forged),
    Case("update-remove-overhead", "composed", "`update --remove` leaving a branch shallower than the kept trunk",
         "ok: 2 + 2 = 4 of 4", 0, overhead_after_remove),
    Case("header-many-tensors", "weights", "a weights header of 5,000 undeclared tensors (the probe's: 300,000)",
         "W005: 21 findings, the rest counted", 1, capped_findings),
    Case("serve-duplicate-key", "text", "HTTP: `{\"texts\": [\"a\"], \"texts\": [\"b\", \"c\"]}` (a key twice)",
         "400: key named", None, duplicate_key_http),
    Case("trunk-config-duplicate-key", "trunk", "trunk config.json with `model_type` twice", "MtbranchError", 1,
         config_duplicate_key),
    Case("data-json-duplicate-key", "data", "a JSONL row with the label key twice (`\"l\": \"pos\", \"l\": \"neg\"`)",
         "DataError", None, data_case("dup.jsonl", b'{"t": "a", "l": "pos"}\n{"t": "b", "l": "pos", "l": "neg"}\n',
                                      {"text": "t", "label": "l"}, line=2)),
    Case("data-header-one-column", "data", "a CSV read as TSV: the header is one 230-character 'column'",
         "DataError: names cut short", None, data_header_one_long_column),
    Case("predict-input-not-a-file", "newcomer", "`predict --input` a directory / a FIFO / a missing path",
         "DataError: says what the path is", 1, input_not_a_file),
    Case("predict-input-utf16", "newcomer", "`predict --input` a UTF-16 file (with byte order mark)",
         "DataError: names the BOM", 1, input_utf16_bom),
    Case("predict-output-disk-full", "environment", "disk full while `predict --output` writes",
         "FileAccessError: names the file", 1, output_disk_full),
    Case("put-branch-other-trunk", "api", "`put_branch(b)` with `b` trained on a reseeded trunk (same structure)",
         "ValidationFailed", None, put_branch_of("reseeded")),
    Case("put-branch-other-structure", "api", "`put_branch(b)` with `b` trained on a wider trunk (hidden 48)",
         "ValidationFailed", None, put_branch_of("wider")),
    Case("api-load-unknown-task", "api", "`mtbranch.load(c, tasks=[\"nope\"])`", "MtbranchError", None,
         load_unknown_task),
    Case("predict-iter-none", "predict", "`predict_iter(None)`", "MtbranchError", None, predict_iter_of(None)),
    Case("predict-iter-ints", "predict", "`predict_iter([1, 2])`", "MtbranchError", None, predict_iter_of([1, 2])),
    # newcomer paths (issue 19)
    Case("extra-missing", "newcomer", "`mtbranch train` without the `[train]` extra (accelerate missing)",
         "MissingExtra", 1, missing_train_extra),
    Case("predict-input-bad-json", "newcomer", "`predict --input` JSONL whose line 3 is not JSON",
         "DataError at its line, no output file", 1, predict_input_rows('{"text": "a"}\n{"text": "b"}\n{oops\n')),
    Case("predict-input-not-text", "newcomer", "`predict --input` JSONL whose line 3 has a number as text",
         "DataError at its line, no output file", 1, predict_input_rows('{"text": "a"}\n\n{"text": 7}\n')),
    Case("positions-short", "newcomer", "a long text; tokenizer says 512, trunk positions stop at 128",
         "truncated to the trunk's 128 positions", 0, positions_shorter_than_tokenizer),
    Case("installed-branch-other-trunk", "newcomer",
         "`compose --trunk T --branch B` with an installed branch for another trunk",
         "ok: exactly the --branch directories", 0, branch_dir_with_foreign_installed),
    Case("migrate-texts-latin1", "migrate", "`migrate --texts` a Latin-1 file (`tr\\xe8s` on line 2)",
         "MtbranchError: file, field and fix; nothing written", 1,
         migrate_refused("latin1.txt", "the film\nun film tr\u00e8s bon\n".encode("latin-1"),
                         ("line 2", "not UTF-8", "--encoding"))),
    Case("migrate-texts-utf16", "migrate", "`migrate --texts` a UTF-16 file (with byte order mark)",
         "MtbranchError: file, field and fix; nothing written", 1,
         migrate_refused("u16.txt", "the film\na good movie\n".encode("utf-16"), ("UTF-16", "--encoding"))),
    Case("migrate-texts-empty", "migrate", "`migrate --texts` a file of blank lines only",
         "MtbranchError: file, field and fix; nothing written", 1,
         migrate_refused("empty.txt", b"\n  \n\t\n", ("no texts", "one text per line"))),
    Case("migrate-texts-unreadable", "migrate", "`migrate --texts` in a script the teacher's tokenizer cannot read "
         "(Greek)", "MtbranchError: file, field and fix; nothing written", 1,
         migrate_refused("greek.txt", "\u03b7 \u03c4\u03b1\u03b9\u03bd\u03af\u03b1\n".encode() * 20,
                         ("cannot read these texts", "[UNK]", "language and script"))),
    Case("migrate-trunk-too-short", "migrate", "`migrate --to-trunk` a trunk of 16 positions; the teacher reads 64 "
         "tokens", "MtbranchError: file, field and fix; nothing written", 1,
         migrate_refused("t.txt", GOOD_TEXTS.encode(), ("at most 16 tokens", "tokenizer.max_length", "--max-length 16"),
                         short_trunk=True)),
    Case("migrate-pair-single-texts", "migrate", "`migrate` a pair branch with single texts (no tab)",
         "MtbranchError: file, field and fix; nothing written", 1,
         migrate_refused("single.txt", GOOD_TEXTS.encode(), ("text 1 has no second text", "--texts similarity="),
                         teacher="similarity")),
    Case("migrate-out-occupied", "migrate", "`migrate -o` a directory holding someone's file",
         "MtbranchError: names OUT; its file untouched", 1, migrate_out_occupied),
    Case("migrate-state-corrupt", "migrate", "`migrate -o` an earlier run whose migrate-state.json is cut short",
         "MtbranchError: names the state file and --restart; OUT untouched", 1,
         migrate_state('{"format": "mtbranch-migrate-1", "key": "ab', "cannot read the migration state")),
    Case("migrate-state-other-settings", "migrate", "`migrate -o` an earlier run made with other settings",
         "MtbranchError: names the state file and --restart; OUT untouched", 1,
         migrate_state('{"format": "mtbranch-migrate-1", "key": "other", "branches": {}}\n', "other settings")),
    Case("migrate-stopped-run", "migrate", "`migrate` stopped (Ctrl-C) in its second branch, then run again",
         "resumed: the finished branch kept, not retrained", 0, migrate_stopped_resumes),
]


def table() -> str:
    rows = ["| # | id | area | bad input | expected | exit |", "| --- | --- | --- | --- | --- | --- |"]
    for i, c in enumerate(CATALOGUE, 1):
        exit_ = "API only" if c.exit is None else str(c.exit)
        rows.append(f"| {i} | `{c.id}` | {c.area} | {c.input} | {c.expect} | {exit_} |")
    return "\n".join(rows) + f"\n\n{len(CATALOGUE)} entries."


def write_doc() -> None:
    text = DOC.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    DOC.write_text(text[:a] + "\n" + table() + "\n" + text[b:])


if __name__ == "__main__":
    write_doc()
    print(f"{DOC}: {len(CATALOGUE)} entries")
