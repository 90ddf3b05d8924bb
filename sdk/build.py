"""``mtbranch build RECIPE``: the paper's pipeline as one resumable recipe.

Stages, each recorded in ``OUT/build-state.json`` and skipped when a finished run of the same recipe already
did it: ``sweep`` (cached trunk features, one branch per L in a layer range, L picked by a rule; paper §3.1),
``teacher`` (optional full fine-tuning reference, every layer from depth 0), ``distill`` (optional: the
smallest student, fewer layers than the selected L, whose dev metric keeps ``retention`` of the reference;
paper §3.2, the student initialised from the trunk layers above its depth or the teacher's bottom layers;
with ``include_selected``, else a student of the selected L when it beats the swept branch),
``export`` (the chosen branch with the recipe and every stage's metric in its manifest provenance).
The CLI command then packages the branch as a plugin (``new-plugin``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtbranch.errors import MtbranchError
from mtbranch.io.atomic import write_text_atomic
from mtbranch.io.files import read_bytes
from mtbranch.sdk.defaults import DEFAULT_EPOCHS, DEFAULT_FULL_LR, DEFAULT_LR, DEFAULT_PATIENCE

log = logging.getLogger("mtbranch.sdk")
STATE_NAME = "build-state.json"
STAGES = ("sweep", "teacher", "distill", "export")
Event = Callable[[str], None]


class _Section(BaseModel):
    # every float field finite: `lr = inf` or `epochs = nan` is refused before any work starts
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class BranchSection(_Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    version: str = "0.1.0"
    owner: str | None = None
    description: str = ""


class TaskSection(_Section):
    type: Literal["classification", "regression", "token-classification", "token_classification"]
    trunk: str = Field(description="an installed trunk's name or a model directory (relative to the recipe)")
    metric: str | None = None


class DataSection(_Section):
    train: str
    dev: str | None = None
    dev_split: float | None = Field(default=None, gt=0, lt=1, description="hold out this part of train as dev")
    text_col: str = "0"
    pair_col: str | None = None
    label_col: str = "1"
    header: bool = True
    quote_none: bool = False
    format: Literal["auto", "tsv", "csv", "jsonl"] = "auto"
    tag_col: int = -1
    labels: list[str] | None = None
    max_train: int | None = Field(default=None, gt=0)


class TrainSection(_Section):
    # the defaults `mtbranch train` shares (sdk/defaults.py, measured in docs/build.md); the best dev epoch is
    # kept and training stops once dev has not improved for `patience` epochs
    epochs: float = Field(default=DEFAULT_EPOCHS, gt=0, le=10_000)
    patience: int | None = Field(default=DEFAULT_PATIENCE, ge=1)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=DEFAULT_LR, gt=0, le=1)  # above 1 the weights overflow within steps
    head_lr: float | None = Field(default=None, gt=0, le=1)
    max_length: int = Field(default=128, gt=0, le=1_000_000)
    seed: int = Field(default=42, ge=0, lt=2**32)
    pooling: Literal["cls", "mean", "attention"] = "cls"
    projection: bool = True


class SweepSection(_Section):
    min_layers: int = Field(default=1, ge=0)
    max_layers: int = Field(default=3, ge=0)
    rule: str = "within:1"


class TeacherSection(_Section):
    enabled: bool = False
    epochs: float | None = Field(default=None, gt=0, le=10_000)
    lr: float | None = Field(default=DEFAULT_FULL_LR, gt=0, le=1)


class DistillSection(_Section):
    enabled: bool = False
    retention: float = Field(default=0.97, gt=0, le=1.0)
    min_layers: int = Field(default=1, ge=0)
    # also distill a student as large as the selected branch (needs the teacher): knowledge distillation at the
    # same size often beats the swept branch, which learned from the labels alone
    include_selected: bool = False
    alpha: float = Field(default=0.5, ge=0, le=1)
    temperature: float = Field(default=2.0, gt=0, le=1000)


class PluginSection(_Section):
    enabled: bool = True
    name: str | None = None
    requires: list[str] = Field(default_factory=list)


class Recipe(_Section):
    out: str = Field(description="output directory (relative to the recipe): state, stages, branch, plugin")
    branch: BranchSection
    task: TaskSection
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    sweep: SweepSection = Field(default_factory=SweepSection)
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    plugin: PluginSection = Field(default_factory=PluginSection)

    @property
    def task_name(self) -> str:
        return self.task.type.replace("-", "_")


def read_recipe(path: str | os.PathLike[str]) -> tuple[Recipe, Path, str]:
    """Parse and check a TOML recipe; returns it, its folder (paths are relative to it) and its sha256."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    p = Path(path)
    try:
        raw = read_bytes(p)
    except OSError as exc:
        raise MtbranchError(f"cannot read the recipe: {exc.strerror or exc}", path=str(p),
                         hint="pass the path of a TOML recipe (see docs/build.md)") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MtbranchError(f"not a valid TOML recipe: {exc}", path=str(p), hint="fix the TOML syntax") from None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise MtbranchError(f"recipe field {field!r}: {first['msg']}", path=str(p),
                         hint="see docs/build.md for every field and its default") from None
    if (recipe.data.dev is None) == (recipe.data.dev_split is None):
        raise MtbranchError("recipe section 'data' needs exactly one of 'dev' (a file) and 'dev_split' (a fraction)",
                            path=str(p), hint="e.g. dev_split = 0.1 holds out 10% of train, stratified and seeded")
    if recipe.sweep.min_layers > recipe.sweep.max_layers:
        raise MtbranchError("recipe field 'sweep': min_layers > max_layers", path=str(p))
    if recipe.distill.include_selected and not recipe.teacher.enabled:
        raise MtbranchError("recipe field 'distill.include_selected' needs a teacher: the student would be as large "
                            "as the swept branch it learns from", path=str(p),
                            hint="set teacher.enabled = true, or remove distill.include_selected")
    return recipe, p.resolve().parent, hashlib.sha256(raw).hexdigest()


def _check_data_paths(recipe: Recipe, base: Path, recipe_path: str | os.PathLike[str]) -> None:
    for field, rel in (("data.train", recipe.data.train), ("data.dev", recipe.data.dev)):
        if rel is not None and not (data := _under(base, rel)).exists():
            raise MtbranchError(f"recipe field {field!r}: {data} does not exist", path=str(recipe_path),
                                hint="paths in a recipe are relative to the recipe's folder; the example recipes' "
                                     "comments say which command writes their data")


LOCK_NAME = ".build.lock"
_building: dict[str, int] = {}  # output (real path) -> the thread running its build
_building_guard = threading.Lock()


def recipe_out(recipe: Recipe, base: Path) -> Path:
    """The recipe's ``out``: relative to the recipe's folder, ``~`` expanded (the one place it is resolved)."""
    return _under(base, recipe.out)


def guard_out(recipe: Recipe, base: Path, recipe_path: str | os.PathLike[str]) -> Path:
    """``out`` may hold only an earlier build's outputs, and must not overlap the recipe, its data or its trunk
    (nor lie inside a composed artifact or a model directory); checked (after the data paths) before any work."""
    from mtbranch.io.guard import check_output

    _check_data_paths(recipe, base, recipe_path)
    trunk = base / Path(recipe.task.trunk).expanduser()
    inputs = [recipe_path, _under(base, recipe.data.train),
              None if recipe.data.dev is None else _under(base, recipe.data.dev),
              trunk if (trunk / "config.json").exists() else None]  # a model directory, not an installed name
    return check_output(recipe_out(recipe, base), "build", inputs=inputs)


@contextlib.contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """One build at a time per output: build-state.json is read, updated and written by a single process.

    A second ``mtbranch build`` of the same output fails at once (it would overwrite the first one's stages and
    records); the thread already holding the lock may take it again (the CLI holds it around the plugin stage).
    """
    import fcntl

    key, me = os.path.realpath(out), threading.get_ident()
    with _building_guard:
        reentered = _building.get(key) == me
    if reentered:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MtbranchError("the build lock is not a regular file", path=str(path),
                                hint="remove it; mtbranch creates it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MtbranchError("another `mtbranch build` is writing this output (changed since read)",
                                path=str(out), hint="wait for it to finish, then run the build again") from None
        with _building_guard:
            _building[key] = me
        try:
            yield
        finally:
            with _building_guard:
                _building.pop(key, None)
    finally:
        os.close(fd)


class BuildState:
    """``OUT/build-state.json``: which stages finished, with their outputs, metrics and the fingerprint of their
    inputs (``inputs``); a finished stage is reused while its inputs are unchanged, whatever else the recipe
    changed."""

    def __init__(self, out: Path, recipe_sha256: str, *, restart: bool) -> None:
        self.path = out / STATE_NAME
        self.data: dict[str, Any] = {"recipe_sha256": recipe_sha256, "stages": {}}
        self.earlier_recipe: str | None = None
        if self.path.exists() and not restart:
            from mtbranch.sdk.build_state import read_state

            old = read_state(self.path)  # shape checked; what each stage points at is checked when it is reused
            self.earlier_recipe = old.get("recipe_sha256")
            self.data = {**old, "recipe_sha256": recipe_sha256}

    def done(self, stage: str, inputs: str) -> dict[str, Any] | None:
        """The stage's record when it finished on these inputs (and its output is still there), else None."""
        rec = self.data["stages"].get(stage)
        if rec is None:
            return None
        if "inputs" in rec:
            if rec["inputs"] != inputs:
                return None  # built from other inputs
        elif self.earlier_recipe != self.data["recipe_sha256"]:
            return None  # a state written before fingerprints: reused for the same recipe only
        out = rec.get("branch")
        if out is not None and not (Path(out) / "manifest.json").is_file():
            return None  # the stage's output went missing: run it again
        return dict(rec)

    def drop(self, stage: str) -> None:
        """Forget a stage the recipe no longer enables (its record must not reach the manifest)."""
        self.data["stages"].pop(stage, None)

    def finish(self, stage: str, record: dict[str, Any]) -> None:
        self.data["stages"][stage] = record
        write_text_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


def stage_inputs(recipe: Recipe, recipe_sha256: str, trunk: str, data: list[dict[str, str]],
                 tags: Sequence[str] = ()) -> dict[str, str]:
    """Each stage's input fingerprint: what it reads from the recipe, the trunk and the data files' sha256, and
    the fingerprints of the stages it builds on. The [branch] section (name, version, owner, description) and
    ``mtbranch build --tag`` reach only the export, which writes them into the manifest."""
    def digest(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    r = recipe.model_dump(mode="json")
    common = (r["task"], trunk, r["data"], [d.get("sha256") for d in data], r["train"])
    sweep = digest("sweep", *common, r["sweep"])
    teacher = digest("teacher", *common, r["teacher"]) if recipe.teacher.enabled else None
    distill = digest("distill", sweep, teacher, r["distill"])
    return {"sweep": sweep, "teacher": teacher or "", "distill": distill,
            "export": digest("export", recipe_sha256, sweep, teacher, distill if recipe.distill.enabled else None,
                             *([list(tags)] if tags else []))}  # no tags: the digest builds before --tag had


def _under(base: Path, relative: str) -> Path:
    """A recipe path relative to the recipe's folder, with ``..`` folded (recorded paths stay readable)."""
    return Path(os.path.normpath(base / Path(relative).expanduser()))


def _resolve(base: Path, value: str) -> str:
    """A trunk given as a path relative to the recipe, else as it is (an installed trunk's name, hf:...)."""
    candidate = base / Path(value).expanduser()
    return str(candidate) if candidate.exists() else value


def _load(task: str, path: Path, d: DataSection) -> Any:
    from mtbranch.sdk.data import load_task_data

    return load_task_data(task, path, text_col=d.text_col, pair_col=d.pair_col, label_col=d.label_col,
                          header=d.header, quote_none=d.quote_none, fmt=d.format, tag_col=d.tag_col)


def _config(r: Recipe, cache_dir: Path, progress: bool, **changes: Any) -> Any:
    from mtbranch.sdk.train import TrainConfig

    t = r.train
    cfg = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, head_lr=t.head_lr, seed=t.seed,
                      max_length=t.max_length, pooling=t.pooling, projection=t.projection, metric=r.task.metric,
                      cache_dir=str(cache_dir), progress=progress, max_train_examples=r.data.max_train,
                      patience=t.patience)
    for k, v in changes.items():
        if v is not None:
            setattr(cfg, k, v)
    return cfg


def _plot_sweep(table: dict[str, Any], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = table["rows"]
    xs = [r["layers"] for r in rows]
    ys = [100 * r["metrics"][table["metric"]] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xs, ys, marker="o")
    sel = table["selected_layers"]
    ax.scatter([sel], [ys[xs.index(sel)]], s=120, facecolors="none", edgecolors="red", label=f"selected L={sel}")
    ax.set_xlabel("task layers L (depth = trunk layers - L)")
    ax.set_ylabel(f"dev {table['metric']}")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from mtbranch.io.atomic import write_bytes_atomic

    write_bytes_atomic(path, buf.getvalue())
    return True


def run_build(recipe_path: str | os.PathLike[str], *, restart: bool = False, progress: bool = True,
              on_event: Event = print, tags: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or resume) every stage of the recipe; returns the build state (stage records). ``tags``: the
    exported manifest's tags (``mtbranch build --tag``)."""
    recipe, base, sha = read_recipe(recipe_path)
    out = guard_out(recipe, base, recipe_path)
    with build_lock(out):
        return _run_stages(recipe, base, sha, out, recipe_path, restart=restart, progress=progress,
                           on_event=on_event, tags=tags)


def _run_stages(recipe: Recipe, base: Path, sha: str, out: Path, recipe_path: str | os.PathLike[str], *,
                restart: bool, progress: bool, on_event: Event, tags: Sequence[str] = ()) -> dict[str, Any]:
    from mtbranch.branch.model import load_branch, save_branch
    from mtbranch.sdk.build_state import check_stage
    from mtbranch.sdk.distill import distill
    from mtbranch.sdk.sweep import sweep
    from mtbranch.sdk.train import BranchInfo, train
    from mtbranch.trunk.source import resolve_trunk

    state = BuildState(out, sha, restart=restart)
    task = recipe.task_name
    source = resolve_trunk(_resolve(base, recipe.task.trunk))
    n = source.num_layers
    if recipe.sweep.max_layers > n:
        raise MtbranchError(f"recipe field 'sweep.max_layers' is {recipe.sweep.max_layers}, the trunk has {n} layers",
                         path=str(recipe_path))
    train_data = _load(task, _under(base, recipe.data.train), recipe.data)
    if recipe.data.dev is not None:
        dev_data = _load(task, _under(base, recipe.data.dev), recipe.data)
    else:
        from mtbranch.sdk.data import split_dev

        train_data, dev_data = split_dev(train_data, recipe.data.dev_split or 0.0, recipe.train.seed)
    info = BranchInfo(name=recipe.branch.name, version=recipe.branch.version, owner=recipe.branch.owner,
                      description=recipe.branch.description)
    cache = out / "cache"
    labels = recipe.data.labels
    inputs = stage_inputs(recipe, sha, source.fingerprints[-1], train_data.sources + dev_data.sources, tags)
    for name, enabled in (("teacher", recipe.teacher.enabled), ("distill", recipe.distill.enabled)):
        if not enabled:
            state.drop(name)

    def stage(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        rec = state.done(name, inputs[name])
        if rec is not None:
            check_stage(name, rec, out, recipe.branch.name, source.fingerprints, state.path)
            on_event(f"[{name}] done in an earlier run: {_summary(rec)}")
            return rec
        earlier = name in state.data["stages"]
        on_event(f"[{name}] running" + (" (its inputs changed since the earlier run)" if earlier else ""))
        rec = {**run(), "inputs": inputs[name]}
        state.finish(name, rec)
        on_event(f"[{name}] finished: {_summary(rec)}")
        return rec

    def run_sweep() -> dict[str, Any]:
        res = sweep(source, task, train_data, dev_data, min_layers=recipe.sweep.min_layers,
                    max_layers=recipe.sweep.max_layers, rule=recipe.sweep.rule, cfg=_config(recipe, cache, progress),
                    info=info, out_dir=out / "sweep-branch", labels=labels,
                    on_start=lambda L, depth: on_event(f"[sweep] L={L} at depth {depth}: training"),
                    on_row=lambda row: on_event(f"[sweep] L={row.layers}: dev "
                                                f"{', '.join(f'{k} {v:.4f}' for k, v in row.metrics.items())}"))
        table = res.to_json()
        write_text_atomic(out / "sweep.json", json.dumps(table, indent=2) + "\n")
        plotted = _plot_sweep(table, out / "sweep.png", f"{recipe.branch.name}: dev {res.metric} vs layers")
        return {"branch": str(out / "sweep-branch"), "metric": res.metric, "layers": res.selected,
                "depth": n - res.selected, "value": res.row(res.selected).metrics[res.metric],
                "rows": table["rows"], "plot": str(out / "sweep.png") if plotted else None}

    swept = stage("sweep", run_sweep)
    reference = {"source": "sweep", "value": swept["value"]}
    if recipe.teacher.enabled:
        def run_teacher() -> dict[str, Any]:
            cfg = _config(recipe, cache, progress, epochs=recipe.teacher.epochs, lr=recipe.teacher.lr)
            res = train(source, task, train_data, dev_data, layers=n, depth=0, cfg=cfg,
                        info=BranchInfo(name=f"{recipe.branch.name}-teacher", version=recipe.branch.version),
                        out_dir=out / "teacher", labels=labels)
            return {"branch": str(out / "teacher"), "metric": res.metric, "layers": n, "depth": 0,
                    "value": res.metrics[res.metric]}

        teacher = stage("teacher", run_teacher)
        reference = {"source": "teacher", "value": teacher["value"]}
        if recipe.distill.enabled:
            _warn_weak_teacher(teacher, swept)
    final = {"branch": swept["branch"], "layers": swept["layers"], "depth": swept["depth"], "value": swept["value"]}
    largest = swept["layers"] + (1 if recipe.distill.include_selected else 0)  # students: min_layers..largest-1
    if recipe.distill.enabled and recipe.distill.min_layers < largest:
        def run_distill() -> dict[str, Any]:
            from mtbranch.sdk.train import DistillSpec

            teacher_dir = Path(state.data["stages"]["teacher"]["branch"]) if recipe.teacher.enabled \
                else Path(swept["branch"])
            goal = recipe.distill.retention * reference["value"]
            tried = []
            for layers in range(recipe.distill.min_layers, largest):
                depth = n - layers if recipe.teacher.enabled else swept["depth"]
                dest = out / "students" / f"l{layers}"
                res = distill(source, teacher_dir, train_data, dev_data, student_layers=layers,
                              student_depth=depth, spec=DistillSpec(alpha=recipe.distill.alpha,
                                                                    temperature=recipe.distill.temperature),
                              cfg=_config(recipe, cache, progress), info=info, out_dir=dest)
                value = res.student.metrics[res.metric]
                tried.append({"layers": layers, "depth": depth, "value": value, "branch": str(dest)})
                on_event(f"[distill] student l={layers} at depth {depth}: dev {res.metric} {value:.4f} "
                         f"(goal {goal:.4f})")
                kept = {"branch": str(dest), "layers": layers, "depth": depth, "value": value, "goal": goal,
                        "tried": tried}
                if layers < swept["layers"] and value >= goal:
                    return kept  # fewer layers, and the retention goal holds
                if layers == swept["layers"] and value > swept["value"]:
                    return kept  # as large as the swept branch, and better than it
            return {"branch": None, "goal": goal, "tried": tried}  # no student beat the swept branch

        dist = stage("distill", run_distill)
        if dist.get("branch"):
            final = {k: dist[k] for k in ("branch", "layers", "depth", "value")}

    def run_export() -> dict[str, Any]:
        branch = load_branch(final["branch"])
        m = branch.manifest
        stages = {k: {x: v[x] for x in ("layers", "depth", "value", "metric", "goal") if x in v}
                  for k, v in state.data["stages"].items()}
        # retention is the share of a teacher's metric kept: without a teacher there is nothing to keep a share of
        build = {"recipe": recipe.model_dump(mode="json"), "recipe_sha256": sha, "stages": stages,
                 "reference": reference, "retention": final["value"] / reference["value"]
                 if reference["value"] and reference["source"] == "teacher" else None}
        b = recipe.branch
        branch.manifest = m.model_copy(update={"name": b.name, "version": b.version, "owner": b.owner,
                                               "description": b.description, "tags": list(tags),
                                               "training": {**m.training, "build": build}})
        save_branch(branch, out / "branch")
        return {"branch": str(out / "branch"), **{k: final[k] for k in ("layers", "depth", "value")},
                "retention": build["retention"]}

    stage("export", run_export)
    return state.data


def _warn_weak_teacher(teacher: dict[str, Any], swept: dict[str, Any]) -> None:
    """A teacher scoring below the branch it should teach: distilling from it is unlikely to help."""
    lower_is_better = teacher.get("metric") == "mse"
    if (teacher["value"] > swept["value"]) if lower_is_better else (teacher["value"] < swept["value"]):
        log.warning("the teacher's dev %s %.4f is below the swept branch's %.4f (L=%s): distilling from it is "
                    "unlikely to beat the swept branch; give the teacher more epochs or another lr in [teacher]",
                    teacher.get("metric", "metric"), teacher["value"], swept["value"], swept["layers"])


def _summary(rec: dict[str, Any]) -> str:
    parts = []
    if "layers" in rec:
        parts.append(f"L={rec['layers']} at depth {rec['depth']}")
    if rec.get("value") is not None:
        parts.append(f"dev {rec.get('metric', 'metric')} {rec['value']:.4f}")
    if rec.get("retention") is not None:
        parts.append(f"retention {100 * rec['retention']:.2f}%")
    if "branch" in rec and rec["branch"] is None:
        parts.append("no student met the retention goal or beat the swept branch; the sweep's branch is kept")
    return ", ".join(parts) or "ok"
