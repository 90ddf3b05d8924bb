"""The frozen trunk: where it comes from (source), its fingerprint chain, the torch module, its tokenizer."""
