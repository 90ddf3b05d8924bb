"""The ``clinc`` team's mtbranch plugin.

Task: intent of an assistant utterance, 10 domains (150 CLINC150 intents + `oos` for out-of-scope).

Ships the branch artifact (``branch/manifest.json`` + ``branch/branch.safetensors``) as package data and
tells mtbranch where it is. Importing this module is cheap: no torch, no model loading.
"""

from __future__ import annotations

from pathlib import Path

from mtbranch.plugins import BranchLocation, hookimpl

__version__ = "0.2.0"
BRANCH_NAME = "clinc"
DESCRIPTION = (
    "intent of an assistant utterance, 10 domains (150 CLINC150 intents + `oos` for out-of-scope)"
)
BRANCH_DIR = Path(__file__).resolve().parent / "branch"


@hookimpl
def mtbranch_branches() -> list[BranchLocation]:
    return [BranchLocation(BRANCH_NAME, BRANCH_DIR, DESCRIPTION)]
