"""The tensors a branch file must hold, derived from its manifest (no torch).

Validation compares a branch's safetensors header with this layout without loading any tensor.
"""

from __future__ import annotations

from mtbranch.spec.heads import is_sequence_level
from mtbranch.spec.manifest import BranchManifest
from mtbranch.spec.structure import layer_tensor_shapes


def attention_pooling_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    return {
        "pooling.query": (1, 1, hidden),
        "pooling.attn.in_proj_weight": (3 * hidden, hidden),
        "pooling.attn.in_proj_bias": (3 * hidden,),
        "pooling.attn.out_proj.weight": (hidden, hidden),
        "pooling.attn.out_proj.bias": (hidden,),
    }


def linear_head_shapes(num_outputs: int, hidden: int) -> dict[str, tuple[int, ...]]:
    return {"head.classifier.weight": (num_outputs, hidden), "head.classifier.bias": (num_outputs,)}


def expected_branch_tensors(manifest: BranchManifest,
                            head_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    s = manifest.trunk.structure
    h = s.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(manifest.num_layers):
        for name, shape in layer_tensor_shapes(s).items():
            shapes[f"layers.{i}.{name}"] = shape
    if is_sequence_level(manifest.head):
        if manifest.pooling == "attention":
            shapes.update(attention_pooling_shapes(h))
        if manifest.projection:
            shapes.update({"pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)})
    if head_shapes is None:
        head_shapes = linear_head_shapes(manifest.head.num_outputs, h)
    shapes.update(head_shapes)
    return shapes
