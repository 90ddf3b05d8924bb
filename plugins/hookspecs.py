"""Every hook a plugin can implement. One module, as in ``llm`` and ``datasette``.

Plugins register through the ``mtbranch`` entry-point group and mark implementations with
``mtbranch.hookimpl``. Each hook returns a list of typed records (``mtbranch.plugins.records``); returning
anything else is reported as finding P003 and the plugin's contribution is ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mtbranch.heads.registry import HeadType
    from mtbranch.plugins.records import BranchLocation, Check, TrunkFamily, TrunkProvider

PROJECT = "mtbranch"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mtbranch_branches() -> list[BranchLocation]:  # type: ignore[empty-body]
    """Branch artifacts this plugin ships, as :class:`BranchLocation` records (name + directory).

    Called when listing plugins and before validation; it must not import torch or do heavy work. A team's
    plugin usually returns one location inside its own package data.
    """


@hookspec
def mtbranch_trunks() -> list[TrunkProvider]:  # type: ignore[empty-body]
    """Trunks this plugin provides, as :class:`TrunkProvider` records (name + local model directory).

    The name can be passed as ``--trunk NAME``; ``compose`` without ``--trunk`` picks the installed trunk
    whose fingerprint matches the branches. Must not import torch.
    """


@hookspec
def mtbranch_head_types() -> list[HeadType]:  # type: ignore[empty-body]
    """Head types (:class:`mtbranch.heads.registry.HeadType`): spec model, tensor layout, module, post-processing,
    and optionally the training side (:class:`mtbranch.heads.training.HeadTraining`: label reader, loss, soft loss,
    metrics) that makes the head type an SDK task (``mtbranch train --task NAME``).

    The built-in ``classification``, ``regression`` and ``token_classification`` heads are registered
    through this hook by ``mtbranch.plugins.builtin``. A head type name registered twice is reported and
    neither registration is used (P008).
    """


@hookspec
def mtbranch_checks() -> list[Check]:  # type: ignore[empty-body]
    """Organisation policies run by ``validate``, as :class:`Check` records.

    A check is called once per branch with the :class:`BranchManifest` and returns
    :class:`mtbranch.spec.findings.Finding` records (an empty list when the branch complies), e.g. "at most 3
    task layers per branch" or "metrics are required".
    """


@hookspec
def mtbranch_trunk_families() -> list[TrunkFamily]:  # type: ignore[empty-body]
    """Trunk architectures, as :class:`TrunkFamily` records (one per family, keyed on config ``model_type``).

    The record is plain data (tensor-name rules, structure fields) and names its torch implementation by a
    ``"module:attribute"`` string imported on first use, so this hook must not import torch. BERT, RoBERTa,
    XLM-R, DistilBERT, ModernBERT and DeBERTa-v2 are registered through this hook by
    ``mtbranch.plugins.builtin``. A ``model_type`` claimed by two plugins is reported (P006).
    See docs/families.md.
    """
