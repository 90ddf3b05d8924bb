"""Execution backends of a loaded composed model: PyTorch (float32 / bfloat16), ONNX Runtime (float32) and OpenVINO
(bfloat16 where the CPU has native bf16, else float32).

``load(..., backend=, dtype=)`` picks one (``auto``: by a short measurement on this machine, cached per hardware
and artifact; :mod:`mtbranch.backends.auto`). The ONNX Runtime engine (:mod:`mtbranch.backends.ort`) and the
OpenVINO engine (:mod:`mtbranch.backends.ov`) run the same tensor-level forward as the torch model and return the
same outputs, so predict, serve and Ray keep one postprocessing path (:mod:`mtbranch.heads.postprocess`). Light
module: nothing heavy is imported here.
"""

from __future__ import annotations

AUTO = "auto"
TORCH = "torch"
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
BACKENDS: tuple[str, ...] = (AUTO, TORCH, ONNXRUNTIME, OPENVINO)
DEFAULT_BACKEND = AUTO
BACKEND_HELP = ("Execution backend: torch, onnxruntime (the artifact exported once to ONNX, fused by ONNX Runtime's "
                "transformer optimizer, cached under ~/.cache/mtbranch, checked against torch at load), openvino "
                "(the same export compiled by OpenVINO, bfloat16 where the CPU has native bf16; pip install "
                "'mtbranch[openvino]'), or auto (the fastest of torch float32 / bfloat16, ONNX Runtime float32 and "
                "OpenVINO, each when installed, on this machine, measured once per hardware and artifact, per batch "
                "size). The float32 reference: --backend torch --dtype float32.")


def answer_dtype(model: object) -> str:
    """The dtype answers are computed in: the torch model's, or bfloat16 where a graph engine runs bf16 (OpenVINO
    on a native-bf16 CPU) while the torch model stays float32."""
    runtime = getattr(model, "runtime", None)
    engines = getattr(runtime, "engines", {}) if runtime is not None else {}
    if any(getattr(e, "dtype", "float32") == "bfloat16" for e in engines.values()):
        return "bfloat16"
    return str(getattr(model, "compute_dtype", "float32"))
