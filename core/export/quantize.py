"""Optional CPU fast path: int8 dynamic quantization of the transformer layers.

Every ``nn.Linear`` inside the trunk's and the branches' transformer layers gets int8 weights (per output
channel) and int8 activations quantized per batch at run time (PyTorch's dynamic quantization, fbgemm/x86
kernels). Embeddings, poolers and heads stay float32: they are a sliver of the compute and the heads decide
the answer. Measured speedup and metric change on the real branches: docs/benchmarks.md.

Per branch (:func:`quantize_branch`): only one branch's own layers, where its dev metric allows it (the gate:
:mod:`mtbranch.sdk.int8_gate`); the composed artifact's lock records each branch's precision and ``load`` applies
it. The trunk's shared layers stay float32 there: every branch reads them, so quantizing them would change the
answers of branches that were never gated.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from mtbranch.errors import MtbranchError, UsageError

log = logging.getLogger("mtbranch")
QUANTIZE_CHOICES = ("int8",)
BRANCH_PRECISIONS = ("float32", "int8")  # a composed artifact's lock: branches[].precision (absent: float32)


def quantize_layers(model: Any, kind: str = "int8") -> Any:
    """Quantize ``model``'s transformer layers in place (a ComposedModel on CPU, float32); returns it."""
    if kind not in QUANTIZE_CHOICES:
        raise UsageError(f"unknown quantization {kind!r}", hint=f"choose one of {', '.join(QUANTIZE_CHOICES)}")
    if not quantizable(model):
        raise UsageError("int8 dynamic quantization needs a float32 model on the CPU",
                         hint="drop --device/--dtype, or use fp16/bf16 on a GPU instead of --quantize")
    for layers in [model.trunk.layers, *(b.layers for b in model.branches)]:
        _quantize_linears(layers)
    model.quantized = kind
    return model


def quantizable(module: Any) -> bool:
    """Whether ``module`` is float32 on the CPU (what PyTorch's dynamic int8 kernels take)."""
    import torch

    return all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters())


def quantize_branch(branch: Any) -> bool:
    """int8 dynamic quantization of one branch's own transformer layers, in place (its pooler and head stay
    float32); ``False`` when it has no layers to quantize (a branch that reads the trunk's last layer directly)."""
    if not any(True for _ in branch.layers.parameters()):
        return False
    _quantize_linears(branch.layers)
    return True


def apply_branch_precisions(model: Any, precisions: Mapping[str, str]) -> list[str]:
    """Quantize the branches ``precisions`` marks int8 (a composed artifact's lock); returns their names. A model
    not float32 on the CPU (bf16, a GPU) keeps them in its own dtype: dynamic int8 runs on float32 CPU weights."""
    names = [b.name for b in model.branches if precisions.get(b.name) == "int8"]
    if not names:
        return []
    if not quantizable(model):
        log.warning("branches %s are int8 in the lock but the model is not float32 on the CPU: they run in its "
                    "dtype", ", ".join(names))
        return []
    for name in names:
        quantize_branch(model.branch(name))
    return names


def _quantize_linears(layers: Any) -> None:
    import torch
    from torch import nn

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:  # torch.ao.quantization is deprecated in favour of torchao; say so if it is gone
        raise MtbranchError(f"this torch ({torch.__version__}) has no dynamic quantization: {e}",
                            hint="use the ONNX Runtime fast path (mtbranch export-onnx) instead") from e
    with warnings.catch_warnings():  # torch >= 2.10 warns that torch.ao.quantization moves to torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(layers, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


__all__ = ["BRANCH_PRECISIONS", "QUANTIZE_CHOICES", "apply_branch_precisions", "quantizable", "quantize_branch",
           "quantize_layers"]
