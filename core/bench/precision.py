"""``mtbranch bench --compare-dtypes``: the composed model in each compute dtype, against this machine's peak.

For every dtype asked (``float32``, ``bfloat16``, ``float16`` on GPUs, ``auto``, and ``int8``: dynamic int8
quantization of the transformer layers) the composed model answers every task of the scenario for the same token
batch; the dtypes are timed interleaved (a shuffled order each round) so a busy machine slows them alike. Per
dtype the result holds:

* the composed model's time, throughput, and achieved GFLOP/s: the multiply-adds of the transformer layers it runs
  (projections, FFN and the two attention products; embeddings, poolers and heads are left out, well under 1%),
  divided by the median time;
* the peak of this machine for that dtype: a short probe multiplies the model's largest matmul shape (tokens x
  hidden by hidden x intermediate, the FFN's first projection) in that dtype and keeps the best of a few repeats
  (int8: PyTorch's dynamic int8 linear on the same shape, activation quantization included);
* the fraction of that peak reached, the speedup over float32 and the largest output difference from float32.

The CPU features the run saw (``/proc/cpuinfo`` flags, ``torch.backends.cpu.get_cpu_capability()``) are recorded
with it (mtbranch.spec.precision.cpu_report).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mtbranch.errors import MtbranchError, UsageError
from mtbranch.spec.precision import DTYPE_OPTIONS, canonical, resolve_dtype, why

if TYPE_CHECKING:
    from mtbranch.composition.model import ComposedModel

INT8 = "int8"
COMPARE_CHOICES = (*DTYPE_OPTIONS, INT8)


def parse_dtypes(spec: str | Sequence[str], device: str) -> list[tuple[str, str]]:
    """``"float32,bf16,int8"`` -> ``[(asked, resolved), ...]``, float32 first (the reference), duplicates dropped."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise UsageError("--compare-dtypes is empty", hint=f"e.g. float32,bfloat16,int8 (choices: "
                                                          f"{', '.join(COMPARE_CHOICES)})")
    out: dict[str, str] = {"float32": "float32"}
    for asked in items:
        if asked == INT8:
            if not device.startswith("cpu"):
                raise MtbranchError("int8 dynamic quantization runs on the CPU only",
                                    hint="drop int8, or --device cpu")
            out.setdefault(INT8, INT8)
            continue
        resolved = resolve_dtype(canonical(asked), device)
        label = asked if asked == "auto" else resolved
        out.setdefault(label, resolved)
    return list(out.items())


def layer_flops(config: Any, batch_size: int, seq_len: int) -> int:
    """FLOPs (2 per multiply-add) of one encoder layer over the batch, as the trunk family counts them
    (``TrunkFamily.layer_flops``: ModernBERT's gated FFN is wider; DeBERTa's relative-position terms are not
    counted)."""
    from mtbranch.serve.cost import Shape

    return round(batch_size * Shape.of_config(config).layer(seq_len))


def layers_run(branches: Sequence[Any]) -> int:
    """Layers the composed model runs to answer ``branches``: the trunk once per input signature, to that group's
    deepest branch, plus every branch's own layers."""
    from mtbranch.composition.model import by_signature

    trunk = sum(max(b.manifest.attach_depth for b in g) for g in by_signature(branches).values())
    return trunk + sum(b.manifest.num_layers for b in branches)


def composed_flops(model: ComposedModel, branches: Sequence[Any], batch_size: int, seq_len: int) -> int:
    """FLOPs of the layers the composed model runs to answer ``branches`` (:func:`layers_run` x one layer's)."""
    return layer_flops(model.trunk.config, batch_size, seq_len) * layers_run(branches)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def matmul_peak(dtype: str, m: int, k: int, n: int, device: str = "cpu", repeats: int = 5,
                budget_s: float = 3.0) -> dict[str, Any]:
    """Best GFLOP/s of ``[m, k] @ [k, n]`` in ``dtype`` on ``device`` (int8: a dynamic int8 linear)."""
    import torch

    g = torch.Generator().manual_seed(0)
    if dtype == INT8:
        import warnings

        from torch.ao.quantization import quantize_dynamic

        lin = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False))
        with warnings.catch_warnings():  # torch >= 2.10 warns that torch.ao.quantization moves to torchao
            warnings.simplefilter("ignore")
            lin = quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8)
        x = torch.randn(m, k, generator=g)

        def fn() -> Any:
            return lin(x)
    else:
        td = getattr(torch, dtype)
        a = torch.randn(m, k, generator=g).to(device=device, dtype=td)
        b = torch.randn(k, n, generator=g).to(device=device, dtype=td)

        def fn() -> Any:
            return a @ b
    best = float("inf")
    spent = 0.0
    with torch.inference_mode():
        fn()  # warm-up (kernel selection, packing)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            dt = time.perf_counter() - t0
            best, spent = min(best, dt), spent + dt
            if spent > budget_s:
                break
    return {"shape": [m, k, n], "gflops": 2 * m * k * n / best / 1e9, "best_s": best}


def compare_dtypes(trunk: Any, branch_dirs: list[tuple[Any, str]], batch: dict[str, Any], dtypes: str | Sequence[str],
                   *, device: str, rounds: int, warmup: int, seed: int,
                   say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The composed model in every dtype of ``dtypes``, timed interleaved; see the module docstring."""
    import torch

    from mtbranch.composition.artifact import compose
    from mtbranch.composition.model import by_signature
    from mtbranch.export.quantize import quantize_layers

    say = say or (lambda _msg: None)
    pairs = parse_dtypes(dtypes, device)
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    batch_size, seq_len = int(ids.shape[0]), int(ids.shape[1])
    models: dict[str, Any] = {}
    for label, resolved in pairs:
        say(f"building the composed model in {label}")
        m = compose(trunk, branch_dirs, device=device, dtype="float32" if resolved == INT8 else resolved)
        if resolved == INT8:
            quantize_layers(m, INT8)
        models[label] = m
    ref = models["float32"]
    branches = list(ref.branches)

    def call(m: Any) -> Callable[[], dict[str, Any]]:
        groups = [[m.branch(b.name) for b in g] for g in by_signature(branches).values()]

        def run() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for g in groups:
                out.update(m(ids, mask, types, g))
            return out
        return run

    calls = {k: call(m) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    rng = random.Random(seed)
    with torch.inference_mode():
        outputs = {k: fn() for k, fn in calls.items()}
        for r in range(warmup + rounds):
            order = list(calls)
            rng.shuffle(order)
            for k in order:
                _sync(device)
                t0 = time.perf_counter()
                calls[k]()
                _sync(device)
                if r >= warmup:
                    times[k].append(time.perf_counter() - t0)
            if r >= warmup:
                say(f"dtypes round {r - warmup + 1}/{rounds}: " + ", ".join(
                    f"{k} {1000 * times[k][-1]:.0f} ms" for k in calls))
    flops = composed_flops(ref, branches, batch_size, seq_len)
    from mtbranch.serve.cost import Shape

    layer = Shape.of_config(ref.trunk.config)
    shape = (min(batch_size * seq_len, 4096), layer.hidden, layer.intermediate)
    rows: dict[str, Any] = {}
    base = statistics.median(times["float32"])
    for label, resolved in pairs:
        say(f"matmul peak probe: {resolved} {shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]}")
        peak = matmul_peak(resolved, *shape, device=device)
        p50 = statistics.median(times[label])
        achieved = flops / p50 / 1e9
        diff = max(float((outputs[label][n].float() - outputs["float32"][n].float()).abs().max())
                   for n in outputs["float32"])
        rows[label] = {"dtype": resolved, "why": INT8 if resolved == INT8 else why(label, resolved, device),
                       "p50_ms": 1000 * p50, "mean_ms": 1000 * statistics.fmean(times[label]),
                       "rounds": len(times[label]), "throughput": batch_size / p50, "gflops": achieved,
                       "peak_gflops": peak["gflops"], "peak_probe": peak, "fraction_of_peak": achieved / peak["gflops"],
                       "speedup_vs_float32": base / p50, "max_abs_diff_vs_float32": diff}
    return {"flops_per_call": flops, "layers_run": layers_run(branches),
            "batch": [batch_size, seq_len], "dtypes": rows}


__all__ = ["COMPARE_CHOICES", "compare_dtypes", "composed_flops", "layer_flops", "layers_run", "matmul_peak",
           "parse_dtypes"]
