"""Tiny random trunks of every built-in family, from each family record's example config, saved to disk.

The examples (plugins/builtin.py) exercise what each family does differently: ModernBERT's 4-token local window
is shorter than the test texts (sliding-window masks), DeBERTa-v2 has log-bucketed relative attention, c2p|p2c,
a normalised relative embedding and a ConvLayer after layer 1.
"""

from __future__ import annotations

from pathlib import Path

from mtbranch.plugins.builtin import mtbranch_trunk_families
from mtbranch.trunk.families import EXAMPLE_SIZES, example_config

from conftest import SPECIALS, WORDS

FAMILIES = tuple(f.name for f in mtbranch_trunk_families())  # every built-in family
NO_TOKEN_TYPES = ("xlm-roberta", "distilbert", "modernbert")
LAYERS = EXAMPLE_SIZES["num_hidden_layers"]


def make_family_dir(path: Path, family: str, *, seed: int = 0, layers: int = LAYERS) -> Path:
    import torch
    from transformers import AutoConfig, AutoModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + list(dict.fromkeys(WORDS))) + "\n")
    # the families whose real tokenizers give no token type ids get a tokenizer without them
    names = (["input_ids", "attention_mask"] if family in NO_TOKEN_TYPES
             else ["input_ids", "token_type_ids", "attention_mask"])
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=128, model_input_names=names)
    torch.manual_seed(seed)
    cfg = example_config(family, vocab_size=len(tok), num_hidden_layers=layers)
    model = AutoModel.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    with torch.no_grad():  # non-trivial norms and biases, so a missed tensor shows
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path
