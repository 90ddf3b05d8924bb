"""Every command that writes, found by introspecting the click command tree, and the hostile targets it is
driven against (tests/test_writers.py). ``python tests/writers.py`` rewrites the table in docs/reliability.md.

A path-typed parameter of any command is an output unless it is listed in :data:`INPUTS` (read only) or
:data:`NOT_OUTPUTS` (with the reason): a new command or option is covered by default, and the test fails until
it has a :class:`Writer` entry here saying how to run it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
START, END = "<!-- writers:start -->", "<!-- writers:end -->"

# (command, parameter name): path parameters that are only read
INPUTS = {
    ("build", "recipe"), ("compose", "branch_dirs"), ("validate", "branch_dirs"), ("inspect", "artifact"),
    ("verify", "artifact"), ("predict", "artifact"), ("predict", "input_path"), ("serve", "artifact"),
    ("export-onnx", "artifact"), ("import-hf", "model_dir"), ("new-plugin", "branch_dir"), ("update", "put"),
    ("train", "train_path"), ("train", "dev_path"), ("sweep", "train_path"), ("sweep", "dev_path"),
    ("distill", "train_path"), ("distill", "dev_path"), ("distill", "teacher"), ("distill", "init_dir"),
    ("canary start", "branch_dir"), ("migrate", "teacher"),
}
# (command, parameter name) -> why it is not an output although it is a path that is written under
NOT_OUTPUTS = {
    ("train", "cache_dir"): "feature cache: files are added under it (atomically), nothing is replaced or deleted",
    ("sweep", "cache_dir"): "feature cache: files are added under it (atomically), nothing is replaced or deleted",
    ("distill", "cache_dir"): "feature cache: files are added under it (atomically), nothing is replaced or deleted",
    ("bench", "workdir"): "work directory: the benchmark adds its scenario folders under it, nothing is deleted",
    ("export-onnx", "triton_name"): "a name, not a path: the folder under --triton REPO, driven with --triton",
}
OUTPUT_NAMES = ("out", "output", "table", "json_path", "plot_path", "triton")  # non-Path params named so count


def path_params(cli: click.Group) -> list[tuple[str, str]]:
    """Every (command, parameter) that takes a path, or is named like an output, in the command tree."""
    found = []

    def walk(group: click.Group, prefix: str) -> None:
        for name, cmd in sorted(group.commands.items()):
            full = f"{prefix}{name}"
            if isinstance(cmd, click.Group):
                walk(cmd, full + " ")
                continue
            for p in cmd.params:
                named_out = p.name is not None and any(p.name == n or p.name.endswith("_" + n) or
                                                       p.name.startswith(n + "_") for n in OUTPUT_NAMES)
                if isinstance(p.type, click.Path) or (named_out and not isinstance(p.type, click.Choice)
                                                      and not getattr(p, "is_flag", False)):
                    found.append((full, str(p.name)))
            if any(o in ("-i", "--input") for p in cmd.params for o in getattr(p, "opts", [])) \
                    and (full, "input_path") not in found:
                found.append((full, "input_path"))

    walk(cli, "")
    return found


@dataclass
class Fixture:
    """What the writers are run on: a tiny trunk, a branch, a composed artifact and a data file."""

    trunk: Path
    branch: Path
    composed: Path
    data: Path
    work: Path  # the test's own directory (recipes, fresh outputs)


@dataclass(frozen=True)
class Writer:
    command: str
    param: str  # the click parameter (or "recipe out" for build's recipe field)
    shown: str  # how the table names it
    kind: str  # the guard's output kind
    args: Callable[[Fixture, str], list[str]]  # the command line with the output set to the given path
    own_input: Callable[[Fixture], Path]  # one of its inputs
    inside_input: Callable[[Fixture], Path]  # a file inside one of its inputs (or inside an artifact)


def _recipe(fx: Fixture, out: str) -> list[str]:
    d = fx.work / "recipe"
    d.mkdir(exist_ok=True)
    recipe = d / "r.toml"
    recipe.write_text(f'out = "{out}"\n[branch]\nname = "s"\n[task]\ntype = "classification"\ntrunk = "{fx.trunk}"\n'
                      f'[data]\ntrain = "{fx.data}"\ndev = "{fx.data}"\n')
    return ["build", str(recipe)]


def _train_args(fx: Fixture) -> list[str]:
    return ["--trunk", str(fx.trunk), "--task", "classification", "--train", str(fx.data), "--dev", str(fx.data),
            "--text-col", "sentence", "--label-col", "label", "--name", "s"]


WRITERS = [
    Writer("compose", "out", "`compose -o`", "composed",
           lambda fx, t: ["compose", "--no-plugins", "--trunk", str(fx.trunk), "--branch", str(fx.branch), "-o", t],
           lambda fx: fx.branch, lambda fx: fx.branch / "manifest.json"),
    Writer("update", "artifact", "`update ARTIFACT`", "composed",
           lambda fx, t: ["update", t, "--put", str(fx.branch)],
           lambda fx: fx.branch, lambda fx: fx.composed / "branches" / "sentiment" / "manifest.json"),
    Writer("quantize", "artifact", "`quantize ARTIFACT`", "composed",
           lambda fx, t: ["quantize", t, "--dev", f"sentiment={fx.data}", "--dev-text-col", "sentence",
                          "--dev-label-col", "label", "--dev-label-names", "negative,positive"],
           lambda fx: fx.data, lambda fx: fx.composed / "branches" / "sentiment" / "manifest.json"),
    Writer("predict", "output_path", "`predict --output`", "predictions",
           lambda fx, t: ["predict", str(fx.composed), "--input", str(fx.data), "--output", t],
           lambda fx: fx.data, lambda fx: fx.composed / "trunk" / "config.json"),
    Writer("train", "out", "`train -o`", "branch", lambda fx, t: ["train", *_train_args(fx), "-o", t],
           lambda fx: fx.data, lambda fx: fx.trunk / "config.json"),
    Writer("sweep", "out", "`sweep -o`", "branch",
           lambda fx, t: ["sweep", *_train_args(fx), "--min-layers", "1", "--max-layers", "1", "-o", t],
           lambda fx: fx.data, lambda fx: fx.trunk / "config.json"),
    Writer("sweep", "table_out", "`sweep --table`", "table",
           lambda fx, t: ["sweep", *_train_args(fx), "--min-layers", "1", "--max-layers", "1", "--table", t],
           lambda fx: fx.data, lambda fx: fx.trunk / "config.json"),
    Writer("distill", "out", "`distill -o`", "branch",
           lambda fx, t: ["distill", "--trunk", str(fx.trunk), "--teacher", str(fx.branch), "--student-layers",
                          "1", "--train", str(fx.data), "--dev", str(fx.data), "-o", t],
           lambda fx: fx.branch, lambda fx: fx.branch / "manifest.json"),
    Writer("import-hf", "out", "`import-hf -o`", "branch",
           lambda fx, t: ["import-hf", str(fx.trunk), "--trunk", str(fx.trunk), "--layers", "1", "--name", "x",
                          "-o", t],
           lambda fx: fx.trunk, lambda fx: fx.trunk / "config.json"),
    Writer("new-plugin", "out", "`new-plugin --force -o`", "plugin",
           lambda fx, t: ["new-plugin", "acme-x", "--branch", str(fx.branch), "--force", "-o", t],
           lambda fx: fx.branch, lambda fx: fx.branch / "manifest.json"),
    Writer("build", "recipe out", "`build` recipe `out`", "build", _recipe,
           lambda fx: fx.data, lambda fx: fx.trunk / "config.json"),
    Writer("export-onnx", "out", "`export-onnx -o`", "onnx",
           lambda fx, t: ["export-onnx", str(fx.composed), "-o", t],
           lambda fx: fx.composed, lambda fx: fx.composed / "trunk" / "config.json"),
    Writer("export-onnx", "triton", "`export-onnx --triton REPO` (REPO/NAME)", "triton",
           lambda fx, t: ["export-onnx", str(fx.composed), "-o", str(fx.work / "onnx-out"), "--triton",
                          str(Path(os.path.expanduser(t)).parent), "--triton-name",
                          Path(os.path.expanduser(t)).name],
           lambda fx: fx.composed, lambda fx: fx.composed / "branches" / "sentiment"),
    Writer("migrate", "out", "`migrate -o`", "migrate",
           lambda fx, t: ["migrate", str(fx.branch), "--from-trunk", str(fx.trunk), "--to-trunk", str(fx.trunk),
                          "--texts", str(fx.data), "-o", t],
           lambda fx: fx.data, lambda fx: fx.branch / "manifest.json"),
    Writer("bench", "json_path", "`bench --json`", "json",
           lambda fx, t: ["bench", "--workdir", str(fx.work / "bench"), "--rounds", "1", "--no-curve",
                          "--no-load-check", "--json", t],
           lambda fx: fx.work / "bench", lambda fx: fx.work / "bench" / "notes.txt"),
    Writer("bench", "plot_path", "`bench --plot`", "png",
           lambda fx, t: ["bench", "--workdir", str(fx.work / "bench"), "--rounds", "1", "--no-load-check",
                          "--plot", t],
           lambda fx: fx.work / "bench", lambda fx: fx.work / "bench" / "notes.txt"),
]

# target -> (what the table calls it, a phrase the refusal must contain)
TARGETS = {
    "fifo": ("a FIFO", "FIFO"),
    "device": ("a device node", "device"),
    "own-input": ("its own input", "input"),
    "inside-input": ("a file inside an input artifact", "inside"),
    "foreign": ("a folder with foreign files (.git, README.md, NOTES)", ""),
    "symlink": ("a symlinked folder", "symbolic link"),
    "home": ("`~` (the home folder)", ""),
}


def earlier_output(d: Path, kind: str) -> None:
    """An earlier output of ``kind`` (its marker file) in ``d``: the guard may replace it, but not with more."""
    markers = {"composed": ("mtbranch.lock.json", "{}"), "onnx": ("onnx.json", "{}"),
               "branch": ("manifest.json", '{"name": "x", "trunk": {}, "weights": {"path": "branch.safetensors"}}'),
               "triton": ("config.pbtxt", 'name: "x"\n'), "build": ("build-state.json", "{}"),
               "plugin": ("pyproject.toml", "# Generated by `mtbranch new-plugin` from branch x 0.1.0.\n"),
               "migrate": ("migrate-state.json", "{}")}
    if kind in markers:
        name, text = markers[kind]
        (d / name).write_text(text)


def snapshot(*roots: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under ``roots`` (links not followed): its type and its bytes, link target or device."""
    out: dict[str, tuple[str, bytes | str]] = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                p = Path(dirpath) / name
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode):
                    out[str(p)] = ("link", os.readlink(p))
                elif stat.S_ISREG(st.st_mode):
                    out[str(p)] = ("file", p.read_bytes())
                elif stat.S_ISDIR(st.st_mode):
                    out[str(p)] = ("dir", "")
                else:
                    out[str(p)] = ("special", str(stat.S_IFMT(st.st_mode)) + f":{st.st_rdev}")
    return out


def table() -> str:
    cols = list(TARGETS)
    lines = ["| writer | kind | " + " | ".join(TARGETS[c][0] for c in cols) + " |",
             "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    for w in WRITERS:
        lines.append(f"| {w.shown} | {w.kind} | " + " | ".join("refused" for _ in cols) + " |")
    lines.append("")
    lines.append(f"{len(WRITERS)} writers x {len(cols)} targets = {len(WRITERS) * len(cols)} cells, every one "
                 "refused with exit 1 before anything is read or written (the target unchanged).")
    lines.append("Not outputs although written under: " + "; ".join(
        f"`{c} --{p.replace('_', '-')}` ({why})" for (c, p), why in sorted(NOT_OUTPUTS.items())) + ".")
    return "\n".join(lines)


def main() -> None:
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    main()
