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


def gated_layer_flops(tokens: int, hidden: int, intermediate: int) -> float:
    """ModernBERT's layer: its MLP is gated (GeGLU), the input projection twice ``intermediate`` wide."""
    return 2.0 * tokens * (4 * hidden * hidden + 3 * hidden * intermediate) + 4.0 * tokens * tokens * hidden


def _families() -> list[TrunkFamily]:
    checked: dict[str, Any] = {"onnx": True}  # export-onnx checked against PyTorch for every built-in family
    return [
        TrunkFamily("bert", ("bert",), _IMPL.format("bert"), description="BERT (incl. MiniLM)", **checked),
        TrunkFamily("roberta", ("roberta",), _IMPL.format("roberta"), description="RoBERTa", positions_after_pad=True,
                    example={"type_vocab_size": 2}, **checked),
        TrunkFamily("xlm-roberta", ("xlm-roberta",), _IMPL.format("xlm_roberta"), positions_after_pad=True,
                    example={"type_vocab_size": 1},
                    description="XLM-RoBERTa (RoBERTa's layers, multilingual vocabulary)", **checked),
        TrunkFamily(
            "distilbert", ("distilbert",), _IMPL.format("distilbert"),
            tensors=(TensorRule(r"^embeddings\.(?P<rest>.+)$", "embeddings", "embeddings.{rest}"),
                     TensorRule(r"^transformer\.layer\.(?P<layer>\d+)\.(?P<rest>.+)$", "layer",
                                "layers.{layer}.{rest}")),
            structure_fields=("vocab_size", "max_position_embeddings", "sinusoidal_pos_embds", "hidden_dim",
                              "activation", "pad_token_id"),
            config_aliases={"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers",
                            "intermediate_size": "hidden_dim"},
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
            normalize=modernbert_normalize, layer_flops=gated_layer_flops,
            # global attention every 3rd layer (as ModernBERT-base) and a local window shorter than a test sentence
            example={"global_attn_every_n_layers": 3, "local_attention": 4, "norm_bias": True, "bos_token_id": 2,
                     "cls_token_id": 2, "eos_token_id": 3, "sep_token_id": 3},
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
            # DeBERTa-v3's attention (log-bucketed relative positions, c2p|p2c, no absolute positions) with few
            # buckets, so short sentences reach the log range, and v2's ConvLayer after layer 1
            example={"type_vocab_size": 0, "relative_attention": True, "position_buckets": 8,
                     "max_relative_positions": 32, "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm",
                     "share_att_key": True, "position_biased_input": False, "conv_kernel_size": 3,
                     "hidden_act": "gelu"},
            description="DeBERTa-v2 and v3 (disentangled relative attention)", **checked),
    ]


@hookimpl
def mtbranch_trunk_families() -> list[TrunkFamily]:
    return _families()
