"""The trunk's tokenizer: loading it, and the fingerprints a tokenizer contract records.

The probe hash (token ids for a fixed multilingual text) decides compatibility; the definition hash
(canonical JSON of the fast tokenizer) only tells that the serialisation changed, which is a warning.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from mtbranch.spec.tokenizer_contract import TokenizerContract

PROBE_TEXT = (
    "The quick brown fox jumps over the lazy dog. Ünïcödé façade, naïve café; "
    "Größe, señor, Œuvre. Съешь ещё этих мягких булок. 東京は日本の首都です。 "
    "مرحبا بالعالم. हिन्दी पाठ. 1,234.56 USD — e-mail: a.b@c.org #tag @user :) 🙂"
)
PROBE_PAIR = "A second segment, for pair inputs."



TOKENIZER_FILE_PREFIXES = ("tokenizer", "vocab", "merges", "special_tokens", "added_tokens", "config.json",
                           "spiece", "sentencepiece", "spm")


def load_tokenizer(path: str | Path) -> Any:
    """The trunk's fast tokenizer; the files transformers would open must be regular files (a FIFO would hang)."""
    from transformers import AutoTokenizer

    from mtbranch.io.files import check_regular

    p = Path(path)
    if p.is_dir():
        for entry in p.iterdir():
            if entry.name.startswith(TOKENIZER_FILE_PREFIXES) or entry.suffix == ".model":
                check_regular(entry)
    return AutoTokenizer.from_pretrained(str(path), use_fast=True)


def _sha(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tokenizer_fingerprints(tokenizer: Any) -> dict[str, Any]:
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    # padding/truncation are call-time settings the tokenizer object carries around, not its definition
    definition.pop("padding", None)
    definition.pop("truncation", None)
    single = tokenizer(PROBE_TEXT)["input_ids"]
    pair = tokenizer(PROBE_TEXT, PROBE_PAIR)
    specials = {
        name: int(getattr(tokenizer, f"{name}_token_id"))
        for name in ("pad", "cls", "sep", "unk", "mask", "bos", "eos")
        if getattr(tokenizer, f"{name}_token_id", None) is not None
    }
    return {
        "definition_sha256": _sha(definition),
        "probe_sha256": _sha({"single": single, "pair": pair["input_ids"],
                              "pair_types": pair.get("token_type_ids")}),
        "vocab_size": len(tokenizer),
        "special_token_ids": specials,
    }


# transformers sets model_max_length to int(1e30) when the tokenizer files name no limit: no limit at all
_NO_LIMIT = 10**9


def tokenizer_limit(tokenizer: Any) -> int | None:
    """The tokenizer's own ``model_max_length``, or None when it sets none (transformers' huge sentinel)."""
    value = getattr(tokenizer, "model_max_length", None)
    return int(value) if isinstance(value, int) and 0 < value < _NO_LIMIT else None


def position_limit(config: Any) -> int | None:
    """How many tokens the trunk's position embeddings can take. A family whose record says
    ``positions_after_pad`` (RoBERTa, XLM-R) numbers positions from ``pad_token_id + 1``, so 514 position
    embeddings hold 512 tokens; BERT uses them from 0. ``config`` is a transformers config, a
    :class:`TrunkStructure` or a dict."""
    from mtbranch.errors import MtbranchError
    from mtbranch.trunk.families import record_for

    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    n = get("max_position_embeddings")
    if not isinstance(n, int):
        return None
    try:
        after_pad = record_for(get("model_type")).positions_after_pad
    except MtbranchError:  # no registered family: nothing known about its positions
        after_pad = False
    if after_pad and get("position_embedding_type", "absolute") == "absolute":
        pad = get("pad_token_id")
        n -= (pad if isinstance(pad, int) else 1) + 1
    return n


def effective_max_length(declared: int | None, tokenizer: Any, config: Any) -> int:
    """The smallest of the declared max_length (a branch's, or --max-length), the tokenizer's
    model_max_length (when set) and what the trunk's position embeddings allow; 512 when none is known."""
    limits = [x for x in (declared, tokenizer_limit(tokenizer), position_limit(config)) if x]
    return min(limits) if limits else 512


def contract_for(tokenizer: Any, *, max_length: int | None = None,
                 input_signature: Literal["single", "pair"] = "single") -> TokenizerContract:
    fp = tokenizer_fingerprints(tokenizer)
    limit = max_length or min(tokenizer_limit(tokenizer) or 512, 512)
    return TokenizerContract(**fp, max_length=limit, input_signature=input_signature)
