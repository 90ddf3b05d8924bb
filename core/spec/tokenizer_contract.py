"""The tokenizer contract: what a branch was trained with (the model; computing it: mtbranch.trunk.tokenizer).

The probe hash (token ids for a fixed multilingual text) decides compatibility; the definition hash
(canonical JSON of the fast tokenizer) only tells that the serialisation changed, which is a warning.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenizerContract(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition_sha256: str = Field(description="sha256 of the tokenizer's canonical JSON definition")
    probe_sha256: str = Field(description="sha256 of the token ids the tokenizer gives for the probe text")
    vocab_size: int
    special_token_ids: dict[str, int] = Field(default_factory=dict)
    max_length: int = Field(gt=0, description="inputs are truncated to this many tokens")
    input_signature: Literal["single", "pair"] = "single"
