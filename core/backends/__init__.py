"""Execution backends of a loaded composed model: PyTorch (float32 / bfloat16) and ONNX Runtime (float32).

``load(..., backend=, dtype=)`` picks one (``auto``: by a short measurement on this machine, cached per hardware
and artifact; :mod:`mtbranch.backends.auto`). The ONNX Runtime engine (:mod:`mtbranch.backends.ort`) runs the
same tensor-level forward as the torch model and returns the same outputs, so predict, serve and Ray keep one
postprocessing path (:mod:`mtbranch.heads.postprocess`). Light module: nothing heavy is imported here.
"""

from __future__ import annotations

AUTO = "auto"
TORCH = "torch"
ONNXRUNTIME = "onnxruntime"
BACKENDS: tuple[str, ...] = (AUTO, TORCH, ONNXRUNTIME)
DEFAULT_BACKEND = AUTO
BACKEND_HELP = ("Execution backend: torch, onnxruntime (the artifact exported once to ONNX, fused by ONNX Runtime's "
                "transformer optimizer, cached under ~/.cache/mtbranch, checked against torch at load), or auto "
                "(the fastest of torch float32 / bfloat16 and ONNX Runtime float32 on this machine, measured once "
                "per hardware and artifact, per batch size). The float32 reference: --backend torch --dtype float32.")
