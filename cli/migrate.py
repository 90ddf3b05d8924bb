"""``mtbranch migrate``: the teacher's branches on a new trunk, trained from unlabelled texts (mtbranch.sdk.migrate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mtbranch.cli import params as P
from mtbranch.cli.threads import apply_threads, threads_option
from mtbranch.errors import UsageError, require_extra

EXAMPLES = """
\b
Examples:
  mtbranch migrate out/composed --to-trunk minilm-l3 --texts texts.txt -o migrated/
  mtbranch migrate out/composed --only sentiment --to-trunk minilm-l3 --texts sst2-texts.txt \\
      --dev sentiment=SST-2/dev.tsv --dev-text-col sentence --dev-label-col label \\
      --dev-label-names negative,positive --layers 2 --threads 1 -o migrated/
  mtbranch migrate branches/entities --from-trunk minilm-l6 --to-trunk minilm-l3 \\
      --texts entities=conll-sentences.txt -o migrated/
  mtbranch migrate ./sst2-finetuned-bert --name sentiment --to-trunk minilm-l6 --texts texts.txt \\
      -o consolidated/      # consolidation: a fine-tuned checkpoint becomes a branch
  # stopped? the same command continues from the finished branches
"""


def _named(values: tuple[str, ...], what: str) -> dict[str | None, list[Path]]:
    """``FILE`` (every branch) or ``NAME=FILE`` (that branch only)."""
    out: dict[str | None, list[Path]] = {}
    for v in values:
        name, sep, path = v.partition("=")
        key = name if sep and name and not Path(v).exists() else None
        out.setdefault(key, []).append(Path(path if key is not None else v))
    return out


def _dev_sets(values: tuple[str, ...], o: dict[str, Any], teachers: list[Any], what: str = "--dev",
              among: str = "the teacher's") -> dict[str, Any]:
    from mtbranch.cli.sdk_commands import _load_data, _rename_labels, renames_labels

    tasks = {t.name: t.manifest for t in teachers}
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"{what} {v!r}: expected NAME=PATH", hint=f"e.g. {what} sentiment=SST-2/dev.tsv")
        if name not in tasks:
            raise UsageError(f"{what} {name}=...: no branch {name!r} among {among}",
                             hint=f"branches: {', '.join(tasks)}")
        m = tasks[name]
        spec = {"text_col": o["dev_text_col"], "pair_col": o["dev_pair_col"], "label_col": o["dev_label_col"],
                "no_header": o["dev_no_header"], "quote_none": o["dev_quote_none"], "fmt": "auto", "tag_col": -1,
                "encoding": o["encoding"]}
        if spec["pair_col"] is None and m.tokenizer.input_signature == "pair":
            raise UsageError(f"{what} {name}=...: branch {name!r} takes text pairs", hint="give --dev-pair-col")
        data = _load_data(m.head.type, Path(path), spec)
        if o["dev_label_names"] and renames_labels(m.head.type, data):
            names = [x.strip() for x in o["dev_label_names"].split(",")]
            raw = sorted({str(e.label) for e in data.examples})
            if len(names) != len(raw):
                raise UsageError(f"{len(names)} --dev-label-names for {len(raw)} labels ({', '.join(raw)})")
            data = _rename_labels(data, dict(zip(raw, names, strict=True)))
        out[name] = data
    return out


@click.command("migrate", epilog=EXAMPLES)
@click.argument("teacher", type=click.Path(path_type=Path))
@click.option("--to-trunk", "to_trunk", required=True, metavar="REF",
              help="The new trunk: model directory, hf:org/name@rev or an installed trunk's name.")
@click.option("--texts", "texts", multiple=True, required=True, metavar="[NAME=]FILE",
              help="Unlabelled texts, one per line (pairs: text<TAB>text; token tasks: whitespace words). "
                   "NAME=FILE gives one branch its own texts. Repeatable.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Output directory: branches/<name>, migrate-state.json, migrate-report.json, .cache/.")
@click.option("--only", multiple=True, metavar="NAME", help="Migrate only this branch (repeatable).")
@click.option("--from-trunk", default=None, metavar="REF",
              help="A branch directory's trunk (default: the installed trunk its fingerprint fits).")
@click.option("--name", default=None, help="Consolidation (TEACHER is a transformers checkpoint): the branch name "
                                          "(default: the directory's name).")
@click.option("--pair", is_flag=True, help="Consolidation: the checkpoint reads text pairs.")
@click.option("--dev", "dev", multiple=True, metavar="NAME=PATH",
              help="A labelled dev set of a branch: the real metric of the teacher and the student is reported "
                   "beside the agreement. Read like `mtbranch train --dev` (see --dev-* options).")
@click.option("--train", "gold", multiple=True, metavar="NAME=PATH",
              help="Optional gold labels for a branch, mixed in (hard labels weighted 1 - --alpha; read with the "
                   "--dev-* options).")
@click.option("--alpha", type=P.FRACTION, default=None,
              help="Weight of the teacher's soft targets (default 1: no labels; 0.5 with --train).")
@P.dev_file_options
@click.option("--layers", type=P.LAYERS, default=None,
              help="Student layers L (default: a sweep, see --min/--max-layers).")
@click.option("--min-layers", type=P.LAYERS, default=1, show_default=True)
@click.option("--max-layers", type=P.LAYERS, default=None, help="Default: the teacher's layers (at most the trunk's).")
@click.option("--rule", default="within:1", show_default=True,
              help="Picks L from the agreements, as build's sweep: best | within:X | marginal:C.")
@click.option("--holdout", type=P.OPEN_FRACTION, default=0.1, show_default=True,
              help="Fraction of the texts held out: the student is chosen by agreement with the teacher there.")
@click.option("--max-texts", type=click.IntRange(1, 10**9), default=None,
              help="Use a seeded random subset of the texts.")
@click.option("--max-length", type=P.TOKENS, default=None, help="Tokenizer max_length (default: the teacher's).")
@click.option("--temperature", type=P.Finite(0, 1000, min_open=True), default=2.0, show_default=True)
@click.option("--epochs", type=P.EPOCHS, default=8.0, show_default=True)
@click.option("--patience", type=click.IntRange(0, 10_000), default=2, show_default=True)
@click.option("--lr", type=P.LEARNING_RATE, default=3e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=32, show_default=True)
@click.option("--seed", type=P.SEED, default=42, show_default=True)
@click.option("--encoding", default="utf-8-sig", show_default=True, help="Text encoding of the text files.")
@threads_option
@click.option("--speed-texts", type=click.IntRange(0, 1_000_000), default=256, show_default=True,
              help="Time the old and the new composed model on this many texts (0: no timing).")
@click.option("--restart", is_flag=True, help="Start over: earlier finished branches in -o are redone.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the migration report as JSON.")
def migrate_cmd(**o: Any) -> None:
    """Move a composed model's branches (or one branch) to a new trunk without labels.

    TEACHER: a composed artifact, a branch directory, or a fine-tuned transformers *ForSequenceClassification /
    *ForTokenClassification checkpoint (consolidation: a team's full model becomes a branch on the shared trunk).

    The teacher's outputs over the texts (computed once, cached) are the students' only targets; each student
    is chosen by its agreement with the teacher on held-out texts and exported bound to the new trunk with its
    version bumped. Resumable: the same command continues a stopped migration.
    """
    require_extra("train", "mtbranch migrate")
    import contextlib
    import sys

    from mtbranch.cli.output import show_warnings
    from mtbranch.sdk.migrate import CheckpointOptions, MigrateOptions, find_teachers, migrate

    show_warnings()
    apply_threads(o["threads"])
    checkpoint = CheckpointOptions(name=o["name"], pair=o["pair"], max_length=o["max_length"] or 128)
    teachers = find_teachers(o["teacher"], only=o["only"], from_trunk=o["from_trunk"], checkpoint=checkpoint)
    dev = _dev_sets(o["dev"], o, teachers)
    gold = _dev_sets(o["gold"], o, teachers, "--train")
    opts = MigrateOptions(layers=o["layers"], min_layers=o["min_layers"], max_layers=o["max_layers"],
                          rule=o["rule"], holdout=o["holdout"], max_texts=o["max_texts"], max_length=o["max_length"],
                          temperature=o["temperature"], alpha=o["alpha"], epochs=o["epochs"],
                          patience=o["patience"], lr=o["lr"],
                          batch_size=o["batch_size"], seed=o["seed"], progress=not o["no_progress"],
                          restart=o["restart"], speed_texts=o["speed_texts"])
    if opts.alpha is not None and not 0 <= opts.alpha <= 1:
        raise UsageError(f"--alpha {opts.alpha}: need 0 <= alpha <= 1")
    if not 0 < opts.holdout < 1:
        raise UsageError(f"--holdout {opts.holdout}: need a fraction between 0 and 1", hint="e.g. --holdout 0.1")

    def event(line: str) -> None:
        click.echo(line, err=True)

    quiet = contextlib.redirect_stdout(sys.stderr) if o["as_json"] else contextlib.nullcontext()
    with quiet:
        res = migrate(o["teacher"], o["to_trunk"], _named(o["texts"], "--texts"), o["out"], only=o["only"],
                      from_trunk=o["from_trunk"], options=opts, dev=dev, encoding=o["encoding"],
                      checkpoint=checkpoint, gold=gold, on_event=event)
    if o["as_json"]:
        click.echo(json.dumps(res.to_json()))
        return
    print_report(res)


def print_report(res: Any) -> None:
    from rich.table import Table

    from mtbranch.cli.output import console, esc

    table = Table(title=f"migration -> {esc(res.out)}")
    for col in ("branch", "task", "teacher", "student", "agreement", "dev teacher", "dev student", "ratio", "time"):
        table.add_column(col, justify="right" if col not in ("branch", "task") else "left")
    bumps = []
    for r in res.branches:
        dev = r.get("dev") or {}
        a = r["agreement"]
        table.add_row(esc(r["name"]), r["task"],
                      f"{r['teacher']['num_layers']}L@{r['teacher']['attach_depth']}",
                      f"{r['student']['num_layers']}L@{r['student']['attach_depth']}",
                      f"{a['metric']} {100 * a['value']:.2f}",
                      f"{100 * dev['teacher']:.2f}" if dev else "-", f"{100 * dev['student']:.2f}" if dev else "-",
                      f"{100 * dev['ratio']:.1f}%" if dev.get("ratio") else "-",
                      "resumed" if r.get("resumed") else f"{r['seconds']:.0f} s")
        bumps.append(f"{r['name']} {r['version']['teacher']} -> {r['version']['student']}")
    console.print(table)
    if res.speed:
        sp = res.speed
        console.print(f"speed ({sp['texts']} texts, predict): old {sp['old']['texts_per_second']:.0f} texts/s "
                      f"({sp['old']['trunk_layers_run']} trunk layers), new {sp['new']['texts_per_second']:.0f} "
                      f"texts/s ({sp['new']['trunk_layers_run']}): x{sp['speedup']:.2f}", markup=False)
    console.print("next: bump each branch's plugin version and ship the new branch directory "
                  "(mtbranch new-plugin for a new package): " + "; ".join(bumps), markup=False)
    console.print("      check the composed model: mtbranch compose --trunk <new trunk> "
                  f"--branch {res.out}/branches/NAME ... -o composed-new/", markup=False)
