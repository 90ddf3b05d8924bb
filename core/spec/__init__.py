"""The data specs: branch manifest, head specs, trunk structure, findings, tokenizer contract, tensor layout."""
