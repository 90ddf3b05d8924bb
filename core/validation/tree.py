"""What a branch directory holds besides its declared files: links and special files, never followed.

``compose`` copies only the files a manifest declares, so nothing else in a branch directory can reach a
composed artifact. Validation still reports what would be dangerous to any tool that walks the directory
(``cp -r``, ``tar``, an older mtbranch): a symlink pointing outside (F001), a symlink loop (F002), a link to
the directory itself or one of its ancestors (F003, a walk that follows it never ends) and FIFOs, sockets and
device files (F004, reading one blocks or reads a device). The scan uses ``lstat`` only, never descends into
a link, and stops after :data:`MAX_ENTRIES` entries (F005).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_ENTRIES = 10_000  # a branch artifact holds a handful of files; bound the work on a hostile directory

_SPECIAL = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


@dataclass(frozen=True)
class TreeProblem:
    code: str  # F001..F005
    path: Path
    message: str
    hint: str


def _inside(p: str, root: str) -> bool:
    return p == root or p.startswith(root.rstrip(os.sep) + os.sep)


def _link_problem(link: Path, root_real: str) -> TreeProblem | None:
    try:
        target = os.readlink(link)
    except OSError:
        return None
    try:
        resolved = os.path.realpath(link, strict=True)
    except OSError as exc:
        resolved_loose = os.path.realpath(link)
        if exc.errno == errno.ELOOP:
            return TreeProblem("F002", link, f"symlink loop ({link.name} -> {target})",
                               "remove the link; a symlink that resolves to itself breaks every tool that reads it")
        if not _inside(resolved_loose, root_real):
            return TreeProblem("F001", link, f"symlink pointing outside the branch directory ({link.name} -> "
                                             f"{target}, missing)", "remove the link, or replace it by the file")
        return None  # a dangling link inside: harmless, and never copied
    here = os.path.realpath(link.parent)
    if os.path.isdir(resolved) and _inside(here, resolved):
        return TreeProblem("F003", link, f"link to the directory itself or an ancestor ({link.name} -> {target})",
                           "remove the link: a copy that follows it recurses without end")
    if not _inside(resolved, root_real):
        return TreeProblem("F001", link, f"symlink pointing outside the branch directory ({link.name} -> "
                                         f"{target})", "remove the link; ship the file itself if the branch needs it")
    return None


def scan_tree(root: Path, max_entries: int = MAX_ENTRIES) -> list[TreeProblem]:
    """Problems in ``root`` (links out, loops, links to ancestors, special files), found without following."""
    root_real = os.path.realpath(root)
    problems: list[TreeProblem] = []
    stack = [root]
    seen = 0
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            problems.append(TreeProblem("F005", d, f"cannot list {d}: {exc.strerror or exc}",
                                        "make the branch directory readable"))
            continue
        for e in entries:
            seen += 1
            if seen > max_entries:
                problems.append(TreeProblem("F005", root, f"more than {max_entries} entries; the rest were not "
                                                          "checked", "a branch directory holds its manifest and "
                                                                     "weights; move other files elsewhere"))
                return problems
            p = Path(e.path)
            try:
                mode = e.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                found = _link_problem(p, root_real)
                if found is not None:
                    problems.append(found)
            elif stat.S_ISDIR(mode):
                stack.append(p)
            elif not stat.S_ISREG(mode):
                what = _SPECIAL.get(stat.S_IFMT(mode), "a special file")
                problems.append(TreeProblem("F004", p, f"{p.name} is {what}",
                                            "remove it: only regular files belong in a branch artifact"))
    return problems
