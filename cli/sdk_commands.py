"""``mtbranch train``, ``mtbranch sweep`` and ``mtbranch distill``.

The CLI registers these in its main group. Torch and transformers are imported inside the command bodies
so ``mtbranch --help`` stays fast. User errors are raised as MtbranchError (no traceback).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mtbranch.cli import params as P
from mtbranch.cli.threads import apply_threads, threads_option
from mtbranch.errors import MtbranchError, UsageError, require_extra
from mtbranch.sdk.defaults import DEFAULT_EPOCHS, DEFAULT_FULL_LR, DEFAULT_LR, DEFAULT_PATIENCE
from mtbranch.spec.heads import BUILTIN_HEAD_TYPES

TASK_CHOICES = [t.replace("_", "-") for t in BUILTIN_HEAD_TYPES]
F = Callable[..., Any]


class TaskName(click.ParamType):
    """A trainable head type: a built-in one or an installed plugin's that registers a training side (checked
    while the options are parsed, by :func:`mtbranch.sdk.tasks.get_task`; ``-`` and ``_`` alike)."""

    name = "task"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(TASK_CHOICES) + "|a plugin's]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from mtbranch.sdk.tasks import get_task

        try:
            return get_task(str(value)).name
        except MtbranchError as exc:
            self.fail(f"{exc.message} ({exc.hint})" if exc.hint else exc.message, param, ctx)


TASK = TaskName()
TASK_HELP = ("Head type to train: classification, regression, token-classification, or an installed plugin's "
             "trainable head type (mtbranch plugins lists head types).")


def _data_options(f: F) -> F:
    opts: list[Any] = [
        click.option("--train", "train_path", required=True, type=click.Path(path_type=Path),
                     help="Training data: TSV/CSV/JSONL table, CoNLL file, or a folder with seq.in + seq.out "
                          "(token classification) or seq.in + label (classification)."),
        click.option("--dev", "dev_path", default=None, type=click.Path(path_type=Path),
                     help="Dev data, same layout; evaluated every epoch, the best epoch is kept."),
        click.option("--dev-split", type=P.OPEN_FRACTION, default=None, metavar="FRACTION",
                     help="No dev file: hold out this fraction of --train as the dev set (seeded by --seed, "
                          "stratified by label)."),
        click.option("--text-col", default="0", show_default=True, help="Text column: index or header name."),
        click.option("--pair-col", default=None, help="Second-text column for pair tasks (index or name)."),
        click.option("--label-col", default="1", show_default=True, help="Label/score column: index or name."),
        click.option("--no-header", is_flag=True, help="The table has no header row."),
        click.option("--quote-none", is_flag=True, help="Read with quoting disabled (csv.QUOTE_NONE)."),
        click.option("--format", "fmt", type=click.Choice(["auto", "tsv", "csv", "jsonl"]), default="auto",
                     show_default=True, help="Table format (auto: from the suffix / first line)."),
        click.option("--tag-col", type=click.IntRange(-1000, 1000), default=-1, show_default=True,
                     help="CoNLL: column holding the BIO tag."),
        click.option("--labels", "labels_csv", default=None,
                     help="Comma-separated label values in head order (default: sorted from the data)."),
        click.option("--label-names", default=None,
                     help="Comma-separated names for those labels in the branch, e.g. negative,positive."),
        click.option("--max-train", type=click.IntRange(1), default=None,
                     help="Use a seeded random subset of the training data."),
        click.option("--encoding", default="utf-8-sig", show_default=True,
                     help="Text encoding of the data files, e.g. latin-1 or utf-16 (default: UTF-8, BOM allowed)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _train_options(f: F) -> F:
    opts: list[Any] = [
        click.option("--trunk", "trunk_ref", required=True, metavar="REF",
                     help="Trunk: model directory, hf:org/name@rev or an installed trunk's name."),
        click.option("--epochs", type=P.EPOCHS, default=DEFAULT_EPOCHS, show_default=True,
                     help="At most this many epochs; the best dev epoch is kept (a warning says when it was the "
                          "last: raise --epochs)."),
        click.option("--patience", type=click.IntRange(0, 10_000), default=DEFAULT_PATIENCE, show_default=True,
                     help="Stop after this many epochs without a better dev metric (0: run every epoch)."),
        click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=32, show_default=True),
        click.option("--lr", type=P.LEARNING_RATE, default=None,
                     help=f"Learning rate of the layers, 0 < lr <= 1 [default: {DEFAULT_LR:g}; {DEFAULT_FULL_LR:g} "
                          "with --full]."),
        click.option("--head-lr", type=P.LEARNING_RATE, default=None, help="Learning rate of pooling/projection/head "
                                                                 "(default 10x --lr)."),
        click.option("--weight-decay", type=P.Finite(0, 10), default=0.01, show_default=True),
        click.option("--warmup", type=P.FRACTION, default=0.06, show_default=True, help="Warm-up fraction."),
        click.option("--seed", type=P.SEED, default=42, show_default=True),
        click.option("--max-length", type=P.TOKENS, default=128, show_default=True, help="Tokenizer max_length."),
        click.option("--metric", default=None, help="Dev metric that picks the best epoch (default: accuracy, "
                                                    "pearson or entity_f1 by task)."),
        click.option("--quantize", type=click.Choice(["none", "float16", "int8", "1bit", "1bit-centered"]),
                     default="none", show_default=True,
                     help="Store cached training features quantized (papers/003); 1bit-centered takes signs "
                          "around each dimension's mean."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help="Keep trunk features on disk here (safetensors) and reuse them across runs."),
        threads_option,
        click.option("--no-progress", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _branch_options(f: F) -> F:
    opts: list[Any] = [
        click.option("--name", required=True, help="Branch (task) name, e.g. sentiment."),
        click.option("--version", "version", default="0.1.0", show_default=True),
        click.option("--owner", default=None, help="Owning team, e.g. team-sentiment."),
        click.option("--tag", "tags", type=P.TAG, multiple=True, callback=P.unique_tags,
                     help="A tag for the manifest's tags (repeatable): requests can ask for tasks by tag."),
        click.option("--pooling", type=click.Choice(["cls", "mean", "attention"]), default="cls",
                     show_default=True, help="Sequence pooling (attention: 003's multi-head attention pooling)."),
        click.option("--no-projection", is_flag=True, help="No dense+tanh (BERT pooler) before the head."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _guard_output(o: dict[str, Any], *more: Path | None) -> None:
    """``-o`` may replace only an earlier branch artifact or an empty directory, never overlap an input; the
    same for ``--table`` (an earlier Markdown table). Checked before any data or model is read."""
    from mtbranch.io.guard import check_output

    ref = o.get("trunk_ref")
    trunk = Path(ref) if ref and Path(ref).exists() else None  # an installed trunk lives in site-packages
    inputs = [trunk, o.get("train_path"), o.get("dev_path"), o.get("cache_dir"), *more]
    if o.get("out") is not None:
        o["out"] = check_output(o["out"], "branch", inputs=inputs)
    if o.get("table_out") is not None:
        o["table_out"] = check_output(o["table_out"], "table", inputs=[*inputs, o.get("out")])


def _load_data(task: str, path: Path, o: dict[str, Any]) -> Any:
    from mtbranch.sdk.data import load_task_data

    return load_task_data(task, path, text_col=o["text_col"], pair_col=o["pair_col"], label_col=o["label_col"],
                          header=not o["no_header"], quote_none=o["quote_none"], fmt=o["fmt"],
                          tag_col=o["tag_col"], encoding=o.get("encoding") or "utf-8-sig")


def _rename_labels(data: Any, mapping: dict[str, str]) -> Any:
    from dataclasses import replace

    from mtbranch.sdk.data import Dataset

    return Dataset([replace(e, label=mapping.get(str(e.label), str(e.label))) for e in data.examples], data.sources)


def renames_labels(task: str, data: Any) -> bool:
    """Whether ``--label-names`` can rename ``task``'s labels: a table task whose examples each carry one named
    label (a class), looked up on the task's training side rather than by its name."""
    from mtbranch.sdk.tasks import get_task

    training = get_task(task).training
    return (training.data == "table" and training.label_names_in is not None
            and all(isinstance(e.label, str) for e in data.examples))


def load_task_data(o: dict[str, Any]) -> tuple[str, Any, Any, list[str] | None]:
    from mtbranch.cli.output import show_warnings

    show_warnings()  # the readers' warnings too (e.g. labels joined by '#')
    task = o["task"].replace("-", "_")
    train = _load_data(task, o["train_path"], o)
    if o.get("dev_path") is None:
        if o.get("dev_split") is None:
            raise UsageError("no dev set: give --dev FILE, or --dev-split FRACTION to hold out part of --train",
                             hint="e.g. --dev-split 0.1 (seeded by --seed, stratified by label)")
        from mtbranch.sdk.data import split_dev

        train, dev = split_dev(train, o["dev_split"], o.get("seed") or 42)
    elif o.get("dev_split") is not None:
        raise UsageError("--dev and --dev-split together", hint="give one of them")
    else:
        dev = _load_data(task, o["dev_path"], o)
    labels = [x.strip() for x in o["labels_csv"].split(",")] if o.get("labels_csv") else None
    if o.get("label_names"):
        if not renames_labels(task, train):
            raise UsageError(f"--label-names applies to tasks with one named label per example (classification), "
                             f"not {task}")
        names = [x.strip() for x in o["label_names"].split(",")]
        raw = labels or sorted({str(e.label) for e in train.examples})
        if len(names) != len(raw):
            raise UsageError(f"{len(names)} --label-names for {len(raw)} labels ({', '.join(raw)})")
        mapping = dict(zip(raw, names, strict=True))
        train, dev, labels = _rename_labels(train, mapping), _rename_labels(dev, mapping), names
    return task, train, dev, labels


def _config(o: dict[str, Any]) -> Any:

    from mtbranch.cli.output import show_warnings
    from mtbranch.sdk.train import TrainConfig

    show_warnings()  # e.g. dev labels training never saw, --max-length capped by the trunk
    apply_threads(o.get("threads"))
    if o.get("patience") is not None and o["patience"] < 0:
        raise UsageError(f"--patience {o['patience']}: give 0 (no early stopping) or more")
    lr = o["lr"] if o["lr"] is not None else DEFAULT_FULL_LR if o.get("full") else DEFAULT_LR
    return TrainConfig(epochs=o["epochs"], batch_size=o["batch_size"], lr=lr, head_lr=o["head_lr"],
                       weight_decay=o["weight_decay"], warmup_ratio=o["warmup"], seed=o["seed"],
                       max_length=o["max_length"], metric=o["metric"], quantize=o["quantize"],
                       cache_dir=str(o["cache_dir"]) if o["cache_dir"] else None,
                       progress=not o["no_progress"], max_train_examples=o["max_train"],
                       pooling=o.get("pooling", "cls"), projection=not o.get("no_projection", False),
                       patience=o["patience"] or None, pair_mode=o.get("pair_mode") or "joint")


def _info(o: dict[str, Any]) -> Any:
    from mtbranch.sdk.train import BranchInfo

    return BranchInfo(name=o["name"], version=o["version"], owner=o["owner"], tags=list(o["tags"]))


def _quiet_stdout(as_json: bool) -> Any:
    """With --json, Trainer's log lines go to stderr so stdout holds only the JSON result."""
    import contextlib
    import sys

    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())


TRAIN_EXAMPLES = """
\b
Examples:
  mtbranch train --trunk minilm-l6 --task classification --train SST-2/train.tsv --dev SST-2/dev.tsv \\
      --text-col sentence --label-col label --label-names negative,positive \\
      --layers 2 --name sentiment --owner team-sentiment -o branches/sentiment
  mtbranch train --trunk minilm-l6 --task regression --train STS-B/sts-train.csv --dev STS-B/sts-dev.csv \\
      --no-header --quote-none --text-col 5 --pair-col 6 --label-col 4 --layers 2 --name similarity -o out/sim
  mtbranch train --trunk minilm-l6 --task token-classification --train conll2003/train.txt \\
      --dev conll2003/valid.txt --layers 2 --name entities -o out/entities
  torchrun --nproc_per_node 2 -m mtbranch.cli.sdk_commands train ...   # several processes (DDP)
"""


@click.command("train", epilog=TRAIN_EXAMPLES)
@click.option("--task", type=TASK, required=True, help=TASK_HELP)
@_data_options
@_train_options
@_branch_options
@click.option("--layers", type=P.LAYERS, default=2, show_default=True, help="Task layers n in the branch (0: "
                                                                        "feature-based head).")
@click.option("--depth", type=P.LAYERS, default=None, help="Attach depth d (default: trunk layers - n).")
@click.option("--full", is_flag=True, help="Full fine-tuning reference: depth 0, every trunk layer trained.")
@click.option("--pair-mode", type=click.Choice(["joint", "shared"]), default="joint", show_default=True,
              help="Pair data (--pair-col): joint reads both texts as one sequence (a second trunk pass when served); "
                   "shared encodes each text alone (served on the single-text pass) and the head reads "
                   "[u, v, |u-v|, u*v] of their pooled vectors.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Branch artifact directory to write.")
def train_cmd(**o: Any) -> None:
    """Train a branch: n layers at depth d, initialised from trunk layers d+1..d+n, the trunk frozen.

    Trunk features at depth d are computed once and reused every epoch; the dev set is evaluated each epoch
    and the best epoch is exported with its metrics and training provenance.
    """
    require_extra("train", "mtbranch train")
    from mtbranch.sdk.train import train
    from mtbranch.trunk.source import resolve_trunk

    _guard_output(o)
    task, train_data, dev_data, labels = load_task_data(o)
    cfg = _config(o)
    source = resolve_trunk(o["trunk_ref"])
    layers, depth = o["layers"], o["depth"]
    if o["full"]:
        layers, depth = source.num_layers, 0
    with _quiet_stdout(o["as_json"]):
        res = train(source, task, train_data, dev_data, layers=layers, depth=depth, cfg=cfg, info=_info(o),
                    out_dir=o["out"], labels=labels)
    if not _is_main():
        return
    if o["as_json"]:
        click.echo(json.dumps({"branch": str(o["out"]), "depth": res.depth, "layers": res.layers,
                               "metric": res.metric, "dev": res.metrics, "best_epoch": res.best_epoch,
                               "still_improving": res.still_improving, "history": res.history}))
    else:
        click.echo(f"branch {o['name']} (depth {res.depth}, {res.layers} layer(s)) -> {o['out']}")
        click.echo(f"dev: {_fmt(res.metrics)}  (best epoch {res.best_epoch})")


SWEEP_EXAMPLES = """
\b
Examples:
  mtbranch sweep --trunk minilm-l6 --task classification --train SST-2/train.tsv --dev SST-2/dev.tsv \\
      --text-col sentence --label-col label --min-layers 1 --max-layers 6 --rule within:1 \\
      --name sentiment -o branches/sentiment
  mtbranch sweep ... --rule marginal:1.0    # add layers while each adds >= 1 point
"""


@click.command("sweep", epilog=SWEEP_EXAMPLES)
@click.option("--task", type=TASK, required=True, help=TASK_HELP)
@_data_options
@_train_options
@_branch_options
@click.option("--min-layers", type=P.LAYERS, required=True, help="N_min: fewest task layers tried.")
@click.option("--max-layers", type=P.LAYERS, required=True, help="N_max: most task layers tried.")
@click.option("--rule", default="best", show_default=True,
              help="best | within:X (smallest L within X% of the best) | marginal:C (>= C points per layer).")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="Export the selected branch here.")
@click.option("--table", "table_out", type=click.Path(path_type=Path), default=None,
              help="Also write the Markdown table to this file.")
def sweep_cmd(**o: Any) -> None:
    """Train for every L in [N_min, N_max] (depth = trunk layers - L) and select L by a rule.

    One trunk pass computes the features for every depth; a table like the paper's Table 1 is printed.
    """
    require_extra("train", "mtbranch sweep")
    from mtbranch.sdk.sweep import format_table, parse_rule, sweep

    parse_rule(o["rule"])
    _guard_output(o)
    task, train_data, dev_data, labels = load_task_data(o)
    cfg = _config(o)

    def on_row(row: Any) -> None:
        if _is_main() and not o["as_json"]:
            click.echo(f"L={row.layers} depth={row.depth}: {_fmt(row.metrics)} ({row.seconds:.0f} s)", err=True)

    def on_start(layers: int, depth: int) -> None:
        if _is_main() and not o["as_json"]:
            click.echo(f"L={layers} depth={depth}: training", err=True)

    with _quiet_stdout(o["as_json"]):
        res = sweep(o["trunk_ref"], task, train_data, dev_data, min_layers=o["min_layers"],
                    max_layers=o["max_layers"], rule=o["rule"], cfg=cfg, info=_info(o), out_dir=o["out"],
                    on_row=on_row, labels=labels, on_start=on_start)
    if not _is_main():
        return
    table = format_table(res, o["name"])
    if o["table_out"]:
        from mtbranch.io.atomic import write_text_atomic

        write_text_atomic(o["table_out"], table + "\n")
    if o["as_json"]:
        click.echo(json.dumps(res.to_json()))
    else:
        click.echo(table)
        click.echo(f"selected L = {res.selected} by rule {res.rule}" + (f" -> {o['out']}" if o["out"] else ""))


DISTILL_EXAMPLES = """
\b
Examples:
  mtbranch distill --trunk minilm-l6 --teacher branches/sentiment --train SST-2/train.tsv \\
      --dev SST-2/dev.tsv --text-col sentence --label-col label --label-names negative,positive \\
      --student-layers 1 --name sentiment-l1 -o branches/sentiment-l1

\b
  # a full fine-tuning run (depth 0, 6 layers) teaches a 2-layer branch at depth 4:
  mtbranch distill --trunk minilm-l6 --teacher runs/entities-full --student-depth 4 --student-layers 2 \\
      --train conll2003/train.txt --dev conll2003/valid.txt --lr 3e-4 --epochs 5 --alpha 0.5 \\
      --name entities -o branches/entities
  # ... starting from an existing branch of that depth and size instead of the trunk layers:
  mtbranch distill ... --student-depth 4 --student-layers 2 --init branches/entities-v1 ...
"""


@click.command("distill", epilog=DISTILL_EXAMPLES)
@click.option("--teacher", type=click.Path(path_type=Path), required=True, help="Teacher branch directory.")
@click.option("--student-layers", type=P.LAYERS, required=True,
              help="Student layers l (< the teacher's when the student sits at the teacher's depth).")
@click.option("--student-depth", type=P.LAYERS, default=None,
              help="Attach depth of the student (default: the teacher's). Deeper than the teacher (e.g. a full "
                   "fine-tuning run at depth 0 teaching a branch at depth 4): the student starts from the trunk "
                   "layers above that depth, or from --init.")
@click.option("--init", "init_dir", type=click.Path(path_type=Path), default=None,
              help="Start the student from this branch (same depth and layers as the student, same task) "
                   "instead of the teacher's bottom layers or the trunk layers.")
@click.option("--alpha", type=P.FRACTION, default=0.5, show_default=True, help="Weight of the soft-target loss.")
@click.option("--temperature", type=P.Finite(0, 1000, min_open=True), default=2.0, show_default=True)
@click.option("--task", type=TASK, default=None,
              help="Optional: must match the teacher's head (taken from the teacher when left out).")
@_data_options
@_train_options
@click.option("--name", default=None, help="Student name (default: <teacher>-l<l>, or <teacher>-d<D>l<l> with a "
                                                "deeper --student-depth).")
@click.option("--version", "version", default=None, help="Student version (default: the teacher's).")
@click.option("--owner", default=None, help="Owner (default: the teacher's).")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
def distill_cmd(**o: Any) -> None:
    """Distill a teacher branch into a student branch.

    By default the student has fewer layers at the teacher's depth and starts from the teacher's bottom
    layers, pooling and head. With --student-depth deeper than the teacher's (e.g. a full fine-tuning run,
    depth 0), the student starts from the trunk layers above its depth, or from --init. The loss mixes soft
    targets at temperature T (KL, or MSE for regression) with the hard labels; the teacher's outputs are
    computed once.
    """
    require_extra("train", "mtbranch distill")
    from mtbranch.sdk.distill import distill
    from mtbranch.sdk.train import BranchInfo, DistillSpec
    from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest

    teacher = o["teacher"]
    _guard_output(o, teacher, o["init_dir"])
    try:
        tm = read_manifest(teacher / MANIFEST_NAME)
    except FileNotFoundError:
        raise MtbranchError("no manifest.json: not a branch directory", path=str(teacher)) from None
    except ValueError as exc:
        raise MtbranchError(f"invalid teacher manifest: {exc}", path=str(teacher)) from None
    if o["task"] is not None and o["task"].replace("-", "_") != tm.head.type:
        raise UsageError(f"--task {o['task']} does not match the teacher's head type {tm.head.type}")
    o["task"] = tm.head.type
    _task, train_data, dev_data, _ = load_task_data(o)
    cfg = _config(o)
    depth = tm.attach_depth if o["student_depth"] is None else o["student_depth"]
    default_name = f"{tm.name}-l{o['student_layers']}" if depth == tm.attach_depth else \
        f"{tm.name}-d{depth}l{o['student_layers']}"
    info = BranchInfo(name=o["name"] or default_name, version=o["version"] or tm.version,
                      owner=o["owner"] or tm.owner)
    with _quiet_stdout(o["as_json"]):
        res = distill(o["trunk_ref"], teacher, train_data, dev_data, student_layers=o["student_layers"],
                      spec=DistillSpec(o["alpha"], o["temperature"]), cfg=cfg, info=info, out_dir=o["out"],
                      student_depth=o["student_depth"], init_dir=o["init_dir"])
    if not _is_main():
        return
    m = res.metric
    if o["as_json"]:
        click.echo(json.dumps({"metric": m, "teacher": res.teacher_metrics, "student": res.student.metrics,
                               "retained": res.retained, "branch": str(o["out"]), "student_depth": depth,
                               "student_layers": o["student_layers"], "best_epoch": res.student.best_epoch,
                               "history": [h.get(m) for h in res.student.history],
                               "seconds": round(res.student.seconds, 1)}))
    else:
        click.echo(f"teacher {tm.name} ({tm.num_layers} layers) at depth {tm.attach_depth}: "
                   f"{m}={res.teacher_metrics[m]:.4f}")
        click.echo(f"student {info.name} ({o['student_layers']} layer(s)) at depth {depth}: "
                   f"{m}={res.student.metrics[m]:.4f} "
                   f"({100 * res.retained:.1f}% of the teacher) -> {o['out']}")


@click.group(name="mtbranch-sdk")
def _standalone() -> None:
    """SDK commands (also available as `mtbranch train|sweep|distill`)."""


for _cmd in (train_cmd, sweep_cmd, distill_cmd):
    _standalone.add_command(_cmd)


def main() -> None:
    """Entry point for ``python -m mtbranch.cli.sdk_commands`` (torchrun needs a module or script)."""
    from mtbranch.cli.main import MtbranchGroup

    _standalone.__class__ = MtbranchGroup  # same error handling as the main CLI: no tracebacks
    _standalone(prog_name="mtbranch")


if __name__ == "__main__":
    main()
