"""Build branch artifacts on a tiny trunk for tests (random weights so every branch differs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtbranch.branch import BranchModule, save_branch
from mtbranch.factory import branch_manifest
from mtbranch.heads import ClassificationHead, RegressionHead, TokenClassificationHead
from mtbranch.plugins.manager import get_plugin_manager
from mtbranch.tokenizer_contract import load_tokenizer
from mtbranch.trunk_ref import load_trunk_source

HEADS = {
    "classification": lambda: ClassificationHead(labels=["negative", "positive"]),
    "multilabel": lambda: ClassificationHead(labels=["a", "b", "c"], multi_label=True),
    "regression": lambda: RegressionHead(),
    "token_classification": lambda: TokenClassificationHead(labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
}


def make_branch(trunk_dir: Path, out: Path, *, name: str, depth: int, layers: int,
                head: str = "classification", pooling: str = "cls", signature: str = "single",
                seed: int = 0, projection: bool = True, max_length: int | None = 64, **extra: Any) -> Path:
    src = load_trunk_source(trunk_dir)
    tok = load_tokenizer(trunk_dir)
    spec = HEADS[head]()
    m = branch_manifest(src, tok, name=name, attach_depth=depth, num_layers=layers, head=spec, pooling=pooling,
                        projection=projection, max_length=max_length, input_signature=signature, **extra)
    torch.manual_seed(seed)
    module = BranchModule(m, get_plugin_manager().head_type(spec.type))
    with torch.no_grad():  # spread the weights so outputs are far from uniform
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    save_branch(module, out)
    return out
