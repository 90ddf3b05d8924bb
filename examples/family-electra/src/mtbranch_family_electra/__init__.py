"""mtbranch trunk-family plugin: ELECTRA (``model_type`` ``electra``) as a trunk, from outside the core.

It registers one :class:`TrunkFamily` record through the ``mtbranch_trunk_families`` hook, exactly as
mtbranch registers its built-in families. The record is plain data, so discovering the plugin imports no
torch; the torch side (:mod:`mtbranch_family_electra.family`) is named by a string and imported on first use.

ELECTRA differs from BERT in two places: the embeddings may be narrower than the layers
(``embedding_size``, then ``embeddings_project`` maps them up), and ``ElectraForSequenceClassification``'s
head is ``classifier.dense`` + GELU + ``classifier.out_proj``.
"""

from __future__ import annotations

from mtbranch.plugins import TensorRule, TrunkFamily, hookimpl

__version__ = "0.1.0"

ELECTRA = TrunkFamily(
    "electra", ("electra",), "mtbranch_family_electra.family:FAMILY",
    tensors=(
        TensorRule(r"^embeddings\.(?P<rest>.+)$", "embeddings", "embeddings.{rest}"),
        TensorRule(r"^embeddings_project\.(?P<rest>.+)$", "embeddings", "embeddings.project.{rest}"),
        TensorRule(r"^encoder\.layer\.(?P<layer>\d+)\.(?P<rest>.+)$", "layer", "layers.{layer}.{rest}"),
    ),
    structure_fields=("vocab_size", "embedding_size", "intermediate_size", "hidden_act", "layer_norm_eps",
                      "max_position_embeddings", "type_vocab_size", "pad_token_id"),
    description="ELECTRA discriminator (example plugin: mtbranch-family-electra)",
)


@hookimpl
def mtbranch_trunk_families() -> list[TrunkFamily]:
    return [ELECTRA]
