"""Optional CPU fast path: int8 dynamic quantization of the transformer layers.

Every ``nn.Linear`` inside the trunk's and the branches' transformer layers gets int8 weights (per output
channel) and int8 activations quantized per batch at run time (PyTorch's dynamic quantization, fbgemm/x86
kernels). Embeddings, poolers and heads stay float32: they are a sliver of the compute and the heads decide
the answer. Measured speedup and metric change on the real branches: docs/benchmarks.md.
"""

from __future__ import annotations

import warnings
from typing import Any

from mtbranch.errors import MtbranchError, UsageError

QUANTIZE_CHOICES = ("int8",)


def quantize_layers(model: Any, kind: str = "int8") -> Any:
    """Quantize ``model``'s transformer layers in place (a ComposedModel on CPU, float32); returns it."""
    import torch
    from torch import nn

    if kind not in QUANTIZE_CHOICES:
        raise UsageError(f"unknown quantization {kind!r}", hint=f"choose one of {', '.join(QUANTIZE_CHOICES)}")
    params = list(model.parameters())
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        raise UsageError("int8 dynamic quantization needs a float32 model on the CPU",
                         hint="drop --device/--dtype, or use fp16/bf16 on a GPU instead of --quantize")
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:  # torch.ao.quantization is deprecated in favour of torchao; say so if it is gone
        raise MtbranchError(f"this torch ({torch.__version__}) has no dynamic quantization: {e}",
                            hint="use the ONNX Runtime fast path (mtbranch export-onnx) instead") from e
    stacks = [model.trunk.layers, *(b.layers for b in model.branches)]
    with warnings.catch_warnings():  # torch >= 2.10 warns that torch.ao.quantization moves to torchao
        warnings.simplefilter("ignore")
        for layers in stacks:
            quantize_dynamic(layers, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    model.quantized = kind
    return model


__all__ = ["QUANTIZE_CHOICES", "quantize_layers"]
