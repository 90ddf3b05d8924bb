"""``mtbranch quantize ARTIFACT --dev NAME=PATH``: int8 per branch where its dev metric allows (sdk.int8_gate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mtbranch.cli import params as P
from mtbranch.cli.threads import apply_threads, threads_option
from mtbranch.errors import UsageError

EXAMPLES = """
\b
Examples:
  mtbranch quantize out/composed --dev sentiment=SST-2/dev.tsv --dev-text-col sentence --dev-label-col label \\
      --dev-label-names negative,positive --threads 1
  mtbranch quantize out/composed --dev intent=snips-intent/dev.jsonl --dev-text-col text --dev-label-col label \\
      --max-drop 0.3 --dry-run
"""


@click.command("quantize", epilog=EXAMPLES)
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--dev", "dev", multiple=True, required=True, metavar="NAME=PATH",
              help="A labelled dev set of a branch (repeatable; read like `mtbranch train --dev`, see --dev-*).")
@P.dev_file_options
@click.option("--encoding", default="utf-8-sig", show_default=True, help="Text encoding of the dev files.")
@click.option("--max-drop", type=P.Finite(0, 100), default=0.5, show_default=True,
              help="Points of its dev metric (x 100) a branch may lose and still be kept int8.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Score only the first N examples of each dev set.")
@click.option("--dry-run", is_flag=True, help="Report the decisions; leave the artifact unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@threads_option
def quantize_cmd(artifact: Path, **o: Any) -> None:
    """Keep a branch's own layers int8 where its dev metric drops at most --max-drop points.

    Each branch given a --dev set is scored with its layers in float32 and in int8 (dynamic quantization;
    pooler and head stay float32) on the artifact's float32 trunk; the lock records `precision: int8` for the
    branches kept, and `load`/`predict`/`serve` run them so. The trunk stays float32 (every branch reads it);
    branches not named keep their recorded precision.
    """
    from mtbranch.cli.migrate import _dev_sets
    from mtbranch.cli.output import console
    from mtbranch.composition.artifact import load
    from mtbranch.io.guard import check_output
    from mtbranch.sdk.int8_gate import gate, record

    names = [v.partition("=")[0] for v in o["dev"]]
    if len(set(names)) != len(names):
        raise UsageError("a branch named twice in --dev", hint="give one --dev NAME=PATH per branch")
    # the artifact is rewritten in place (its lock): the output guard first, as for `update`
    artifact = check_output(artifact, "composed", inputs=[v.partition("=")[2] for v in o["dev"]])
    apply_threads(o["threads"])
    model = load(artifact)
    dev = _dev_sets(o["dev"], o, list(model.branches), among="the artifact's")
    decisions = gate(model, dev, o["max_drop"], o["limit"])
    if not o["dry_run"]:
        record(artifact, decisions)
    if o["as_json"]:
        click.echo(json.dumps([d.as_dict() for d in decisions], indent=2))
        return
    for d in decisions:
        shown = "-" if d.int8 is None else f"{d.int8:.2f}"
        console.print(f"{d.name}: {d.metric} float32 {d.float32:.2f}, int8 {shown} -> {d.precision} ({d.reason})",
                      markup=False, soft_wrap=True)
    if o["dry_run"]:
        console.print("dry run: the artifact is unchanged", markup=False)
