"""The built-in plugin: registers the built-in head types and trunk families through the same hooks plugins use.

Each family's torch side lives in its own module, ``mtbranch.trunk.families.<name>``, named by a string and
imported on first use (as an outside family plugin does), so plugin discovery never imports torch.
"""

from __future__ import annotations

from typing import Any

from mtbranch.heads.registry import HeadType, builtin_head_types
from mtbranch.plugins.hookspecs import hookimpl
from mtbranch.plugins.records import TensorRule, TrunkFamily

_IMPL = "mtbranch.trunk.families.{}:FAMILY"


@hookimpl
def mtbranch_head_types() -> list[HeadType]:
    return builtin_head_types()


def modernbert_normalize(cfg: dict[str, Any]) -> dict[str, Any]:
    """ModernBERT configs in one form, whichever transformers wrote them.

    - ``global_attn_every_n_layers`` (the period of full-attention layers), derived from ``layer_types`` where
      transformers 5 saved only the per-layer list: a truncated trunk (fewer layers) and the full one then
      have the same structure. A list that is not periodic is refused.
    - ``rope_parameters`` per layer type, built from the legacy ``global_rope_theta`` / ``local_rope_theta``
      where a config predates it (mmBERT uses 160000 for both), thetas as floats.
    """
    out = dict(cfg)
    types = list(out.get("layer_types") or [])
    if "global_attn_every_n_layers" not in out and types:
        full = [i for i, t in enumerate(types) if t == "full_attention"]
        period = full[1] if len(full) > 1 else len(types)
        expected = ["sliding_attention" if i % period else "full_attention" for i in range(len(types))]
        if types != expected:
            raise ValueError(f"layer_types {types} is not every-n-th-layer global attention")
        out["global_attn_every_n_layers"] = period
    rope = out.get("rope_parameters")
    if not rope:
        if out.get("rope_scaling"):
            raise ValueError("rope_scaling in a legacy config is not supported; re-save it with transformers 5")
        rope = {"full_attention": {"rope_type": "default", "rope_theta": out.get("global_rope_theta", 160000.0)},
                "sliding_attention": {"rope_type": "default", "rope_theta": out.get("local_rope_theta", 10000.0)}}
    out["rope_parameters"] = {k: {**v, "rope_theta": float(v["rope_theta"])} if isinstance(v, dict) else v
                              for k, v in rope.items()}
    return out


def _families() -> list[TrunkFamily]:
    checked: dict[str, Any] = {"onnx": True}  # export-onnx checked against PyTorch for every built-in family
    return [
        TrunkFamily("bert", ("bert",), _IMPL.format("bert"), description="BERT (incl. MiniLM)", **checked),
        TrunkFamily("roberta", ("roberta",), _IMPL.format("roberta"), description="RoBERTa", positions_after_pad=True,
                    **checked),
        TrunkFamily("xlm-roberta", ("xlm-roberta",), _IMPL.format("xlm_roberta"), positions_after_pad=True,
                    description="XLM-RoBERTa (RoBERTa's layers, multilingual vocabulary)", **checked),
        TrunkFamily(
            "distilbert", ("distilbert",), _IMPL.format("distilbert"),
            tensors=(TensorRule(r"^embeddings\.(?P<rest>.+)$", "embeddings", "embeddings.{rest}"),
                     TensorRule(r"^transformer\.layer\.(?P<layer>\d+)\.(?P<rest>.+)$", "layer",
                                "layers.{layer}.{rest}")),
            structure_fields=("vocab_size", "max_position_embeddings", "sinusoidal_pos_embds", "hidden_dim",
                              "activation", "pad_token_id"),
            config_aliases={"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"},
            description="DistilBERT (no token types)", **checked),
        TrunkFamily(
            "modernbert", ("modernbert",), _IMPL.format("modernbert"), anchor="embeddings.tok_embeddings.weight",
            tensors=(TensorRule(r"^embeddings\.(?P<rest>.+)$", "embeddings", "embeddings.{rest}"),
                     TensorRule(r"^layers\.(?P<layer>\d+)\.(?P<rest>.+)$", "layer", "layers.{layer}.{rest}"),
                     TensorRule(r"^final_norm\.(?P<rest>.+)$", "final", "final.{rest}")),
            structure_fields=("vocab_size", "intermediate_size", "hidden_activation", "max_position_embeddings",
                              "norm_eps", "norm_bias", "pad_token_id", "attention_bias", "mlp_bias",
                              "local_attention", "global_attn_every_n_layers", "rope_parameters",
                              "classifier_bias", "classifier_activation"),
            normalize=modernbert_normalize,
            description="ModernBERT (rotary, alternating global/sliding-window attention; also mmBERT)", **checked),
        TrunkFamily(
            "deberta-v2", ("deberta-v2",), _IMPL.format("deberta_v2"),
            tensors=(TensorRule(r"^embeddings\.(?P<rest>.+)$", "embeddings", "embeddings.{rest}"),
                     TensorRule(r"^encoder\.(?P<rest>(?:rel_embeddings|LayerNorm|conv)\..+)$", "embeddings",
                                "context.{rest}"),
                     TensorRule(r"^encoder\.layer\.(?P<layer>\d+)\.(?P<rest>.+)$", "layer", "layers.{layer}.{rest}")),
            structure_fields=("vocab_size", "intermediate_size", "hidden_act", "layer_norm_eps",
                              "max_position_embeddings", "type_vocab_size", "pad_token_id", "relative_attention",
                              "max_relative_positions", "position_buckets", "norm_rel_ebd", "pos_att_type",
                              "share_att_key", "position_biased_input", "embedding_size", "conv_kernel_size",
                              "conv_groups", "conv_act", "pooler_hidden_size", "pooler_hidden_act"),
            description="DeBERTa-v2 and v3 (disentangled relative attention)", **checked),
    ]


@hookimpl
def mtbranch_trunk_families() -> list[TrunkFamily]:
    return _families()
