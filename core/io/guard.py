"""Where mtbranch may write: one check for every command that takes ``-o DIR``.

An output directory is replaced as a whole, so it may be only (a) missing, (b) an empty directory or (c) an
earlier mtbranch artifact of the same kind, recognised by its marker file (a composed artifact by its
``mtbranch.lock.json``, a branch by its ``manifest.json``, an ONNX export by its ``onnx.json``, a Triton
model by its ``config.pbtxt``). An output equal to, inside, or containing one of the command's inputs (branch
directories, the trunk, data files) is refused as well. Everything is checked before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mtbranch.errors import MtbranchError
from mtbranch.io.files import read_json_object

# kind -> (marker file, what the artifact is called in messages)
KINDS: dict[str, tuple[str, str]] = {
    "composed": ("mtbranch.lock.json", "composed artifact"),
    "branch": ("manifest.json", "branch artifact"),
    "onnx": ("onnx.json", "ONNX export"),
    "triton": ("config.pbtxt", "Triton model directory"),
}


class OutputError(MtbranchError):
    """``-o DIR`` names a place mtbranch must not replace."""


def _real(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(p)))


def _kind_of(d: Path) -> str | None:
    """Which mtbranch artifact ``d`` holds, judged by its marker file (a regular file, not a link)."""
    for kind, (marker, _) in KINDS.items():
        m = d / marker
        if not m.is_file() or m.is_symlink():
            continue
        if kind == "branch":  # manifest.json is a common name: it must look like a branch manifest
            try:
                data = read_json_object(m)
            except (OSError, ValueError):
                continue
            if "weights" not in data or "trunk" not in data:
                continue
        return kind
    return None


def check_output(out: str | os.PathLike[str], kind: str, *, inputs: Sequence[str | os.PathLike[str] | None] = (),
                 ) -> Path:
    """Refuse ``out`` unless it may be replaced by a new artifact of ``kind``; returns it (absolute)."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    what = KINDS[kind][1]
    target = Path(os.path.abspath(out))
    real = _real(target)
    fix = "choose a new or empty directory for -o"
    for inp in inputs:
        if inp is None:
            continue
        r = _real(inp)
        if r == real:
            raise OutputError(f"the output is also an input ({inp}): writing there would replace what is read",
                              path=str(out), hint=fix)
        if r.is_relative_to(real):
            raise OutputError(f"the output directory contains an input ({inp}): replacing it would delete it",
                              path=str(out), hint=fix + " outside the inputs")
        if real.is_relative_to(r):
            raise OutputError(f"the output is inside an input ({inp}): writing there would change that input",
                              path=str(out), hint=fix + " outside the inputs")
    if not os.path.lexists(target):
        return target
    if target.is_symlink():
        raise OutputError(f"the output is a symbolic link (to {os.readlink(target)}); writing would replace the link "
                          "itself, not what it points to", path=str(out),
                          hint=f"pass the real directory ({real}), or update the link yourself after writing")
    if not target.is_dir():
        raise OutputError(f"the output exists and is not a directory; it would be replaced by a {what}",
                          path=str(out), hint=fix + ", or remove the file yourself if it is not needed")
    try:
        entries = sorted(p.name for p in target.iterdir())
    except OSError as exc:
        raise OutputError(f"cannot list the output directory: {exc.strerror or exc}", path=str(out),
                          hint="check its permissions") from None
    if not entries:
        return target
    found = _kind_of(target)
    if found == kind:
        return target
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    if found is not None:
        raise OutputError(f"the output is a {KINDS[found][1]}, not a {what}; it would be replaced",
                          path=str(out), hint=fix + " (an artifact is replaced only by one of the same kind)")
    raise OutputError(f"the output directory is not empty and is not an earlier {what} (no {KINDS[kind][0]}); "
                      f"it holds {shown}; writing would delete them", path=str(out),
                      hint=fix + ", or remove its contents yourself if they are not needed")
