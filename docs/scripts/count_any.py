"""Count ``Any`` in function signatures (parameters and returns) across the package folders.

``functions``: functions whose signature mentions ``Any``. A parameter or return counts once when its annotation
mentions ``Any`` anywhere (``Any``, ``Any | None``, ``dict[str, Any]``, ``typing.Any``); ``model_any`` counts the
parameters named ``model`` annotated with ``Any`` alone (or ``Any | None``). Also counted: ``# type: ignore``
comments. Prints JSON.

    python docs/scripts/count_any.py [FOLDER ...]      (default: core plugins sdk cli)
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

FOLDERS = ("core", "plugins", "sdk", "cli")
KEYS = ("functions", "params", "returns", "model_any", "type_ignore")


def mentions_any(node: ast.expr | None) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            return mentions_any(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return False
    return any((isinstance(n, ast.Name) and n.id == "Any") or (isinstance(n, ast.Attribute) and n.attr == "Any")
               for n in ast.walk(node))


def bare_any(node: ast.expr | None) -> bool:
    """``Any`` or ``Any | None``: nothing known about the value at all."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [node.left, node.right]
        return any(bare_any(p) for p in parts) and all(bare_any(p) or _is_none(p) for p in parts)
    return (isinstance(node, ast.Name) and node.id == "Any") or (isinstance(node, ast.Attribute) and node.attr == "Any")


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def count_file(path: Path) -> dict[str, int]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    counts = {"functions": 0, "params": 0, "returns": 0, "model_any": 0,
              "type_ignore": source.count("# type: ignore")}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        a = fn.args
        args = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]
        if mentions_any(fn.returns) or any(mentions_any(arg.annotation) for arg in args):
            counts["functions"] += 1
        for arg in args:
            if mentions_any(arg.annotation):
                counts["params"] += 1
            if arg.arg == "model" and bare_any(arg.annotation):
                counts["model_any"] += 1
        if mentions_any(fn.returns):
            counts["returns"] += 1
    return counts


def main(folders: list[str]) -> dict[str, object]:
    per_folder: dict[str, dict[str, int]] = {}
    for folder in folders:
        total = dict.fromkeys(KEYS, 0)
        for path in sorted(Path(folder).rglob("*.py")):
            for key, n in count_file(path).items():
                total[key] += n
        per_folder[folder] = total
    overall = {k: sum(c[k] for c in per_folder.values()) for k in KEYS}
    return {"folders": per_folder, "total": overall,
            "signatures_with_any": overall["params"] + overall["returns"]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:] or list(FOLDERS)), indent=2))
