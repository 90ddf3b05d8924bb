"""mtbranch example head-type plugin: multi-label classification, trainable with ``mtbranch train``.

Registers the head type ``multi_label`` through the ``mtbranch_head_types`` hook: its inference side (spec
model, tensors, module, post-processing; :mod:`.head`) and its training side (label reader, loss, distillation
loss, metrics; :mod:`.training`). Nothing here imports torch: the module is built and the losses run inside
functions that import it.
"""

from __future__ import annotations

from mtbranch.heads.registry import HeadType
from mtbranch.plugins import hookimpl
from mtbranch_head_multilabel.head import NAME, MultiLabelHead, build, postprocess, tensor_shapes
from mtbranch_head_multilabel.training import TRAINING

__all__ = ["NAME", "TRAINING", "MultiLabelHead", "head_type", "mtbranch_head_types"]


def head_type() -> HeadType:
    return HeadType(NAME, MultiLabelHead, True, tensor_shapes, build, postprocess,
                    "multi-label classification: a sigmoid per label, every label over the threshold",
                    training=TRAINING)


@hookimpl
def mtbranch_head_types() -> list[HeadType]:
    return [head_type()]
