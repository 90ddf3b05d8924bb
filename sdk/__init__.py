"""The mtbranch SDK: what a team uses to make a branch.

- :mod:`mtbranch.sdk.tasks`: a task is a head type with a training side, looked up by its name (no torch)
- :mod:`mtbranch.sdk.data`: readers for tables (TSV/CSV/JSONL), CoNLL and seq.in/seq.out files (no torch)
- :mod:`mtbranch.sdk.features`: trunk features computed once per dataset, cached, optionally quantized
- :mod:`mtbranch.sdk.train`: partial fine-tuning with transformers' Trainer, export to a branch artifact
- :mod:`mtbranch.sdk.sweep`: train every L in [N_min, N_max] from one trunk pass, select L by a rule
- :mod:`mtbranch.sdk.distill`: teacher-initialised knowledge distillation to fewer layers
- :mod:`mtbranch.sdk.plugin_testing`: the checks a plugin package's own tests run (discovered, light, validates)
- :mod:`mtbranch.cli.sdk_commands`: ``mtbranch train|sweep|distill``

Nothing is imported here so that ``mtbranch --help`` never pulls in torch.
"""
