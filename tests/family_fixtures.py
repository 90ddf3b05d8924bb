"""Tiny random trunks of every built-in family, built with transformers' own config classes and saved to disk.

ModernBERT: 4 layers with global attention every 3rd layer and a 4-token local window, so sequences of the
test texts (longer than the window) exercise the sliding-window masks. DeBERTa-v2: relative attention with
log buckets, c2p|p2c, a normalised relative embedding and a ConvLayer after layer 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import SPECIALS, WORDS

FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "modernbert", "deberta-v2")
NO_TOKEN_TYPES = ("xlm-roberta", "distilbert", "modernbert")
LAYERS = 4
HIDDEN = 32


def family_config(family: str, vocab: int, *, layers: int = LAYERS, **extra: Any) -> Any:
    from transformers import (
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ModernBertConfig,
        RobertaConfig,
        XLMRobertaConfig,
    )

    common = dict(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=4,
                  intermediate_size=HIDDEN * 2, max_position_embeddings=160, pad_token_id=0)
    if family == "bert":
        return BertConfig(**common, type_vocab_size=2, **extra)
    if family == "roberta":
        return RobertaConfig(**common, type_vocab_size=2, **extra)
    if family == "xlm-roberta":
        return XLMRobertaConfig(**common, type_vocab_size=1, **extra)
    if family == "distilbert":
        return DistilBertConfig(vocab_size=vocab, dim=HIDDEN, n_layers=layers, n_heads=4, hidden_dim=HIDDEN * 2,
                                max_position_embeddings=160, pad_token_id=0, **extra)
    if family == "modernbert":
        return ModernBertConfig(**common, global_attn_every_n_layers=3, local_attention=4, bos_token_id=2,
                                cls_token_id=2, eos_token_id=3, sep_token_id=3, norm_bias=True, **extra)
    if family == "deberta-v2":
        return DebertaV2Config(**common, type_vocab_size=0, relative_attention=True, position_buckets=8,
                               max_relative_positions=32, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
                               share_att_key=True, position_biased_input=False, conv_kernel_size=3,
                               hidden_act="gelu", **extra)
    raise ValueError(family)


def make_family_dir(path: Path, family: str, *, seed: int = 0, layers: int = LAYERS) -> Path:
    import torch
    from transformers import AutoModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + list(dict.fromkeys(WORDS))) + "\n")
    # the families whose real tokenizers give no token type ids get a tokenizer without them
    names = (["input_ids", "attention_mask"] if family in NO_TOKEN_TYPES
             else ["input_ids", "token_type_ids", "attention_mask"])
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=128, model_input_names=names)
    torch.manual_seed(seed)
    cfg = family_config(family, len(tok), layers=layers)
    model = AutoModel.from_config(cfg)
    with torch.no_grad():  # non-trivial norms and biases, so a missed tensor shows
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path
