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
