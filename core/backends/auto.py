"""Place a loaded composed model on its engine: ``backend`` (torch, onnxruntime, auto) x ``dtype``.

* ``torch``: the PyTorch model in ``dtype`` (``auto`` there: bf16 where the CPU multiplies it natively,
  :func:`mtbranch.spec.precision.resolve_dtype`).
* ``onnxruntime``: float32 only; the artifact's forward in ONNX Runtime (:mod:`mtbranch.backends.ort`), checked
  against torch at load. A failed export or check falls back to torch float32 with a warning.
* ``auto`` (the default of load, predict, serve and Ray): the exact-enough candidates (torch float32; torch
  bfloat16 where the CPU has native bf16 matmuls, whose dev-metric changes are measured in docs/benchmarks.md;
  ONNX Runtime float32 when installed and checked) are timed on :data:`PROBES` (batch regimes, as ``batch x
  tokens``), interleaved, best of :data:`REPEATS`. The fastest wins each regime; between two measured regimes the
  boundary is their geometric mean in tokens per batch. The measurement is cached per artifact, tasks, CPU,
  threads and library versions (``~/.cache/mtbranch/backend-timings``), so only the first load on a machine pays
  for it (seconds). On a GPU, with ``quantize`` or without onnxruntime, auto is torch with ``dtype``'s rule.

What was picked and why is ``model.backend_reason`` (``mtbranch predict -v``, ``inspect --runtime``, serve's start
line) and ``model.backend_info`` (the measurement).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mtbranch.backends import AUTO, BACKENDS, DEFAULT_BACKEND, ONNXRUNTIME, TORCH
from mtbranch.errors import MtbranchError, UsageError

log = logging.getLogger("mtbranch")
PROBES: tuple[tuple[int, int], ...] = ((1, 16), (1, 128), (8, 64))  # (batch, tokens): the regimes timed
REPEATS = 3
ENV_BACKEND, ENV_DTYPE = "MTBRANCH_BACKEND", "MTBRANCH_DTYPE"  # a fleet's (or a test suite's) default


@dataclass(frozen=True)
class Rule:
    """Batches of up to ``up_to`` tokens (``batch x padded width``; None: any) run on ``engine``."""

    up_to: int | None
    engine: str


class Runtime:
    """The ONNX Runtime engine of a model and the batch sizes it runs (the rest run in torch)."""

    def __init__(self, engine: Any, rules: Sequence[Rule]) -> None:
        self.engine = engine
        self.rules = tuple(rules)

    def signature_for(self, branches: Sequence[Any], input_ids: torch.Tensor) -> str | None:
        """The ONNX graph to run for this batch, or None: torch runs it."""
        tokens = int(input_ids.numel())
        for rule in self.rules:
            if rule.up_to is None or tokens <= rule.up_to:
                return self.engine.covers(branches) if rule.engine == ONNXRUNTIME else None
        return None


def canonical_backend(name: Any) -> str:
    if name is None:
        name = os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}", hint=f"use one of {', '.join(BACKENDS)}")
    return str(name)


def default_dtype(dtype: Any) -> Any:
    """load's dtype default: ``auto`` (compose and the bench keep float32: mtbranch.spec.precision.DEFAULT_DTYPE)."""
    return dtype if dtype is not None else (os.environ.get(ENV_DTYPE) or AUTO)


def place(model: Any, *, device: Any = "cpu", dtype: Any = None, backend: Any = None,
          quantize: str | None = None) -> Any:
    """Put ``model`` (float32, as built) on its engine and compute dtype; see the module docstring."""
    from mtbranch.spec.precision import AUTO as DAUTO
    from mtbranch.spec.precision import canonical, device_type, place_model, resolve_dtype

    backend = canonical_backend(backend)
    dtype = canonical(default_dtype(dtype))
    cpu = device_type(device) == "cpu"
    if backend == ONNXRUNTIME:
        if not cpu or quantize is not None:
            raise MtbranchError("the onnxruntime backend runs float32 on the CPU, without --quantize",
                                hint="drop --device/--quantize, or use --backend torch")
        if dtype not in (DAUTO, "float32"):
            raise MtbranchError(f"the onnxruntime backend runs float32, not {dtype}",
                                hint="use --dtype float32 (or auto), or --backend torch for bfloat16")
        return _onnxruntime(place_model(model, device, "float32"))
    torch_only = None
    if backend == TORCH:
        torch_only = "asked for"
    elif not cpu:
        torch_only = f"auto: device {device}"
    elif quantize is not None:
        torch_only = "auto: --quantize int8 runs in torch"
    elif dtype not in (DAUTO, "float32"):
        torch_only = f"auto: --dtype {dtype} runs in torch"
    else:
        from mtbranch.backends.ort import available

        torch_only = available()
        torch_only = f"auto: {torch_only}" if torch_only else None
    if torch_only is not None:
        model = place_model(model, device, dtype, quantize=quantize)
        return _record(model, TORCH, f"torch {model.compute_dtype_reason} ({torch_only})", None)
    candidates = ["float32"]
    if dtype == DAUTO and resolve_dtype(DAUTO, device) == "bfloat16":
        candidates.append("bfloat16")
    return _measured(place_model(model, device, "float32"), candidates)


def _record(model: Any, backend: str, reason: str, info: dict[str, Any] | None) -> Any:
    model.backend = backend
    model.backend_reason = reason
    model.backend_info = info
    return model


def _onnxruntime(model: Any) -> Any:
    from mtbranch.backends.ort import attach

    engine, why = attach(model, torch.get_num_threads())
    if engine is None:
        log.warning("onnxruntime backend unavailable: %s; running torch float32", why)
        return _record(model, TORCH, f"torch float32 (onnxruntime asked for, not usable: {why})", None)
    model.runtime = Runtime(engine, [Rule(None, ONNXRUNTIME)])
    return _record(model, ONNXRUNTIME, f"onnxruntime float32 (asked for; {why}; cache {engine.directory})",
                   {"max_diff": engine.max_diff})


# -- auto: measure ------------------------------------------------------------------------------------
def _timings_key(model: Any, candidates: Sequence[str]) -> str:
    from mtbranch.backends.ort import cache_key
    from mtbranch.spec.precision import cpu_report

    parts = [cache_key(model), json.dumps(cpu_report(), sort_keys=True), str(torch.get_num_threads()),
             ",".join(candidates), json.dumps(PROBES), str(REPEATS)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _timings_path(key: str) -> Any:
    from mtbranch.trunk.fingerprint import cache_dir

    return cache_dir() / "backend-timings" / f"{key}.json"


def _probe_inputs(model: Any, batch: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(batch * 1000 + tokens)
    vocab = int(model.trunk.config.vocab_size)
    ids = torch.randint(min(999, vocab - 1), vocab, (batch, tokens), generator=gen)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


def _largest_group(model: Any) -> tuple[str, list[Any]]:
    from mtbranch.backends.ort import groups

    return max(groups(model).items(), key=lambda kv: sum(b.manifest.num_layers + 1 for b in kv[1]))


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(model: Any, engine: Any, candidates: Sequence[str]) -> dict[str, list[float]]:
    """Best-of-:data:`REPEATS` seconds per candidate (``onnxruntime``, torch dtypes) and probe, interleaved.

    ``model`` is float32 on entry and on return (a bf16 candidate is timed on the model cast, then the float32
    weights are put back bit for bit)."""
    from mtbranch.spec.precision import place_model

    signature, branches = _largest_group(model)
    inputs = [_probe_inputs(model, b, t) for b, t in PROBES]
    runs: dict[str, Any] = {"float32": lambda x: model(*x, branches)}
    if engine is not None:
        runs[ONNXRUNTIME] = lambda x: engine.run(signature, *x)
    best: dict[str, list[float]] = {name: [math.inf] * len(PROBES) for name in [*runs, *candidates[1:]]}

    def rounds(names: Sequence[str]) -> None:
        for x in inputs[:1]:
            for n in names:
                runs[n](x)  # warm-up: first-call allocations and ORT's kernel selection
        for _ in range(REPEATS):
            for i, x in enumerate(inputs):
                for n in names:
                    best[n][i] = min(best[n][i], _time(lambda n=n, x=x: runs[n](x)))

    rounds(list(runs))
    if "bfloat16" in candidates:
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        place_model(model, "cpu", "bfloat16")
        runs["bfloat16"] = lambda x: model(*x, branches)
        try:
            rounds(["bfloat16"])
        finally:
            place_model(model, "cpu", "float32")
            model.load_state_dict(saved)
    return best


def decide(times: dict[str, list[float]]) -> tuple[str, list[Rule]]:
    """The torch dtype (fewest total relative time over the probes) and the per-regime rules."""
    torch_dtypes = [d for d in times if d != ONNXRUNTIME]
    fastest = [min(t[i] for t in times.values()) for i in range(len(PROBES))]
    dtype = min(torch_dtypes, key=lambda d: sum(t / f for t, f in zip(times[d], fastest, strict=True)))
    winners = [ONNXRUNTIME if ONNXRUNTIME in times and times[ONNXRUNTIME][i] < times[dtype][i] else TORCH
               for i in range(len(PROBES))]
    rules: list[Rule] = []
    sizes = [b * t for b, t in PROBES]
    for i, w in enumerate(winners):
        up_to = None if i == len(winners) - 1 else int(math.sqrt(sizes[i] * sizes[i + 1]))
        if rules and rules[-1].engine == w:
            rules[-1] = Rule(up_to, w)
        else:
            rules.append(Rule(up_to, w))
    return dtype, rules


def _describe(dtype: str, rules: Sequence[Rule], times: dict[str, list[float]], cached: bool,
              ort_note: str) -> str:
    names = {ONNXRUNTIME: "onnxruntime float32", TORCH: f"torch {dtype}"}
    if len(rules) == 1:
        pick = names[rules[0].engine]
    else:
        pick = ", ".join(f"{names[r.engine]} up to {r.up_to} tokens/batch" if r.up_to else f"{names[r.engine]} above"
                         for r in rules)
    shown = "; ".join(f"{b}x{t}: " + ", ".join(f"{n} {1000 * v[i]:.1f} ms" for n, v in times.items())
                      for i, (b, t) in enumerate(PROBES))
    return (f"auto: {pick} (fastest measured on this machine{' (cached)' if cached else ''}: {shown}; "
            f"onnxruntime {ort_note})")


def _measured(model: Any, candidates: list[str]) -> Any:
    from mtbranch.backends.ort import attach
    from mtbranch.io.atomic import write_text_atomic
    from mtbranch.spec.precision import place_model

    engine, ort_note = attach(model, torch.get_num_threads())
    if engine is None:
        log.warning("onnxruntime not used: %s", ort_note)
    key = _timings_key(model, [*candidates, *([ONNXRUNTIME] if engine else [])])
    path = _timings_path(key)
    cached = True
    try:
        times = json.loads(path.read_text(encoding="utf-8"))["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        cached = False
        times = measure(model, engine, candidates)
        try:
            write_text_atomic(path, json.dumps({"probes": PROBES, "seconds": times}, indent=2) + "\n")
        except MtbranchError as exc:  # a read-only cache: measure again next time
            log.warning("backend measurement not cached: %s", exc)
    dtype, rules = decide(times)
    model = place_model(model, "cpu", dtype)
    uses_ort = any(r.engine == ONNXRUNTIME for r in rules)
    if uses_ort:
        model.runtime = Runtime(engine, rules)
    backend = ONNXRUNTIME if uses_ort and len(rules) == 1 else (TORCH if not uses_ort else AUTO)
    info = {"probes": [list(p) for p in PROBES], "seconds": times, "torch_dtype": dtype, "cached": cached,
            "rules": [{"up_to_tokens": r.up_to, "engine": r.engine} for r in rules], "timings_file": str(path)}
    return _record(model, backend, _describe(dtype, rules, times, cached, ort_note), info)


__all__ = ["ENV_BACKEND", "ENV_DTYPE", "PROBES", "Rule", "Runtime", "canonical_backend", "decide", "measure",
           "place"]
