"""OpenVINO as the engine of a loaded composed model (CPU; bfloat16 where the CPU multiplies it natively).

OpenVINO reads the artifact's raw ONNX export (standard ops, not ONNX Runtime's fused contrib ops): the same
fork-copy graph per input signature as :mod:`mtbranch.backends.ort`, cached the same way (user cache, keyed by the
lock's sha256, the tasks and torch; ``flavour`` ``raw``). It is compiled for the CPU at load with the thread count
and ``INFERENCE_PRECISION_HINT`` ``bf16`` where :func:`mtbranch.spec.precision.resolve_dtype` resolves ``auto`` to
bfloat16 (the test torch's bf16 uses: ``avx512_bf16`` or AMX), else ``f32``. Measured 1.28-1.55x the best of
torch float32 / bfloat16 and ONNX Runtime in every cell (docs/benchmarks.md, "OpenVINO").

Load check against torch float32 on the probe inputs (:func:`mtbranch.backends.ort.compare`): f32 within
:data:`mtbranch.backends.ort.TOLERANCE`, as ONNX Runtime. bf16 differs from float32 by design, so its bound is the
one torch bfloat16 (shipped by ``auto`` on the strength of its dev metrics, docs/benchmarks.md "Compute dtype")
meets with a margin: each head's max |diff| within :data:`BF16_SCALED` of its largest |float32 output| (at least
1), and :data:`BF16_LABELS` of the argmax labels equal. Outside either bound the engine is refused and the caller
falls back to torch with a warning.

Thread safety: a compiled model is shared; each thread gets its own infer request per signature (serving runs the
model from worker threads).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mtbranch.backends.ort import INPUTS, TOLERANCE, Agreement, compare, groups, not_exportable, open_cached
from mtbranch.errors import MtbranchError

# bf16 vs torch float32 on the probe inputs, seen on the 8-task example (heads' outputs up to |12|): OpenVINO bf16
# max |diff| 0.19 = 1.6% of its head's scale, torch bf16 0.13 (1.1%); labels equal 99.0% for both. The bounds
# leave 3x that scale and one label in 20: a broken graph (an op compiled wrong) misses both by far.
BF16_SCALED = 0.05
BF16_LABELS = 0.95
PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}


def available() -> str | None:
    """None when OpenVINO imports; else why not (the ``[openvino]`` extra is missing)."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"openvino is not installed ({exc.name}; pip install 'mtbranch[openvino]')"
    return None


def version() -> str:
    import openvino

    return str(openvino.__version__)


def within(dtype: str, got: Agreement) -> str | None:
    """None when ``got`` meets ``dtype``'s bound; else which bound it misses."""
    if dtype != "bfloat16":
        return None if got.max_diff <= TOLERANCE else f"max |diff| {got.max_diff:.2e} > {TOLERANCE:g}"
    if not got.max_scaled <= BF16_SCALED:
        return f"max |diff| {got.max_scaled:.1%} of the head's scale > {BF16_SCALED:.0%}"
    if not got.labels_equal >= BF16_LABELS:
        return f"labels equal {got.labels_equal:.1%} < {BF16_LABELS:.0%}"
    return None


def bound(dtype: str) -> str:
    return (f"{BF16_SCALED:.0%} of each head's scale, labels >= {BF16_LABELS:.0%}" if dtype == "bfloat16"
            else f"{TOLERANCE:g}")


class OvEngine:
    """One compiled OpenVINO model per signature; runs a signature's branches and returns torch tensors."""

    def __init__(self, model: Any, directory: Path, threads: int, dtype: str) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": max(1, threads), "INFERENCE_PRECISION_HINT": PRECISIONS[dtype],
                  "PERFORMANCE_HINT": "LATENCY"}
        self.directory = directory
        self.dtype = dtype
        self.compiled: dict[str, Any] = {}
        self.outputs: dict[str, list[str]] = {}
        self.checked: Agreement | None = None  # the load check against torch float32
        self.exported: dict[str, Any] = {}  # name -> the branch module exported (identity: a swapped branch differs)
        self._local = threading.local()
        for signature, branches in groups(model).items():
            compiled = core.compile_model(str(directory / f"{signature}.onnx"), "CPU", config)
            self.compiled[signature] = compiled
            self.outputs[signature] = [b.name for b in branches]
            self.exported.update({b.name: b for b in branches})

    def covers(self, branches: Sequence[Any]) -> str | None:
        """The signature whose graph computes exactly ``branches`` (None: run them in torch)."""
        if not branches or any(self.exported.get(b.name) is not b for b in branches):
            return None
        signature = str(branches[0].manifest.tokenizer.input_signature)
        names = self.outputs.get(signature)
        return signature if names is not None and set(names) == {b.name for b in branches} else None

    def _request(self, signature: str) -> Any:
        requests: dict[str, Any] = self._local.__dict__.setdefault("requests", {})
        if signature not in requests:
            requests[signature] = self.compiled[signature].create_infer_request()
        return requests[signature]

    def run(self, signature: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
            token_type_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
        ids = input_ids.cpu().long()
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.cpu().long()
        types = torch.zeros_like(ids) if token_type_ids is None else token_type_ids.cpu().long()
        feeds = dict(zip(INPUTS, (ids.numpy(), mask.numpy(), types.numpy()), strict=True))
        compiled = self.compiled[signature]
        res = self._request(signature).infer(feeds)
        # copies: the request reuses its output buffers on the next call
        return {n: torch.from_numpy(res[compiled.output(n)].copy()).float() for n in self.outputs[signature]}


def attach(model: Any, threads: int, dtype: str) -> tuple[OvEngine | None, str]:
    """The checked engine for ``model`` in ``dtype`` (``float32`` / ``bfloat16``), or None and why not."""
    missing = available() or not_exportable(model)
    if missing:
        return None, missing
    try:
        engine: OvEngine = open_cached(model, "raw", lambda d: OvEngine(model, d, threads, dtype))
        got = compare(engine, model)
    except MtbranchError:
        raise
    except Exception as exc:  # an exporter / compiler / runtime failure: the torch path still answers
        return None, f"ONNX export or OpenVINO compile failed ({type(exc).__name__}: {str(exc)[:200]})"
    missed = within(dtype, got)
    if missed:
        return None, f"OpenVINO {dtype} differs from torch float32 on the probe inputs: {missed}"
    engine.checked = got
    return engine, (f"checked vs torch float32: max |diff| {got.max_diff:.1e} ({got.max_scaled:.1%} of the head's "
                    f"scale), labels equal {got.labels_equal:.0%}; bound {bound(dtype)}")


__all__ = ["BF16_LABELS", "BF16_SCALED", "OvEngine", "attach", "available", "bound", "version", "within"]
