"""Docs stay true to the code: the published schema, and every CLI command documented."""

from __future__ import annotations

import json
from pathlib import Path

from mtbranch.cli.main import cli
from mtbranch.spec.manifest import manifest_json_schema

DOCS = Path(__file__).parent.parent / "docs"


def test_published_schema_is_current() -> None:
    assert json.loads((DOCS / "branch-manifest.schema.json").read_text()) == manifest_json_schema()


def test_every_command_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    for name in cli.commands:
        assert f"## `mtbranch {name}`" in text, name


def test_index_lists_every_page() -> None:
    """docs/index.md's page table links every page in docs/ (and nothing that is not there)."""
    import re

    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", (DOCS / "index.md").read_text()))
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert linked == pages


def test_layout_table_names_every_concept() -> None:
    """The layout lives in one place, docs/concepts.md's "Where each concept lives": every subpackage of core/
    and every module of sdk/ and plugins/ is named there (README points to it rather than keeping a copy)."""
    root = DOCS.parent
    text = (DOCS / "concepts.md").read_text().split("## Where each concept lives", 1)[1]
    names = [f"core/{p.name}/" for p in (root / "core").iterdir() if (p / "__init__.py").is_file()]
    names += [p.name for d in ("sdk", "plugins") for p in (root / d).glob("*.py") if p.name != "__init__.py"]
    missing = [n for n in names if n not in text]
    assert not missing, f"add to docs/concepts.md's layout table: {missing}"
