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


def head_input_size(manifest: BranchManifest) -> int:
    """Width of the head's input: the hidden size, or four of them for a ``shared`` pair branch
    ([u, v, |u-v|, u*v] of its two texts' pooled vectors)."""
    h = manifest.trunk.structure.hidden_size
    return 4 * h if manifest.pair_mode == "shared" else h


def expected_branch_tensors(manifest: BranchManifest, head_shapes: dict[str, tuple[int, ...]] | None = None,
                            *, sequence_level: bool | None = None,
                            family_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """``sequence_level``: the head type's own flag (a plugin head may be per token); None guesses from the
    built-in head types. ``family_shapes``: the trunk family's branch tensors (layers, context, final,
    projection) for families other than BERT's, whose layout is derived here."""
    s = manifest.trunk.structure
    h = s.hidden_size
    shapes: dict[str, tuple[int, ...]] = dict(family_shapes or {})
    for i in range(manifest.num_layers if family_shapes is None else 0):
        for name, shape in layer_tensor_shapes(s).items():
            shapes[f"layers.{i}.{name}"] = shape
    if is_sequence_level(manifest.head) if sequence_level is None else sequence_level:
        if manifest.pooling == "attention":
            shapes.update(attention_pooling_shapes(h))
        if manifest.projection and family_shapes is None:
            shapes.update({"pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)})
    if head_shapes is None:
        head_shapes = linear_head_shapes(manifest.head.num_outputs, head_input_size(manifest))
    shapes.update(head_shapes)
    return shapes
