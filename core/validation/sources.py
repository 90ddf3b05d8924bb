"""Which branches a command works on.

The selection rule: ``--branch DIR`` (or ``hf:org/name@rev``) given means exactly those directories; installed
plugins' branches join only when no ``--branch`` is given, or with ``--with-installed``. Plugins' checks, head
types and trunks apply either way (``--no-plugins`` turns those off too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtbranch.errors import UsageError
from mtbranch.hub import is_hub_reference


def collect_branches(dirs: Sequence[str | Path] = (), *, plugin_manager: Any | None = None,
                     use_plugins: bool = True, with_installed: bool = False, only: Sequence[str] = (),
                     exclude: Sequence[str] = ()) -> list[tuple[Path, str]]:
    """``[(directory, source)]``; source is the providing plugin's name, the ``hf:`` reference or ``"directory"``.

    Installed plugins' branches are included when ``use_plugins`` and (no ``dirs`` or ``with_installed``):
    naming directories selects exactly those.

    ``only``/``exclude`` filter by branch name (the plugin record's name, or the directory's name for
    unpackaged branches, whose manifest is read later by validation).
    """
    found: list[tuple[Path, str, str]] = []
    if use_plugins and plugin_manager is not None and (not dirs or with_installed):
        for name, (plugin, loc) in plugin_manager.branches().items():
            found.append((Path(loc.path), plugin, name))
    for d in dirs:
        p = resolve_branch(d)
        name = _manifest_name(p) or p.name
        found.append((p, str(d) if is_hub_reference(d) else "directory", name))
    names = {n for _, _, n in found}
    missing = [n for n in (*only, *exclude) if n not in names]
    if missing:
        raise UsageError(f"no branch named {', '.join(map(repr, missing))}",
                         hint=f"available: {', '.join(sorted(names)) or 'none'}")
    return [(p, src) for p, src, n in found if (not only or n in only) and n not in exclude]


BRANCH_FILES = ["manifest.json", "*.safetensors", "README.md"]


def resolve_branch(reference: str | Path) -> Path:
    """A branch directory, or ``hf:org/name[@rev]``: a Hub model folder (`new-plugin --hub-layout`) resolved
    through huggingface_hub's cache first (:func:`mtbranch.hub.hub_snapshot`), downloaded only when missing."""
    from mtbranch.hub import hub_snapshot

    if is_hub_reference(reference):
        return _plain_copy(hub_snapshot(str(reference), BRANCH_FILES, ["manifest.json"], "branch"))
    return Path(reference)


def _plain_copy(snapshot: Path) -> Path:
    """The Hub cache keeps a snapshot's files as links into the repository's ``blobs/`` folder, which branch
    validation refuses (F001: a link out of the branch directory). A branch from the Hub is used from a plain
    copy of its files instead: one per repository commit (a snapshot never changes), under mtbranch's cache."""
    import shutil

    from mtbranch.io.atomic import atomic_directory
    from mtbranch.trunk.fingerprint import cache_dir

    files = [p for p in sorted(snapshot.rglob("*")) if not p.is_dir()]
    if not any(p.is_symlink() for p in files):
        return snapshot
    copy = cache_dir() / "hub-branches" / snapshot.parent.parent.name / snapshot.name
    if not (copy / "manifest.json").is_file():
        with atomic_directory(copy) as tmp:
            for p in files:
                rel = p.relative_to(snapshot)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, tmp / rel)  # follows the link: the blob's bytes
    return copy


def _manifest_name(path: Path) -> str | None:
    from mtbranch.io.files import read_json_object

    try:
        data = read_json_object(path / "manifest.json")
        name = data.get("name")
        return name if isinstance(name, str) else None
    except (OSError, ValueError):
        return None
