"""The ``entities`` team's mtbranch plugin.

Task: named-entity recognition (PER, LOC, ORG, MISC; IOB2 tags, entity spans with character offsets).

Ships the branch artifact (``branch/manifest.json`` + ``branch/branch.safetensors``) as package data and
tells mtbranch where it is. Importing this module is cheap: no torch, no model loading.
"""

from __future__ import annotations

from pathlib import Path

from mtbranch.plugins import BranchLocation, hookimpl

__version__ = "0.3.0"
BRANCH_NAME = "entities"
DESCRIPTION = (
    "named-entity recognition (PER, LOC, ORG, MISC; IOB2 tags, entity spans with character offsets)"
)
BRANCH_DIR = Path(__file__).resolve().parent / "branch"


@hookimpl
def mtbranch_branches() -> list[BranchLocation]:
    return [BranchLocation(BRANCH_NAME, BRANCH_DIR, DESCRIPTION)]
