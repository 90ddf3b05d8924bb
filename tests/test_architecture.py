"""The import graph: each subpackage imports only subpackages below it, and nothing imports upward.

Read with ``ast`` (function-level imports count too: a lazy import is still a dependency), so a cycle or a
layer importing upward fails here before it confuses a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> import prefix, as pyproject's package-dir maps them
FOLDERS = {"core": "mtbranch", "plugins": "mtbranch.plugins", "sdk": "mtbranch.sdk", "cli": "mtbranch.cli"}
# lowest first: a unit may import itself and units before it, never one after it
LAYERS = ["errors", "io", "hub", "spec", "heads", "plugins", "trunk", "branch", "validation", "export", "backends",
          "composition",
          "serve", "mlflow", "bench", "sdk", "cli"]


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "mtbranch" or len(parts) == 1:
        return None  # not ours, or the `mtbranch` facade (light; re-exports load/compose/hookimpl lazily)
    return parts[1]


def module_files() -> dict[str, Path]:
    out = {}
    for folder, prefix in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([prefix, *parts])] = path
    return out


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports (from mtbranch.x import y)"
            found.add(node.module or "")
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from mtbranch import x` may name a module
    return {m for m in found if m.startswith("mtbranch")}


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in module_files().items():
        src = unit_of(module)
        if src is None:
            continue
        for target in imports_of(path):
            dst = unit_of(target)
            if dst is not None and dst != src and dst in LAYERS:
                graph.setdefault(src, set()).add(dst)
    return graph


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(m) for m in module_files()} - {None}
    assert units <= set(LAYERS), f"add these to LAYERS: {sorted(units - set(LAYERS))}"


def test_no_unit_imports_upward() -> None:
    upward = sorted(
        f"{src} -> {dst}"
        for src, dsts in unit_graph().items()
        for dst in dsts
        if LAYERS.index(dst) > LAYERS.index(src)
    )
    assert upward == [], "imports against the layer order " + " < ".join(LAYERS) + ": " + ", ".join(upward)


def test_unit_graph_is_acyclic() -> None:
    graph = unit_graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [])


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself can fail: an upward import written into a module is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mtbranch.cli.output import console\n")
    assert "mtbranch.cli.output" in imports_of(bad)
    assert LAYERS.index(unit_of("mtbranch.cli.output")) > LAYERS.index(unit_of("mtbranch.io.bad"))
