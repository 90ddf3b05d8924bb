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



def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

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


def contract_for(tokenizer: Any, *, max_length: int | None = None,
                 input_signature: Literal["single", "pair"] = "single") -> TokenizerContract:
    fp = tokenizer_fingerprints(tokenizer)
    limit = max_length or min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    return TokenizerContract(**fp, max_length=limit, input_signature=input_signature)
