"""Choosing the trunk for a set of branches: --trunk, else the installed trunk every branch's fingerprint fits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtbranch.trunk.source import TrunkSource


def _manifest_fingerprints(branches: list[tuple[Path, str]]) -> list[tuple[int, str]]:
    from mtbranch.io.files import read_json_object

    out = []
    for path, _ in branches:
        try:
            data = read_json_object(path / "manifest.json")
            out.append((int(data["attach_depth"]), str(data["trunk"]["fingerprint"])))
        except (OSError, ValueError, KeyError, TypeError, OverflowError):
            continue  # validation reports it
    return out


def choose_trunk(trunk_ref: str | None, branches: list[tuple[Path, str]], pm: Any, *,
                 required: bool, on_note: Callable[[str], None] | None = None) -> Any:
    """The trunk to use: --trunk, else the one installed trunk every branch's fingerprint fits."""
    from mtbranch.errors import MtbranchError, UsageError
    from mtbranch.trunk.source import load_trunk_source, resolve_trunk

    if trunk_ref:
        return resolve_trunk(trunk_ref)
    trunks = pm.trunks()
    if not trunks:
        if required:
            raise UsageError("no trunk given and no trunk plugin installed",
                             hint="pass --trunk DIR (a Hugging Face model directory) or install a trunk plugin")
        return None
    wanted = _manifest_fingerprints(branches)
    fits: list[tuple[str, TrunkSource, int]] = []
    partial: list[tuple[str, TrunkSource, int]] = []
    for name, rec in sorted(trunks.items()):
        try:
            src = load_trunk_source(rec.path, name)
            ok = [d < len(src.fingerprints) and src.fingerprints[d] == fp for d, fp in wanted]
        except MtbranchError:
            continue
        (fits if all(ok) else partial).append((name, src, sum(ok)))
    if len(fits) >= 1:
        return fits[0][1]
    if not required:  # validate still reports the branches themselves; trunk checks are skipped
        if on_note is not None:
            on_note("note: no installed trunk fits every branch; trunk checks skipped (pass --trunk)")
        return None
    detail = "; ".join(f"{n} fits {k} of {len(wanted)} branches" for n, _, k in partial) or "none load"
    raise MtbranchError("no installed trunk fits every branch", hint=f"installed trunks: {detail}. "
                        "Pass --trunk explicitly, or --exclude the branches that do not fit")
