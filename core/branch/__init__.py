"""A branch: the torch module and its artifact (read/write), building one from a trunk, importing from HF."""
