"""The core commands. Each imports what it needs inside its body so ``--help`` stays light (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mtbranch.cli import params as P
from mtbranch.cli.output import (
    check_argv_text,
    console,
    err_console,
    esc,
    print_json,
    print_predictions,
)
from mtbranch.cli.predict_file import file_input_options
from mtbranch.cli.threads import apply_threads, threads_option
from mtbranch.spec.precision import check_device, resolve_dtype
from mtbranch.trunk.choose import choose_trunk

SELECTION_RULE = ("With --branch, exactly those directories are used; installed plugins' branches join only "
                  "when no --branch is given, or with --with-installed (plugins' checks, head types and trunks "
                  "apply either way).")
trunk_option = click.option("--trunk", "trunk_ref", metavar="REF",
                            help="Model directory, hf:org/name@rev, or an installed trunk's name. "
                                 "Default: the installed trunk whose fingerprint fits the branches.")
branch_option = click.option("--branch", "branch_dirs", multiple=True, metavar="DIR",
                             type=click.Path(path_type=Path),
                             help="A branch artifact directory, or hf:org/name@rev (the Hub cache first; "
                                  "repeatable). " + SELECTION_RULE)
with_installed_option = click.option("--with-installed", is_flag=True,
                                     help="Add the installed plugins' branches to the --branch directories.")
no_plugins_option = click.option("--no-plugins", is_flag=True,
                                 help="Load no plugin at all: no installed branches, trunks, head types or checks.")


def _plugin_manager(no_plugins: bool) -> Any:
    """With --no-plugins no plugin code is imported at all (built-in heads only)."""
    from mtbranch.plugins.manager import PluginManager, get_plugin_manager

    return PluginManager(autoload=False) if no_plugins else get_plugin_manager()


# -- schema ------------------------------------------------------------------------------------------
@click.command()
def schema() -> None:
    """Print the branch manifest JSON Schema.

    \b
    Example:
      mtbranch schema > branch-manifest.schema.json
    """
    from mtbranch.spec.manifest import manifest_json_schema

    print_json(manifest_json_schema())


# -- plugins -----------------------------------------------------------------------------------------
@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List installed plugins: distributions, hooks, branches, trunks and load errors.

    \b
    Example:
      mtbranch plugins --json
    """
    from mtbranch.cli.report import print_plugins
    from mtbranch.plugins.manager import get_plugin_manager

    pm = get_plugin_manager()
    infos = pm.plugin_infos()
    if as_json:
        print_json([info.__dict__ for info in infos])
        return
    print_plugins(infos)


# -- validate ----------------------------------------------------------------------------------------
@click.command()
@trunk_option
@branch_option
@with_installed_option
@no_plugins_option
@click.option("--format", "--output-format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report format.")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1), plugin load errors included.")
def validate(trunk_ref: str | None, branch_dirs: tuple[Path, ...], with_installed: bool, no_plugins: bool,
             fmt: str, strict: bool) -> None:
    """Check that branches fit the trunk and each other, without loading any weights.

    With --branch, exactly those directories are checked; installed plugins' branches join only when no
    --branch is given, or with --with-installed. Exit 0 when clean, 1 on errors (or warnings with --strict),
    2 on usage errors.

    \b
    Examples:
      mtbranch validate --trunk minilm-l6 --branch ./my-branch
      mtbranch validate --format json --strict
    """
    from mtbranch.validation.sources import collect_branches
    from mtbranch.validation.validator import Validator

    pm = _plugin_manager(no_plugins)
    branches = collect_branches(branch_dirs, plugin_manager=pm, use_plugins=not no_plugins,
                                with_installed=with_installed)
    trunk = choose_trunk(trunk_ref, branches, pm, required=False,
                         on_note=lambda note: err_console.print(note, markup=False))
    report = Validator(trunk, plugin_manager=pm).validate(branches)
    if fmt == "json":
        print_json(report.to_dict())
    else:
        from mtbranch.cli.report import print_validation

        print_validation(report)
    raise SystemExit(report.exit_code(strict))


# -- compose -----------------------------------------------------------------------------------------
@click.command()
@trunk_option
@branch_option
@with_installed_option
@no_plugins_option
@click.option("--only", multiple=True, metavar="NAME", help="Compose only these branches (repeatable).")
@click.option("--exclude", multiple=True, metavar="NAME", help="Leave these branches out (repeatable).")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Directory to write the composed artifact to (replaced atomically).")
def compose(trunk_ref: str | None, branch_dirs: tuple[Path, ...], with_installed: bool, no_plugins: bool,
            only: tuple[str, ...], exclude: tuple[str, ...], out: Path) -> None:
    """Validate and merge branches into one composed artifact.

    With --branch, exactly those directories are composed; installed plugins' branches join only when no
    --branch is given, or with --with-installed.

    \b
    Examples:
      mtbranch compose --trunk minilm-l6 --branch ./sentiment --branch ./ner -o composed/
      mtbranch compose -o composed/        # every installed branch, on the installed trunk that fits
    """
    from mtbranch.composition.artifact import compose as do_compose
    from mtbranch.composition.artifact import save_composed
    from mtbranch.validation.sources import collect_branches

    pm = _plugin_manager(no_plugins)
    branches = collect_branches(branch_dirs, plugin_manager=pm, use_plugins=not no_plugins,
                                with_installed=with_installed, only=only, exclude=exclude)
    trunk = choose_trunk(trunk_ref, branches, pm, required=True)
    from mtbranch.io.guard import check_output

    check_output(out, "composed", inputs=[trunk.path, *(p for p, _ in branches)])  # before any work
    with console.status("composing..."):
        model = do_compose(trunk, branches, plugin_manager=pm)
        lock = save_composed(model, out)
    console.print(f"[green]composed[/] {len(lock.branches)} branch(es) on {esc(trunk.reference)} -> {esc(out)}",
                  soft_wrap=True)  # no line breaks inside paths
    console.print(f"overhead: {lock.overhead.text}")


# -- inspect -----------------------------------------------------------------------------------------
@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--card", "card", is_flag=True,
              help="Print the model card (Hub metadata header + one section per branch) instead; ARTIFACT may "
                   "also be a branch directory.")
@click.option("--no-verify", is_flag=True, help="Skip the check against the lock file (hashes, the lock's own fields); "
                                                "what is shown is then only the lock's word.")
@click.option("--cost", is_flag=True, help="Also the FLOPs per request of each task: alone, and its shared and own "
                                           "share when every task is asked (the split /metrics charges by).")
@click.option("--tokens", default=128, show_default=True, type=click.IntRange(1, 1_000_000),
              help="--cost: tokens per text.")
def inspect(artifact: Path, as_json: bool, card: bool, no_verify: bool, cost: bool, tokens: int) -> None:
    """Show a composed artifact: depths, branches, parameters and the overhead metric.

    \b
    Example:
      mtbranch inspect composed/ --json
      mtbranch inspect composed/ --card > composed/README.md
      mtbranch inspect composed/ --cost --tokens 64
    """
    from rich.tree import Tree

    from mtbranch.composition.artifact import lock_overhead, read_lock, refuse_if_tampered, verify_artifact
    from mtbranch.composition.report import task_rows
    from mtbranch.io.safetensors_header import read_header

    if card:
        click.echo(_card_of(artifact), nl=False)  # plain text: redirectable into a README.md
        return
    lock = read_lock(artifact)
    if not no_verify:  # what inspect prints (overhead, model type, layers...) is checked, as predict checks it
        refuse_if_tampered(artifact, verify_artifact(artifact, lock))
    overhead = lock_overhead(lock.branches, lock.trunk.num_layers)  # computed, not quoted
    params: dict[str, int] = {}
    trunk_header = read_header(artifact / "trunk" / "model.safetensors")
    params["trunk"] = sum(_numel(t.shape) for t in trunk_header.tensors.values())
    for e in lock.branches:
        h = read_header(artifact / "branches" / e.name / "branch.safetensors")
        params[e.name] = sum(_numel(t.shape) for t in h.tensors.values())
    entries = [e.model_dump(exclude_none=True) for e in lock.branches]
    info: dict[str, Any] = {
        "artifact": str(artifact), "mtbranch_version": lock.mtbranch_version,
        "trunk": lock.trunk.model_dump(exclude={"fingerprints"}),
        "branches": [{**e, "parameters": params[e["name"]]} for e in entries],
        "parameters": {"trunk": params["trunk"], "total": sum(params.values())},
        "overhead": overhead.model_dump(), "tasks": task_rows(artifact, lock.to_dict())}
    if cost:
        info["cost"] = _cost_rows(artifact, entries, tokens)
    if as_json:
        print_json(info)
        return
    t = lock.trunk
    tree = Tree(f"[bold]{esc(artifact)}[/]  trunk {esc(t.reference)} ({t.model_type}, {t.kept_layers} of "
                f"{t.num_layers} layers kept, {params['trunk']:,} params)")
    for depth in sorted({e.attach_depth for e in lock.branches}):
        node = tree.add(f"depth {depth}")
        for b in (b for b in lock.branches if b.attach_depth == depth):
            node.add(f"[bold]{esc(b.name)}[/] {esc(b.version)}  {esc(b.head)}, {b.num_layers} layer(s), "
                     f"{params[b.name]:,} params  [dim]({esc(str(b.source))})[/]")
    console.print(tree)
    console.print(f"parameters: {info['parameters']['total']:,}")
    console.print(f"overhead: [bold]{overhead.text}[/] transformer layers vs one full model per task")
    _print_task_table(info["tasks"])
    if cost:
        _print_cost_table(info["cost"])


def _cost_rows(artifact: Path, entries: list[dict[str, Any]], tokens: int) -> list[dict[str, Any]]:
    """mtbranch.serve.cost.static_cost for the artifact (owners from the branches' manifests)."""
    from mtbranch.io.files import read_json_object
    from mtbranch.serve.cost import Shape, static_cost
    from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest

    shape = Shape.of_config(read_json_object(artifact / "trunk" / "config.json"))
    branches = []
    for e in entries:
        m = read_manifest(artifact / "branches" / e["name"] / MANIFEST_NAME)
        branches.append({**e, "owner": m.owner, "signature": m.tokenizer.input_signature})
    return static_cost(shape, branches, tokens)


def _print_cost_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    tokens = rows[0]["tokens"] if rows else 0
    table = Table(title=f"cost per request (one text of {tokens} tokens, GFLOPs)", title_justify="left")
    for col in ("task", "owner", "depth", "layers", "alone", "shared", "own", "all tasks"):
        table.add_column(col, justify="left" if col in ("task", "owner") else "right", overflow="fold")
    for r in rows:
        table.add_row(esc(r["task"]), esc(r["owner"]), str(r["attach_depth"]), str(r["num_layers"]),
                      *(f"{r[k] / 1e9:.3f}" for k in ("alone_flops", "shared_flops", "own_flops", "all_tasks_flops")))
    console.print(table)
    console.print("alone: the trunk to its depth and its own layers; shared: its share of the trunk layers when every "
                  "task is asked (each layer split among the tasks of its input signature that need it); own: its "
                  "own layers")


def _card_of(path: Path) -> str:
    """The model card of a branch directory (its manifest), or of a composed artifact (every branch's)."""
    from mtbranch.branch.card import card_text, composed_card, load_manifest
    from mtbranch.composition.artifact import read_lock
    from mtbranch.spec.manifest import MANIFEST_NAME

    if (path / MANIFEST_NAME).is_file():
        return card_text(load_manifest(path))
    lock = read_lock(path)
    manifests = [load_manifest(path / "branches" / name) for name in lock.names]
    return composed_card(manifests, title=f"{path.resolve().name} (mtbranch, trunk {lock.trunk.reference})")


def _print_task_table(rows: list[dict[str, Any]]) -> None:
    """The paper's Table 2 for this artifact: dev metric, full fine-tuning reference, retention per task."""
    from rich.table import Table

    table = Table(title="tasks (dev metrics from each branch's manifest)", title_justify="left")
    for col in ("task", "depth", "layers", "metric", "dev", "full FT", "retention"):
        table.add_column(col, justify="right" if col not in ("task", "metric") else "left")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}"

    for r in rows:
        table.add_row(esc(r["task"]), str(r["attach_depth"]), str(r["num_layers"]), esc(r["metric"] or "-"),
                      pct(r["dev"]), pct(r["reference"]), "-" if r["retention"] is None else f"{pct(r['retention'])}%")
    console.print(table)
    kept = [r["retention"] for r in rows if r["retention"] is not None]
    if kept:
        console.print(f"average retention: {100 * sum(kept) / len(kept):.2f}% over {len(kept)} of {len(rows)} tasks "
                      "(tasks whose provenance names no full fine-tuning reference show '-')")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# -- verify ------------------------------------------------------------------------------------------
@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
def verify(artifact: Path) -> None:
    """Re-check every file of a composed artifact against its lock file (exit 1 on any mismatch).

    \b
    Example:
      mtbranch verify composed/
    """
    from mtbranch.composition.artifact import verify_artifact

    problems = verify_artifact(artifact)
    if problems:
        for p in problems:
            console.print(f"[red]FAIL[/] {esc(p)}", soft_wrap=True)
        raise SystemExit(1)
    console.print(f"[green]ok[/] {esc(artifact)}: every file matches mtbranch.lock.json", soft_wrap=True)


# -- predict -----------------------------------------------------------------------------------------
@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=False)
@file_input_options
@click.option("--task", "tasks", multiple=True, metavar="NAME", help="Run only these tasks (repeatable).")
@click.option("--pair", "pairs", multiple=True, metavar="TEXT",
              help="Second text for pair tasks: once for all inputs, or once per input.")
@click.option("--raw", is_flag=True, help="Include the head's raw outputs (logits / values).")
@click.option("--words", "as_words", is_flag=True,
              help="Inputs are pre-split words (each TEXT / --input text split on whitespace): token tasks "
                   "also return 'tags', one per word.")
@click.option("--aggregation", type=click.Choice(["first", "max", "average"]), default="first", show_default=True,
              help="Token tasks: a word's tag from its first sub-token (as branches are trained), the "
                   "highest-scoring one, or their averaged probabilities.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-verify", is_flag=True, help="Skip the sha256 check against the lock file.")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="CPU fast path: int8 dynamic quantization of the transformer layers (see docs/benchmarks.md).")
@P.backend_options
@click.option("--device", default="cpu", show_default=True, type=P.DEVICE, help="cpu, cuda, cuda:1, ...")
@threads_option
@click.option("-v", "--verbose", is_flag=True, help="Say on stderr which backend and dtype run, and why.")
def predict(artifact: Path, texts: tuple[str, ...], tasks: tuple[str, ...], pairs: tuple[str, ...], raw: bool,
            as_words: bool, aggregation: str, as_json: bool, no_verify: bool, quantize: str | None, dtype: str | None,
            backend: str | None, device: str, threads: int | None, verbose: bool) -> None:
    """Run a composed model on TEXTS, or on every row of --input FILE (JSONL out, streamed).

    \b
    Examples:
      mtbranch predict composed/ "I loved this film" "Paris is in France"
      mtbranch predict composed/ --task similarity --pair "A man plays guitar" "A man plays a guitar" --json
      mtbranch predict composed/ --input reviews.txt --output predictions.jsonl
      mtbranch predict composed/ --input pairs.tsv --text-col sentence1 --pair-col sentence2 --task similarity
      mtbranch predict composed/ --task entities --words "flights to st. louis" --json
    """
    from mtbranch.cli.output import show_warnings
    from mtbranch.composition.artifact import load
    from mtbranch.errors import UsageError

    check_device(device)  # --device cuda on a CPU-only torch: exit 1 before anything is read
    show_warnings()  # e.g. texts truncated to max_length
    check_argv_text(texts, "TEXT")
    check_argv_text(pairs, "--pair")
    if pairs and len(pairs) not in (1, len(texts)):
        raise UsageError(f"{len(pairs)} --pair values for {len(texts)} texts", hint="give one, or one per text")
    text_pairs = None if not pairs else (list(pairs) * len(texts) if len(pairs) == 1 else list(pairs))
    resolve_dtype(dtype, device)  # float16 on the CPU: a user error before anything is loaded
    apply_threads(threads)
    from mtbranch.plugins.manager import captured_stdout

    with captured_stdout() as printed:  # plugin head code (build, postprocess) must not corrupt --json
        model = load(artifact, verify=not no_verify, quantize=quantize, dtype=dtype, device=device, backend=backend)
        if verbose:
            err_console.print(f"backend: {model.backend_reason}", markup=False, soft_wrap=True)
        if text_pairs is None and not tasks:  # pair tasks are skipped when no pair is given
            tasks = tuple(b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single")
        if as_words:
            if text_pairs is not None:
                raise UsageError("--words and --pair together", hint="--words is for token tasks, which take one text")
            results = model.predict(words=[t.split() for t in texts], tasks=list(tasks) or None, raw=raw,
                                    aggregation=aggregation)
        else:
            results = model.predict(list(texts), tasks=list(tasks) or None, text_pairs=text_pairs, raw=raw,
                                    aggregation=aggregation)
    if printed.getvalue().strip():
        err_console.print(f"warning: plugin code printed to stdout (captured, not shown there): "
                          f"{printed.getvalue().strip()[:200]!r}", style="yellow", markup=False, soft_wrap=True)
    if as_json:
        print_json(results)
        return
    print_predictions(texts, results, _summary)


def _summary(r: dict[str, Any]) -> str:
    if "label" in r:
        return f"{r['label']} ({r['score']:.3f})"
    if "labels" in r:
        return ", ".join(r["labels"]) or "(no label)"
    if "values" in r:
        return ", ".join(f"{k}={v:.3f}" for k, v in r["values"].items())
    if "entities" in r:
        return "; ".join(f"{e['text']!r} {e['label']} [{e['start']}:{e['end']}] ({e['score']:.2f})"
                         for e in r["entities"]) or "(no entities)"
    return json.dumps(r)


# -- import-hf ---------------------------------------------------------------------------------------
@click.command("import-hf")
@click.argument("model_dir", type=click.Path(path_type=Path))
@trunk_option
@click.option("--layers", "num_layers", type=P.LAYERS, required=True,
              help="How many top layers of the checkpoint become the branch.")
@click.option("--name", required=True, help="Branch (task) name.")
@click.option("--version", "version", default="0.1.0", show_default=True, help="Branch version (PEP 440).")
@click.option("--max-length", type=P.TOKENS, default=None, help="Tokenizer max_length (default: the tokenizer's).")
@click.option("--pair", "pair", is_flag=True, help="The task takes a text pair.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Branch artifact directory to write.")
def import_hf(model_dir: Path, trunk_ref: str | None, num_layers: int, name: str, version: str,
              max_length: int | None, pair: bool, out: Path) -> None:
    """Turn a fine-tuned *ForSequenceClassification / *ForTokenClassification checkpoint into a branch.

    The checkpoint's embeddings and bottom layers must equal the trunk's; its top LAYERS layers, pooler and
    classifier become the branch, attached at depth (checkpoint layers - LAYERS).

    \b
    Example:
      mtbranch import-hf ./my-finetuned-bert --trunk ./bert-base --layers 2 --name intent -o ./intent-branch
    """
    from mtbranch.branch.import_hf import import_hf as do_import
    from mtbranch.errors import UsageError

    if not trunk_ref:
        raise UsageError("--trunk is required", hint="pass the trunk the checkpoint was fine-tuned from")
    from mtbranch.trunk.source import resolve_trunk

    manifest = do_import(model_dir, resolve_trunk(trunk_ref), num_layers=num_layers, name=name, out=out,
                         version=version, max_length=max_length, input_signature="pair" if pair else "single")
    console.print(f"[green]imported[/] {manifest.name} {manifest.version}: {esc(manifest.head.type)}, depth "
                  f"{manifest.attach_depth}, {manifest.num_layers} layer(s) -> {esc(out)}", soft_wrap=True)


# -- update ------------------------------------------------------------------------------------------
@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--put", "put", multiple=True, metavar="DIR", type=click.Path(path_type=Path),
              help="Add this branch, or replace the one with the same name (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="NAME", help="Remove this branch (repeatable).")
def update(artifact: Path, put: tuple[Path, ...], remove: tuple[str, ...]) -> None:
    """Add, replace or remove branches in a composed artifact; the other branches stay bit-identical.

    \b
    Example:
      mtbranch update composed/ --put ./sentiment-v2 --remove old-intent
    """
    from mtbranch.composition.artifact import update_composed
    from mtbranch.errors import UsageError

    if not put and not remove:
        raise UsageError("nothing to do", hint="pass --put DIR and/or --remove NAME")
    lock = update_composed(artifact, put=put, remove=remove)
    console.print(f"[green]updated[/] {esc(artifact)}: {', '.join(lock.names)}",
                  soft_wrap=True)
    console.print(f"overhead: {lock.overhead.text}")


ALL = [schema, plugins, validate, compose, inspect, verify, predict, import_hf, update]
