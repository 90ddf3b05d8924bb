"""An organisation-policy plugin: checks that ``mtbranch validate`` (and ``compose``) run on every branch.

* ``max-task-layers`` (ORG001): a branch may own at most ``MTBRANCH_POLICY_MAX_LAYERS`` (default 3)
  transformer layers, so that serving cost stays bounded as teams add tasks.
* ``metrics-required`` (ORG002): a branch must record its evaluation metrics in the manifest.

Both are errors: a branch that breaks a policy fails validation and is refused by ``compose``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mtbranch.plugins import Check, hookimpl
from mtbranch.spec.findings import Finding

__version__ = "0.1.0"
MAX_LAYERS_ENV = "MTBRANCH_POLICY_MAX_LAYERS"


def max_layers() -> int:
    return int(os.environ.get(MAX_LAYERS_ENV, "3"))


def check_task_layers(manifest: Any, artifact_dir: Path) -> list[Finding]:
    limit = max_layers()
    if manifest.num_layers <= limit:
        return []
    return [Finding("ORG001", "error", f"branch has {manifest.num_layers} task layers; the policy allows {limit}",
                    branch=manifest.name, location=f"{artifact_dir / 'manifest.json'}#num_layers",
                    hint="distill the branch to fewer layers (mtbranch distill) or attach it higher")]


def check_metrics(manifest: Any, artifact_dir: Path) -> list[Finding]:
    if manifest.metrics:
        return []
    return [Finding("ORG002", "error", "branch records no evaluation metrics", branch=manifest.name,
                    location=f"{artifact_dir / 'manifest.json'}#metrics",
                    hint="export the branch with its validation metrics (the SDK does this after training)")]


@hookimpl
def mtbranch_checks() -> list[Check]:
    return [
        Check("max-task-layers", check_task_layers, f"at most {max_layers()} task layers per branch"),
        Check("metrics-required", check_metrics, "branches must record evaluation metrics"),
    ]
