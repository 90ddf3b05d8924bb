"""``mtbranch new-plugin``: turn a branch artifact directory into a pip-installable plugin package.

The package is rendered from ``mtbranch/plugins/templates/plugin/*.tmpl`` with :class:`string.Template`
and written atomically (a crash leaves either no package or the complete one); ``--hub-layout`` writes a Hugging
Face Hub model folder instead (README.md card, manifest.json, weights)::

    PKG_DIR/pyproject.toml               setuptools, entry point group "mtbranch", the branch as package data
    PKG_DIR/README.md                    install / use / test, metrics and compatibility from the manifest
    PKG_DIR/src/MODULE/__init__.py       mtbranch_branches() -> [BranchLocation(branch, <package>/branch)]
    PKG_DIR/src/MODULE/branch/           the branch artifact, copied, with its model card (README.md)
    PKG_DIR/tests/test_plugin.py         the installed plugin is discovered and its branch validates
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import click

from mtbranch.cli.output import console, esc

DIST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")  # PEP 508 project names


def _template_dir() -> Path:
    """Templates live in the ``mtbranch.plugins`` package (package data ``templates/**/*``)."""
    import mtbranch.plugins

    return Path(mtbranch.plugins.__file__).resolve().parent / "templates" / "plugin"


@dataclass(frozen=True)
class PackageNames:
    dist: str
    module: str
    entry_point: str

    @classmethod
    def from_name(cls, name: str, module: str | None = None, entry_point: str | None = None) -> PackageNames:
        from mtbranch.errors import UsageError

        if not DIST_RE.match(name):
            raise UsageError(f"{name!r} is not a valid distribution name",
                             hint="use letters, digits, '-', '_' and '.', e.g. acme-intent")
        module = module or re.sub(r"[-_.]+", "_", name).lower()
        if not module.isidentifier():
            raise UsageError(f"{module!r} is not a valid Python module name", hint="pass --module NAME")
        return cls(name, module, entry_point or name)


def _check_branch(branch_dir: Path) -> Any:
    """Validate the branch on its own (no trunk) and return its manifest; refuse on errors."""
    from mtbranch.errors import UsageError, ValidationFailed
    from mtbranch.plugins.manager import get_plugin_manager
    from mtbranch.validation.validator import Report, Validator

    if not branch_dir.is_dir():
        raise UsageError(f"{branch_dir} is not a directory", hint="pass the branch artifact directory to --branch")
    result, found = Validator(None, plugin_manager=get_plugin_manager()).check_branch(branch_dir)
    if any(f.severity == "error" for f in found) or result.manifest is None:
        raise ValidationFailed(Report(findings=found, branches=[result]))
    return result.manifest


def _toml_list(items: list[str]) -> str:
    return ", ".join(json.dumps(i) for i in items)


def template_values(names: PackageNames, manifest: Any, *, version: str | None, description: str | None,
                    requires: tuple[str, ...]) -> dict[str, str]:
    m = manifest
    desc = description or m.description or f"mtbranch branch {m.name} ({m.head.type})"
    metrics = "\n".join(f"- {k}: {v:.4g}" for k, v in sorted(m.metrics.items())) or "No metrics recorded."
    return {
        "dist": names.dist, "module": names.module, "entry_point": names.entry_point,
        "version": version or m.version, "branch": m.name, "branch_version": m.version,
        "description": desc, "description_toml": json.dumps(desc), "description_py": repr(desc),
        "dependencies": _toml_list([f"mtbranch{m.requires}", *requires]), "requires": m.requires,
        "head": m.head.type, "depth": str(m.attach_depth), "num_layers": str(m.num_layers),
        "trunk_ref": m.trunk.reference or "TRUNK",
        "trunk_model_type": m.trunk.structure.model_type, "hidden_size": str(m.trunk.structure.hidden_size),
        "fingerprint": m.trunk.fingerprint, "metrics": metrics,
        "signature": m.tokenizer.input_signature, "max_length": str(m.tokenizer.max_length),
    }


def render_package(out: Path, branch_dir: Path, values: dict[str, str]) -> None:
    """Write the package into ``out`` (an empty directory)."""
    templates = _template_dir()

    def render(template: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        text = Template((templates / template).read_text(encoding="utf-8")).substitute(values)
        target.write_text(text, encoding="utf-8")

    pkg = out / "src" / values["module"]
    render("pyproject.toml.tmpl", out / "pyproject.toml")
    render("README.md.tmpl", out / "README.md")
    render("module_init.py.tmpl", pkg / "__init__.py")
    render("test_plugin.py.tmpl", out / "tests" / "test_plugin.py")
    (pkg / "py.typed").write_text("", encoding="utf-8")
    shutil.copytree(branch_dir, pkg / "branch", ignore=shutil.ignore_patterns(".*", "__pycache__"))


def write_card(branch_dir: Path, manifest: Any) -> None:
    """The branch's model card: a copied card that agrees with the manifest is kept (a team's prose stays),
    otherwise the one generated from the manifest is written."""
    from mtbranch.branch.card import CARD_NAME, card_disagreements, card_text, read_card

    text = read_card(branch_dir)
    if text is None or card_disagreements(text, manifest):
        (branch_dir / CARD_NAME).unlink(missing_ok=True)  # never write through a copied link
        (branch_dir / CARD_NAME).write_text(card_text(manifest), encoding="utf-8")


def render_hub_folder(out: Path, branch_dir: Path, manifest: Any) -> None:
    """A Hub-ready model folder: README.md (the card), manifest.json and the weights file, nothing else."""
    from mtbranch.composition.artifact import copy_branch_files

    copy_branch_files(branch_dir, out, manifest)
    write_card(out, manifest)


@click.command("new-plugin")
@click.argument("name")
@click.option("--branch", "branch_dir", required=True, type=click.Path(path_type=Path), metavar="DIR",
              help="The branch artifact directory (manifest.json + safetensors) to package, or hf:org/name@rev.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), metavar="PKG_DIR",
              help="Directory to write the package to.")
@click.option("--version", "version", metavar="VERSION", help="Package version (default: the branch's version).")
@click.option("--module", metavar="NAME", help="Python module name (default: NAME with '-' as '_').")
@click.option("--entry-point", "entry_point", metavar="NAME", help="Entry point name (default: NAME).")
@click.option("--description", metavar="TEXT", help="One-line description (default: the manifest's).")
@click.option("--requires", multiple=True, metavar="REQ",
              help="Extra dependency, e.g. the trunk plugin the branch was trained on (repeatable).")
@click.option("--force", is_flag=True, help="Replace PKG_DIR if it already exists.")
@click.option("--hub-layout", "hub_layout", is_flag=True,
              help="Write a Hugging Face Hub model folder instead of a package: README.md (the model card), "
                   "manifest.json and the weights; upload it with `hf upload ORG/NAME PKG_DIR`.")
def new_plugin(name: str, branch_dir: Path, out: Path, version: str | None, module: str | None,
               entry_point: str | None, description: str | None, requires: tuple[str, ...], force: bool,
               hub_layout: bool) -> None:
    """Generate a pip-installable plugin package NAME that ships a branch.

    The branch is validated first (without a trunk). The package declares the `mtbranch` entry point,
    ships the branch as package data, and has a README and a test that checks the installed plugin is
    discovered and its branch validates.

    \b
    With --hub-layout, PKG_DIR is instead a Hub-ready folder (card + safetensors + manifest) that
    `--branch hf:ORG/NAME@REV` resolves once uploaded.

    \b
    Example:
      mtbranch new-plugin acme-intent --branch ./intent-branch -o ./acme-intent
      pip install ./acme-intent && mtbranch plugins
      mtbranch new-plugin acme-intent --branch ./intent-branch -o ./acme-intent-hub --hub-layout
    """
    from packaging.version import InvalidVersion, Version

    from mtbranch.errors import UsageError
    from mtbranch.io.atomic import atomic_directory

    names = PackageNames.from_name(name, module, entry_point)
    if version is not None:
        try:
            Version(version)
        except InvalidVersion:
            raise UsageError(f"--version {version!r} is not a PEP 440 version", hint="e.g. 1.0.0") from None
    from mtbranch.io.guard import check_output

    # --force replaces only an earlier generated package (nothing else in it), never the branch it ships
    out = check_output(out, "plugin", inputs=[branch_dir])
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty", hint="choose another -o directory or pass --force")
    from mtbranch.validation.sources import resolve_branch

    branch_dir = resolve_branch(branch_dir)  # a directory, or hf:org/name@rev from the Hub cache
    manifest = _check_branch(branch_dir)
    if hub_layout:
        with atomic_directory(out) as tmp:
            render_hub_folder(tmp, branch_dir, manifest)
        console.print(f"[green]created[/] {esc(out)}: Hub model folder for branch [bold]{manifest.name}[/] "
                      "(README.md card, manifest.json, weights)")
        console.print(f"next: hf upload ORG/{names.dist} {out} && mtbranch validate --branch hf:ORG/{names.dist}",
                      markup=False)
        return
    values = template_values(names, manifest, version=version, description=description, requires=requires)
    with atomic_directory(out, kind="plugin", inputs=[branch_dir]) as tmp:
        render_package(tmp, branch_dir, values)
        write_card(tmp / "src" / values["module"] / "branch", manifest)
    console.print(f"[green]created[/] {esc(out)}: {names.dist} {values['version']} (module {names.module}, "
                  f"entry point {names.entry_point}) shipping branch [bold]{manifest.name}[/]")
    ref = values["trunk_ref"]
    console.print(f"next: pip install {out} && mtbranch plugins && mtbranch validate --trunk {ref}", markup=False)
    console.print(f"      its tests: {plugin_test_command(out)}", markup=False)


def plugin_test_command(out: Path) -> str:
    """The package's test run, in the environment mtbranch runs in, from any folder: the venv's ``pytest``
    script, not ``python -m pytest``, which puts the current folder first on sys.path, where a checkout named
    ``mtbranch`` would shadow an editable install as a namespace package."""
    import shlex
    import sys

    python, pytest = shlex.quote(sys.executable), shlex.quote(str(Path(sys.executable).parent / "pytest"))
    return f"{python} -m pip install {shlex.quote(f'{out}[test]')} && {pytest} {shlex.quote(str(out / 'tests'))}"
