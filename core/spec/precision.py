"""Which compute dtype runs where: the ``--dtype`` choices, the ``auto`` rule and the hardware features it reads.

The names themselves live in :mod:`mtbranch.spec.dtypes` (the one dtype table); this module adds ``auto`` and the
device rules on top of it:

* ``float32``  everywhere; equals transformers' forward.
* ``bfloat16`` everywhere torch runs; fast where the hardware multiplies bf16 natively.
* ``float16``  GPUs only: CPUs without native fp16 matmul units run it far slower than float32, so on the CPU it
  is refused with a user error rather than run slowly.
* ``auto``     bf16 where the hardware multiplies it natively (CPU flags ``amx_bf16`` or ``avx512_bf16``, a CUDA
  device with bf16 support), float32 elsewhere. On a CPU with ``avx512_bf16`` but no AMX (2-core AMD EPYC,
  Zen 5) a one-thread bf16 matmul ran 5x faster than float32 and the example model 2.9x faster, so
  ``avx512_bf16`` alone is enough (docs/benchmarks.md, "Compute dtype"). CPUs without either flag (most AVX2
  machines, ARM) emulate bf16 with conversions and stay float32.

CPU features come from ``/proc/cpuinfo`` (torch is not imported for them); CUDA support is asked from torch only
for a CUDA device. Tests pass a :class:`Hardware` to simulate machines.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mtbranch.errors import MtbranchError, UsageError
from mtbranch.spec.dtypes import COMPUTE_DTYPES, dtype_named

AUTO = "auto"
DTYPE_OPTIONS: tuple[str, ...] = (AUTO, *COMPUTE_DTYPES)  # what --dtype / load(dtype=...) accept (plus aliases)

def _spellings() -> tuple[str, ...]:
    from mtbranch.spec.dtypes import DTYPES

    return (*DTYPE_OPTIONS, *(a for n in COMPUTE_DTYPES for a in DTYPES[n].aliases))


DTYPE_SPELLINGS: tuple[str, ...] = _spellings()  # for click.Choice: auto, float32, ..., fp32, fp16, bf16
DTYPE_HELP = ("Compute dtype: float32 (exact: equals transformers' forward), bfloat16, float16 (GPU only), or auto "
              "(bfloat16 where the hardware multiplies it natively: AMX / avx512_bf16 CPUs, CUDA with bf16; "
              "else float32).")
# load(), predict, serve, Ray and bench: one default, the dtype the SDK measures every branch's dev metrics in, so
# what a team measured is what it serves unless it asks for another dtype (docs/composition.md)
DEFAULT_DTYPE = "float32"
MEASURED_IN = DEFAULT_DTYPE


def metrics_note(compute_dtype: str) -> str:
    """What a server's start line adds when it does not run the dtype the branches' metrics were measured in."""
    if compute_dtype == MEASURED_IN:
        return ""
    return (f"; the branches' dev metrics were measured in {MEASURED_IN}, {compute_dtype} answers can differ "
            f"(--backend torch --dtype {MEASURED_IN} serves exactly what was measured)")
# the CPU flags that make bf16 matmuls native (reported by the bench, read by `auto`), fastest first
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
REPORTED_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                      "amx_int8")


@dataclass(frozen=True)
class Hardware:
    """What the ``auto`` rule looks at. ``cuda_bf16`` is None when the device is not CUDA."""

    device_type: str = "cpu"
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cuda_bf16: bool | None = None

    @property
    def bf16_cpu_flag(self) -> str | None:
        """The first flag of :data:`BF16_CPU_FLAGS` this CPU has (None: bf16 would be emulated)."""
        return next((f for f in BF16_CPU_FLAGS if f in self.cpu_flags), None)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``); empty where /proc/cpuinfo is unreadable."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def device_type(device: Any) -> str:
    return str(device).split(":", 1)[0] or "cpu"


def detect(device: Any = "cpu") -> Hardware:
    kind = device_type(device)
    cuda_bf16 = None
    if kind == "cuda":
        import torch

        cuda_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return Hardware(kind, cpu_flags(), cuda_bf16)


def canonical(name: Any) -> str:
    """``bf16`` -> ``bfloat16``; ``auto`` stays; a user error naming the choices otherwise."""
    if name == AUTO:
        return AUTO
    if not isinstance(name, str) and str(name).startswith("torch."):  # a torch.dtype passed through
        name = str(name).removeprefix("torch.")
    try:
        return dtype_named(name).name
    except MtbranchError as exc:  # the table's own error: say which options exist, auto included
        raise UsageError(f"unknown dtype {name!r}", hint=f"use one of {', '.join(DTYPE_OPTIONS)}") from exc


def resolve_dtype(requested: Any, device: Any = "cpu", hardware: Hardware | None = None) -> str:
    """The concrete dtype name to run in: ``None`` -> float32, ``auto`` by the rule above; refuses float16 on the
    CPU (a user error, exit 1; an unknown name is a usage error, exit 2 as click's own)."""
    name = canonical(requested) if requested is not None else DEFAULT_DTYPE
    kind = device_type(device)
    if name == AUTO:
        hw = hardware or detect(device)
        if hw.device_type == "cuda":
            return "bfloat16" if hw.cuda_bf16 else "float32"
        if hw.device_type == "cpu" and hw.bf16_cpu_flag is not None:
            return "bfloat16"
        return "float32"
    if name == "float16" and kind == "cpu":
        raise MtbranchError("float16 runs on GPUs only: on the CPU it multiplies far slower than float32",
                            hint="use --dtype bfloat16 (or auto) on the CPU, or --device cuda for float16")
    return name


def float32_only(requested: Any, what: str, hint: str) -> str:
    """For paths that exist in float32 only (ONNX export): ``auto``/``float32`` -> float32, any other dtype a
    user error saying so."""
    name = canonical(requested) if requested is not None else DEFAULT_DTYPE
    if name not in (AUTO, "float32"):
        raise MtbranchError(f"{what} supports float32 only, not {name}", hint=hint)
    return "float32"


def why(requested: Any, resolved: str, device: Any = "cpu", hardware: Hardware | None = None) -> str:
    """One line saying what ran and why (for logs and the bench)."""
    if requested != AUTO:
        return resolved
    hw = hardware or detect(device)
    if hw.device_type == "cuda":
        reason = "CUDA device with bf16" if hw.cuda_bf16 else "CUDA device without bf16"
    elif hw.bf16_cpu_flag:
        reason = f"CPU has {hw.bf16_cpu_flag}"
    else:
        reason = "no native bf16 on this " + (hw.device_type if hw.device_type != "cpu" else "CPU")
    return f"{resolved} (auto: {reason})"


def attention_for(dtype: str, device: Any = "cpu") -> str:
    """transformers' attention implementation to run in: SDPA, except bf16 on the CPU, where torch's fused CPU
    attention kernel was slower than the plain matmul + softmax path (eager) on the example model, at no
    measured accuracy cost (docs/benchmarks.md, "Compute dtype")."""
    return "eager" if dtype == "bfloat16" and device_type(device) == "cpu" else "sdpa"


class Placeable(Protocol):
    """What placing reads and records on a composed model (``mtbranch.composition.model.ComposedModel``, a layer
    above this one)."""

    compute_dtype: str
    compute_dtype_reason: str
    attention: str

    @property
    def trunk(self) -> Any: ...

    @property
    def branches(self) -> Sequence[Any]: ...

    def to(self, *, device: Any, dtype: Any) -> Any: ...


Placed = TypeVar("Placed", bound=Placeable)


def set_attention(model: Placeable, implementation: str) -> None:
    """Switch the trunk's and every branch's layers to ``implementation`` (read by transformers at call time)."""
    configs = [model.trunk.config, *(b.config for b in model.branches)]
    for cfg in {id(c): c for c in configs}.values():
        cfg._attn_implementation = implementation
    model.attention = implementation


def place_model(model: Placed, device: Any = "cpu", dtype: Any = None, *, quantize: str | None = None,
                hardware: Hardware | None = None) -> Placed:
    """Move a composed model to ``device`` in the resolved compute dtype; records it as ``model.compute_dtype``
    and picks the attention implementation for it (:func:`attention_for`).

    With ``quantize`` (int8 dynamic quantization needs float32 weights) ``auto`` resolves to float32.
    """
    name = "float32" if quantize is not None and dtype == AUTO else resolve_dtype(dtype, device, hardware)
    from mtbranch.spec.dtypes import torch_dtype

    model = model.to(device=device, dtype=torch_dtype(name))  # itself (nn.Module.to moves in place)
    model.compute_dtype = name
    model.compute_dtype_reason = why(dtype, name, device, hardware)
    set_attention(model, attention_for(name, device))
    return model


def cpu_report() -> dict[str, Any]:
    """The CPU features a measurement ran on: model name, the flags that matter for speed, torch's kernel level."""
    flags = cpu_flags()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out: dict[str, Any] = {"cpu": model, "flags": {f: f in flags for f in REPORTED_CPU_FLAGS},
                           "auto_dtype_cpu": resolve_dtype(AUTO, "cpu", Hardware("cpu", flags))}
    try:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        out["torch_cpu_capability"] = None
    return out


__all__ = ["AUTO", "BF16_CPU_FLAGS", "DEFAULT_DTYPE", "DTYPE_HELP", "DTYPE_OPTIONS", "DTYPE_SPELLINGS", "Hardware",
           "attention_for", "canonical", "check_device", "cpu_flags", "cpu_report", "detect", "float32_only",
           "place_model", "resolve_dtype", "set_attention", "why"]


def check_device(device: Any) -> str:
    """``device`` as torch spells it, if this machine has it: ``--device cuda`` on a CPU-only torch (or an index
    past the GPUs there are) is a user error here, not a RuntimeError deep inside loading."""
    import torch

    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError) as exc:
        raise MtbranchError(f"unknown device {str(device)!r}: {exc}", hint="e.g. cpu, cuda, cuda:1, mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise MtbranchError(f"device {str(device)!r}: {why}", hint="use --device cpu, or a CUDA build of torch "
                                                                        "on a machine with a GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MtbranchError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)",
                                hint=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise MtbranchError(f"device {str(device)!r}: MPS is not available here", hint="use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise MtbranchError(f"device {str(device)!r} is not supported", hint="use cpu, cuda[:N] or mps")
    return str(device)
