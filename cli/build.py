"""``mtbranch build RECIPE``: data + task + budget in, a validated branch and a plugin package out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mtbranch.cli import params as P
from mtbranch.cli.output import console, esc, show_warnings
from mtbranch.cli.threads import apply_threads, threads_option
from mtbranch.io.files import read_json_object


@click.command("build")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--restart", is_flag=True, help="Run every stage again, discarding the finished ones.")
@threads_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the build state (every stage's record) as JSON.")
@click.option("--tag", "tags", type=P.TAG, multiple=True, callback=P.unique_tags,
              help="A tag for the exported manifest's tags (repeatable): requests can ask for tasks by tag.")
@click.pass_context
def build(ctx: click.Context, recipe: Path, restart: bool, threads: int | None, no_progress: bool,
          as_json: bool, tags: list[str]) -> None:
    """Run the paper's pipeline from a TOML RECIPE: depth sweep -> (teacher) -> (distill) -> export -> plugin.

    Stages are resumable: run the same command again after an interruption and the finished stages are
    skipped. The recipe and every stage's metric are recorded in the branch manifest's provenance
    (training.build). See docs/build.md for the recipe fields.

    \b
    Example:
      mtbranch build examples/recipes/intent.toml
    """
    from mtbranch.errors import require_extra

    require_extra("train", "mtbranch build")
    from mtbranch.sdk.build import build_lock, guard_out, read_recipe, run_build

    apply_threads(threads)
    show_warnings()  # e.g. a teacher scoring below the branch it should teach
    parsed, base, _ = read_recipe(recipe)  # checked before any expensive work
    out = guard_out(parsed, base, recipe)  # the same path run_build writes (~ expanded once, in one place)
    say = (lambda _msg: None) if as_json else (lambda msg: console.print(esc(msg)))
    with build_lock(out):  # the plugin stage updates build-state.json too: one build at a time
        state = run_build(recipe, restart=restart, progress=not no_progress and not as_json, on_event=say,
                          tags=tags)
        _plugin_stage(ctx, parsed, out, state, restart, say)
    if as_json:
        print(json.dumps(state, indent=2, sort_keys=True))


def _plugin_stage(ctx: click.Context, parsed: Any, out: Path, state: dict[str, Any], restart: bool,
                  say: Callable[[str], None]) -> None:
    from mtbranch.cli.new_plugin import new_plugin

    if parsed.plugin.enabled:
        pkg = out / "plugin"
        name = parsed.plugin.name or f"mtbranch-{parsed.branch.name}"
        if pkg.exists() and (pkg / "pyproject.toml").is_file() and not restart \
                and state["stages"].get("plugin", {}).get("export_sha") == _export_sha(out / "branch"):
            say(f"[plugin] done in an earlier run: {pkg}")
        else:
            say(f"[plugin] packaging {out / 'branch'} as {name}")
            ctx.invoke(new_plugin, name=name, branch_dir=out / "branch", out=pkg, version=parsed.branch.version,
                       module=None, entry_point=None, description=parsed.branch.description or None,
                       requires=tuple(parsed.plugin.requires), force=True)
            state["stages"]["plugin"] = _record_plugin(out, pkg)


def _export_sha(branch_dir: Path) -> str | None:
    """The exported manifest's sha256: it names the weights' sha256 and the version the package carries, so a
    changed version repackages the plugin while an unchanged export reuses it."""
    import hashlib

    from mtbranch.io.files import read_bytes

    try:
        return hashlib.sha256(read_bytes(branch_dir / "manifest.json")).hexdigest()
    except OSError:
        return None


def _record_plugin(out: Path, pkg: Path) -> dict[str, str | None]:
    """Record the packaged plugin in the build state (the weights it ships decide whether it is stale)."""
    from mtbranch.io.atomic import write_text_atomic
    from mtbranch.sdk.build import STATE_NAME

    path = out / STATE_NAME
    data = read_json_object(path)
    record = {"package": str(pkg), "export_sha": _export_sha(out / "branch")}
    data["stages"]["plugin"] = record
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return record
