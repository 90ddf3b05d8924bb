"""The ``paraphrase`` team's mtbranch plugin.

Task: paraphrase detection of a sentence pair (paraphrase / not_paraphrase).

Ships the branch artifact (``branch/manifest.json`` + ``branch/branch.safetensors``) as package data and
tells mtbranch where it is. Importing this module is cheap: no torch, no model loading.
"""

from __future__ import annotations

from pathlib import Path

from mtbranch.plugins import BranchLocation, hookimpl

__version__ = "0.3.0"
BRANCH_NAME = "paraphrase"
DESCRIPTION = (
    "paraphrase detection of a sentence pair (paraphrase / not_paraphrase)"
)
BRANCH_DIR = Path(__file__).resolve().parent / "branch"


@hookimpl
def mtbranch_branches() -> list[BranchLocation]:
    return [BranchLocation(BRANCH_NAME, BRANCH_DIR, DESCRIPTION)]
