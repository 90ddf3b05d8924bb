"""The ``similarity`` team's mtbranch plugin.

Task: semantic textual similarity of a sentence pair (a score from 0 to 5).

Ships the branch artifact (``branch/manifest.json`` + ``branch/branch.safetensors``) as package data and
tells mtbranch where it is. Importing this module is cheap: no torch, no model loading.
"""

from __future__ import annotations

from pathlib import Path

from mtbranch.plugins import BranchLocation, hookimpl

__version__ = "0.2.1"
BRANCH_NAME = "similarity"
DESCRIPTION = (
    "semantic textual similarity of a sentence pair (a score from 0 to 5)"
)
BRANCH_DIR = Path(__file__).resolve().parent / "branch"


@hookimpl
def mtbranch_branches() -> list[BranchLocation]:
    return [BranchLocation(BRANCH_NAME, BRANCH_DIR, DESCRIPTION)]
