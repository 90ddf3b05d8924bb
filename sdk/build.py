"""``mtbranch build RECIPE``: the paper's pipeline as one resumable recipe.

Stages, each recorded in ``OUT/build-state.json`` and skipped when a finished run of the same recipe already
did it: ``sweep`` (cached trunk features, one branch per L in a layer range, L picked by a rule; paper §3.1),
``teacher`` (optional full fine-tuning reference, every layer from depth 0), ``distill`` (optional: the
smallest student, fewer layers than the selected L, whose dev metric keeps ``retention`` of the reference;
paper §3.2, the student initialised from the trunk layers above its depth or the teacher's bottom layers;
with ``include_selected``, else a student of the selected L when it beats the swept branch),
``export`` (the chosen branch with the recipe and every stage's metric in its manifest provenance).
The CLI command then packages the branch as a plugin (``new-plugin``).

Each stage is a module-level function from a :class:`BuildContext` (recipe, trunk, data, state, the records so
far) to its :class:`~mtbranch.sdk.build_state.StageRecord`; ``STAGES`` lists them in the order they run, and
:func:`run_stage` reuses a finished one or runs and records it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtbranch.errors import MtbranchError
from mtbranch.io.atomic import write_text_atomic
from mtbranch.io.files import read_bytes
from mtbranch.sdk.build_state import StageRecord
from mtbranch.sdk.defaults import DEFAULT_EPOCHS, DEFAULT_FULL_LR, DEFAULT_LR, DEFAULT_PATIENCE

if TYPE_CHECKING:
    from mtbranch.sdk.data import Dataset
    from mtbranch.sdk.train import BranchInfo, TrainConfig
    from mtbranch.trunk.source import TrunkSource

log = logging.getLogger("mtbranch.sdk")
STATE_NAME = "build-state.json"
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
    type: str = Field(description="a trainable head type: classification, regression, token-classification or a "
                                  "plugin's (checked when the recipe is read)")
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
    _check_task(recipe, p)
    if recipe.sweep.min_layers > recipe.sweep.max_layers:
        raise MtbranchError("recipe field 'sweep': min_layers > max_layers", path=str(p))
    if recipe.distill.include_selected and not recipe.teacher.enabled:
        raise MtbranchError("recipe field 'distill.include_selected' needs a teacher: the student would be as large "
                            "as the swept branch it learns from", path=str(p),
                            hint="set teacher.enabled = true, or remove distill.include_selected")
    return recipe, p.resolve().parent, hashlib.sha256(raw).hexdigest()


def _check_task(recipe: Recipe, path: Path) -> None:
    """``task.type`` names a trainable head type (a built-in one or an installed plugin's)."""
    from mtbranch.sdk.tasks import get_task

    try:
        get_task(recipe.task_name)
    except MtbranchError as exc:
        raise MtbranchError(f"recipe field 'task.type': {exc.message}", path=str(path), hint=exc.hint) from None


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

    def done(self, stage: str, inputs: str) -> StageRecord | None:
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
        return StageRecord.model_validate(rec)

    def drop(self, stage: str) -> None:
        """Forget a stage the recipe no longer enables (its record must not reach the manifest)."""
        self.data["stages"].pop(stage, None)

    def finish(self, stage: str, record: StageRecord) -> None:
        self.data["stages"][stage] = record.model_dump(exclude_unset=True)  # the fields the stage set, None or not
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


def _config(r: Recipe, cache_dir: Path, progress: bool, **changes: Any) -> TrainConfig:
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


# -- the stages: module-level functions over one typed context, run in order ----------------------------------
@dataclass(frozen=True)
class Reference:
    """The dev metric a student's retention is measured against, and the stage that scored it."""

    source: Literal["sweep", "teacher"]
    value: float


@dataclass
class BuildContext:
    """What the stages share: the recipe and where it writes, the trunk and data (loaded once), each stage's input
    fingerprint (:func:`stage_inputs`), the build state, and the records of the stages run or reused so far."""

    recipe: Recipe
    recipe_sha256: str
    recipe_path: str | os.PathLike[str]
    out: Path
    state: BuildState
    source: TrunkSource
    train_data: Dataset
    dev_data: Dataset
    info: BranchInfo
    inputs: dict[str, str]
    progress: bool
    on_event: Event
    tags: list[str] = dataclasses.field(default_factory=list)  # the exported manifest's (`mtbranch build --tag`)
    records: dict[str, StageRecord] = dataclasses.field(default_factory=dict)

    @property
    def trunk_layers(self) -> int:
        return self.source.num_layers

    def config(self, **changes: Any) -> TrainConfig:
        """The recipe's training settings (``changes`` that are not None override them)."""
        return _config(self.recipe, self.out / "cache", self.progress, **changes)

    @property
    def reference(self) -> Reference:
        """What a student's retention is measured against: the teacher when there is one, else the sweep."""
        source: Literal["sweep", "teacher"] = "teacher" if "teacher" in self.records else "sweep"
        return Reference(source, _value(self.records[source]))

    @property
    def largest_student(self) -> int:
        """Students have min_layers..this layers: fewer than the swept branch (or as many, include_selected)."""
        return _layers(self.records["sweep"]) + (0 if self.recipe.distill.include_selected else -1)

    @property
    def chosen(self) -> StageRecord:
        """The branch the export ships: the distilled student when one was kept, else the swept branch."""
        student = self.records.get("distill")
        return student if student is not None and student.branch else self.records["sweep"]


StageFn = Callable[[BuildContext], StageRecord]


def _always(_: object) -> bool:
    return True


def _nothing(_: BuildContext) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """One step of the build. ``make`` computes its record, called only when no finished run on the same inputs
    can be reused. ``wanted(recipe)``: whether the recipe asks for the stage (one it no longer asks for is
    forgotten, so its record never reaches the manifest); ``due(ctx)``: whether it runs, given the stages before
    it; ``before(ctx)``: a check run when it is wanted, before it runs or is reused."""

    name: str
    make: StageFn
    wanted: Callable[[Recipe], bool] = _always
    due: Callable[[BuildContext], bool] = _always
    before: Callable[[BuildContext], None] = _nothing


def stage(*, wanted: Callable[[Recipe], bool] = _always, due: Callable[[BuildContext], bool] = _always,
          before: Callable[[BuildContext], None] = _nothing) -> Callable[[StageFn], Stage]:
    """Declare a stage function (its name is the stage's)."""
    return lambda make: Stage(make.__name__, make, wanted, due, before)


@stage()
def sweep(ctx: BuildContext) -> StageRecord:
    """Cached trunk features, one branch per L in the layer range, L picked by the rule; sweep.json, sweep.png."""
    from mtbranch.sdk.sweep import sweep as run_sweep

    r, out = ctx.recipe, ctx.out
    res = run_sweep(ctx.source, r.task_name, ctx.train_data, ctx.dev_data, min_layers=r.sweep.min_layers,
                    max_layers=r.sweep.max_layers, rule=r.sweep.rule, cfg=ctx.config(), info=ctx.info,
                    out_dir=out / "sweep-branch", labels=r.data.labels,
                    on_start=lambda L, depth: ctx.on_event(f"[sweep] L={L} at depth {depth}: training"),
                    on_row=lambda row: ctx.on_event(f"[sweep] L={row.layers}: dev "
                                                    f"{', '.join(f'{k} {v:.4f}' for k, v in row.metrics.items())}"))
    table = res.to_json()
    write_text_atomic(out / "sweep.json", json.dumps(table, indent=2) + "\n")
    plotted = _plot_sweep(table, out / "sweep.png", f"{r.branch.name}: dev {res.metric} vs layers")
    return StageRecord(branch=str(out / "sweep-branch"), metric=res.metric, layers=res.selected,
                       depth=ctx.trunk_layers - res.selected, value=res.row(res.selected).metrics[res.metric],
                       rows=table["rows"], plot=str(out / "sweep.png") if plotted else None)


@stage(wanted=lambda r: r.teacher.enabled)
def teacher(ctx: BuildContext) -> StageRecord:
    """The full fine-tuning reference: every trunk layer, from depth 0."""
    from mtbranch.sdk.train import BranchInfo, train

    r, n = ctx.recipe, ctx.trunk_layers
    res = train(ctx.source, r.task_name, ctx.train_data, ctx.dev_data, layers=n, depth=0,
                cfg=ctx.config(epochs=r.teacher.epochs, lr=r.teacher.lr),
                info=BranchInfo(name=f"{r.branch.name}-teacher", version=r.branch.version),
                out_dir=ctx.out / "teacher", labels=r.data.labels)
    return StageRecord(branch=str(ctx.out / "teacher"), metric=res.metric, layers=n, depth=0,
                       value=res.metrics[res.metric])


def _check_teacher(ctx: BuildContext) -> None:
    if "teacher" in ctx.records:
        from mtbranch.sdk.tasks import lower_is_better

        teacher = ctx.records["teacher"]
        _warn_weak_teacher(dict(teacher), dict(ctx.records["sweep"]),
                           lower_is_better(ctx.recipe.task_name, str(teacher.metric)))


@stage(wanted=lambda r: r.distill.enabled, due=lambda ctx: ctx.recipe.distill.min_layers <= ctx.largest_student,
       before=_check_teacher)
def distill(ctx: BuildContext) -> StageRecord:
    """The smallest student (min_layers up) whose dev metric keeps ``retention`` of the reference; with
    include_selected, else a student as large as the swept branch when it beats it."""
    from mtbranch.sdk.distill import distill as run_distill
    from mtbranch.sdk.train import DistillSpec

    r, swept = ctx.recipe, ctx.records["sweep"]
    teacher_dir = Path(str(ctx.records["teacher"].branch if r.teacher.enabled else swept.branch))
    goal = r.distill.retention * ctx.reference.value
    tried: list[dict[str, Any]] = []
    for layers in range(r.distill.min_layers, ctx.largest_student + 1):
        depth = ctx.trunk_layers - layers if r.teacher.enabled else _depth(swept)
        dest = ctx.out / "students" / f"l{layers}"
        res = run_distill(ctx.source, teacher_dir, ctx.train_data, ctx.dev_data, student_layers=layers,
                          student_depth=depth, spec=DistillSpec(alpha=r.distill.alpha,
                                                                temperature=r.distill.temperature),
                          cfg=ctx.config(), info=ctx.info, out_dir=dest)
        value = res.student.metrics[res.metric]
        tried.append({"layers": layers, "depth": depth, "value": value, "branch": str(dest)})
        ctx.on_event(f"[distill] student l={layers} at depth {depth}: dev {res.metric} {value:.4f} "
                     f"(goal {goal:.4f})")
        kept = StageRecord(branch=str(dest), layers=layers, depth=depth, value=value, goal=goal, tried=tried)
        if layers < _layers(swept) and value >= goal:
            return kept  # fewer layers, and the retention goal holds
        if layers == _layers(swept) and value > _value(swept):
            return kept  # as large as the swept branch, and better than it
    return StageRecord(branch=None, goal=goal, tried=tried)  # no student beat the swept branch


@stage()
def export(ctx: BuildContext) -> StageRecord:
    """The chosen branch under the recipe's name, with the recipe and every stage's metric in its provenance."""
    from mtbranch.branch.model import load_branch, save_branch

    final, reference = ctx.chosen, ctx.reference
    branch = load_branch(str(final.branch))
    m = branch.manifest
    stages = {k: {x: v[x] for x in ("layers", "depth", "value", "metric", "goal") if x in v}
              for k, v in ctx.state.data["stages"].items()}
    # retention is the share of a teacher's metric kept: without a teacher there is nothing to keep a share of
    retention = (_value(final) / reference.value if reference.value and reference.source == "teacher" else None)
    build = {"recipe": ctx.recipe.model_dump(mode="json"), "recipe_sha256": ctx.recipe_sha256, "stages": stages,
             "reference": asdict(reference), "retention": retention}
    b = ctx.recipe.branch
    branch.manifest = m.model_copy(update={"name": b.name, "version": b.version, "owner": b.owner,
                                           "description": b.description, "tags": list(ctx.tags),
                                           "training": {**m.training, "build": build}})
    save_branch(branch, ctx.out / "branch")
    return StageRecord(branch=str(ctx.out / "branch"), layers=final.layers, depth=final.depth, value=final.value,
                       retention=retention)


STAGES: list[Stage] = [sweep, teacher, distill, export]


def run_stage(ctx: BuildContext, step: Stage) -> None:
    """Reuse the stage's finished record when its inputs are unchanged (and its branch is the one this build
    wrote), else run it and record it in the state; either way its record joins ``ctx.records``."""
    from mtbranch.sdk.build_state import check_stage

    name, inputs = step.name, ctx.inputs[step.name]
    rec = ctx.state.done(name, inputs)
    if rec is not None:
        check_stage(name, rec.model_dump(exclude_unset=True), ctx.out, ctx.recipe.branch.name,
                    ctx.source.fingerprints, ctx.state.path)
        ctx.on_event(f"[{name}] done in an earlier run: {_summary(rec)}")
    else:
        earlier = name in ctx.state.data["stages"]
        ctx.on_event(f"[{name}] running" + (" (its inputs changed since the earlier run)" if earlier else ""))
        made = step.make(ctx)
        rec = StageRecord(**made.model_dump(exclude_unset=True), inputs=inputs)
        ctx.state.finish(name, rec)
        ctx.on_event(f"[{name}] finished: {_summary(rec)}")
    ctx.records[name] = rec


def run_build(recipe_path: str | os.PathLike[str], *, restart: bool = False, progress: bool = True,
              on_event: Event = print, tags: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or resume) every stage of the recipe; returns the build state (stage records). ``tags``: the
    exported manifest's tags (``mtbranch build --tag``)."""
    recipe, base, sha = read_recipe(recipe_path)
    out = guard_out(recipe, base, recipe_path)
    with build_lock(out):
        ctx = open_build(recipe, base, sha, out, recipe_path, restart=restart, progress=progress,
                         on_event=on_event, tags=tags)
        for step in STAGES:
            if step.wanted(recipe):
                step.before(ctx)
                if step.due(ctx):
                    run_stage(ctx, step)
        return ctx.state.data


def open_build(recipe: Recipe, base: Path, sha: str, out: Path, recipe_path: str | os.PathLike[str], *,
               restart: bool, progress: bool, on_event: Event, tags: Sequence[str] = ()) -> BuildContext:
    """The build's context: its state (read first: a broken one is refused before any work), the trunk, the data,
    each stage's input fingerprint; the stages the recipe no longer asks for are forgotten."""
    from mtbranch.sdk.train import BranchInfo
    from mtbranch.trunk.source import resolve_trunk

    state = BuildState(out, sha, restart=restart)
    source = resolve_trunk(_resolve(base, recipe.task.trunk))
    n = source.num_layers
    if recipe.sweep.max_layers > n:
        raise MtbranchError(f"recipe field 'sweep.max_layers' is {recipe.sweep.max_layers}, the trunk has {n} layers",
                            path=str(recipe_path))
    train_data = _load(recipe.task_name, _under(base, recipe.data.train), recipe.data)
    if recipe.data.dev is not None:
        dev_data = _load(recipe.task_name, _under(base, recipe.data.dev), recipe.data)
    else:
        from mtbranch.sdk.data import split_dev

        train_data, dev_data = split_dev(train_data, recipe.data.dev_split or 0.0, recipe.train.seed)
    b = recipe.branch
    info = BranchInfo(name=b.name, version=b.version, owner=b.owner, description=b.description)
    inputs = stage_inputs(recipe, sha, source.fingerprints[-1], train_data.sources + dev_data.sources, tags)
    for step in STAGES:
        if not step.wanted(recipe):
            state.drop(step.name)
    return BuildContext(recipe, sha, recipe_path, out, state, source, train_data, dev_data, info, inputs, progress,
                        on_event, tags=list(tags))


def _value(rec: StageRecord) -> float:
    assert rec.value is not None  # sweep, teacher and kept students always score
    return rec.value


def _layers(rec: StageRecord) -> int:
    assert rec.layers is not None
    return rec.layers


def _depth(rec: StageRecord) -> int:
    assert rec.depth is not None
    return rec.depth


def _warn_weak_teacher(teacher: dict[str, Any], swept: dict[str, Any], lower_is_better: bool = False) -> None:
    """A teacher scoring below the branch it should teach: distilling from it is unlikely to help."""
    if (teacher["value"] > swept["value"]) if lower_is_better else (teacher["value"] < swept["value"]):
        log.warning("the teacher's dev %s %.4f is below the swept branch's %.4f (L=%s): distilling from it is "
                    "unlikely to beat the swept branch; give the teacher more epochs or another lr in [teacher]",
                    teacher.get("metric", "metric"), teacher["value"], swept["value"], swept["layers"])


def _summary(rec: StageRecord) -> str:
    parts = []
    if rec.layers is not None:
        parts.append(f"L={rec.layers} at depth {rec.depth}")
    if rec.value is not None:
        parts.append(f"dev {rec.metric or 'metric'} {rec.value:.4f}")
    if rec.retention is not None:
        parts.append(f"retention {100 * rec.retention:.2f}%")
    if "branch" in rec.model_fields_set and rec.branch is None:
        parts.append("no student met the retention goal or beat the swept branch; the sweep's branch is kept")
    return ", ".join(parts) or "ok"
