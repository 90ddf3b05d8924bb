"""Place a loaded composed model on its engine: ``backend`` (torch, onnxruntime, openvino, auto) x ``dtype``.

* ``torch``: the PyTorch model in ``dtype`` (``auto`` there: bf16 where the CPU multiplies it natively,
  :func:`mtbranch.spec.precision.resolve_dtype`).
* ``onnxruntime``: float32 only; the artifact's forward in ONNX Runtime (:mod:`mtbranch.backends.ort`), checked
  against torch at load. A failed export or check falls back to torch float32 with a warning.
* ``openvino``: the same export compiled by OpenVINO (:mod:`mtbranch.backends.ov`), ``dtype`` ``auto``: bfloat16
  where the CPU has native bf16 (torch's rule), else float32; checked against torch float32 at load (bf16 within
  :func:`mtbranch.backends.ov.within`). Not installed: a user error naming the extra; a failed export or
  check falls back to torch in the same dtype with a warning.
* ``auto`` (the default of load, predict, serve and Ray): the exact-enough candidates (torch float32; torch
  bfloat16 where the CPU has native bf16 matmuls, whose dev-metric changes are measured in docs/benchmarks.md;
  ONNX Runtime float32 and OpenVINO (bf16 where native, else float32), each when installed and checked) are
  timed on :data:`PROBES` (batch regimes, as ``batch x tokens``), interleaved, best of :data:`REPEATS`. The
  fastest wins each regime; between two measured regimes the boundary is their geometric mean in tokens per
  batch. The measurement is cached per artifact, tasks, CPU, threads and library versions
  (``~/.cache/mtbranch/backend-timings``), so only the first load on a machine pays for it (seconds). On a GPU,
  with ``quantize`` or with neither onnxruntime nor openvino, auto is torch with ``dtype``'s rule.

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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mtbranch.backends import AUTO, BACKENDS, DEFAULT_BACKEND, ONNXRUNTIME, OPENVINO, TORCH
from mtbranch.errors import MissingExtra, MtbranchError, UsageError

log = logging.getLogger("mtbranch")
PROBES: tuple[tuple[int, int], ...] = ((1, 16), (1, 128), (8, 64))  # (batch, tokens): the regimes timed
REPEATS = 3
ENV_BACKEND, ENV_DTYPE = "MTBRANCH_BACKEND", "MTBRANCH_DTYPE"  # a fleet's (or a test suite's) default
ENGINES = (ONNXRUNTIME, OPENVINO)  # the graph engines (the rest of a timings table: torch dtypes)


@dataclass(frozen=True)
class Rule:
    """Batches of up to ``up_to`` tokens (``batch x padded width``; None: any) run on ``engine``."""

    up_to: int | None
    engine: str


class Runtime:
    """The graph engines of a model (by name: onnxruntime, openvino) and the batch sizes each runs (the rest run in
    torch)."""

    def __init__(self, engines: dict[str, Any], rules: Sequence[Rule]) -> None:
        self.engines = dict(engines)
        self.rules = tuple(rules)

    @property
    def engine(self) -> Any:
        """The engine of the first rule that is not torch (the only one where a single engine is used)."""
        return next(self.engines[r.engine] for r in self.rules if r.engine in self.engines)

    def route(self, branches: Sequence[Any], input_ids: torch.Tensor) -> tuple[Any, str] | None:
        """The engine and graph (signature) to run this batch on, or None: torch runs it."""
        tokens = int(input_ids.numel())
        for rule in self.rules:
            if rule.up_to is None or tokens <= rule.up_to:
                engine = self.engines.get(rule.engine)
                signature = None if engine is None else engine.covers(branches)
                return None if signature is None else (engine, signature)
        return None

    def signature_for(self, branches: Sequence[Any], input_ids: torch.Tensor) -> str | None:
        """The graph to run for this batch, or None: torch runs it."""
        hit = self.route(branches, input_ids)
        return None if hit is None else hit[1]


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
    if backend == OPENVINO:
        return _openvino(model, device, dtype, quantize)
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
        from mtbranch.backends import ort, ov

        torch_only = ort.available()
        torch_only = f"auto: {torch_only}" if torch_only and ov.available() else None
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
    model.runtime = Runtime({ONNXRUNTIME: engine}, [Rule(None, ONNXRUNTIME)])
    return _record(model, ONNXRUNTIME, f"onnxruntime float32 (asked for; {why}; cache {engine.directory})",
                   {"max_diff": engine.max_diff})


def _openvino(model: Any, device: Any, dtype: str, quantize: str | None) -> Any:
    from mtbranch.backends import ov
    from mtbranch.spec.precision import AUTO as DAUTO
    from mtbranch.spec.precision import device_type, place_model, resolve_dtype

    if device_type(device) != "cpu" or quantize is not None:
        raise MtbranchError("the openvino backend runs on the CPU, without --quantize",
                            hint="drop --device/--quantize, or use --backend torch")
    resolved = resolve_dtype(DAUTO, device) if dtype == DAUTO else dtype
    if resolved not in ov.PRECISIONS:
        raise MtbranchError(f"the openvino backend runs float32 or bfloat16, not {dtype}",
                            hint="use --dtype auto, float32 or bfloat16, or --backend torch")
    if ov.available():
        raise MissingExtra("openvino", ["openvino"], "the openvino backend")
    model = place_model(model, device, "float32")  # the load check's reference is torch float32
    engine, why = ov.attach(model, torch.get_num_threads(), resolved)
    if engine is None:
        log.warning("openvino backend unavailable: %s; running torch %s", why, resolved)
        model = place_model(model, device, resolved)
        return _record(model, TORCH, f"torch {resolved} (openvino asked for, not usable: {why})", None)
    model.runtime = Runtime({OPENVINO: engine}, [Rule(None, OPENVINO)])
    return _record(model, OPENVINO, f"openvino {resolved} (asked for; {why}; cache {engine.directory})",
                   {"precision": resolved, **asdict(engine.checked)} if engine.checked else {"precision": resolved})


# -- auto: measure ------------------------------------------------------------------------------------
def _timings_key(model: Any, candidates: Sequence[str], versions: Sequence[str]) -> str:
    from mtbranch.backends.ort import lock_key
    from mtbranch.spec.precision import cpu_report

    parts = [lock_key(model), *versions, json.dumps(cpu_report(), sort_keys=True), str(torch.get_num_threads()),
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


def measure(model: Any, engines: dict[str, Any], candidates: Sequence[str]) -> dict[str, list[float]]:
    """Best-of-:data:`REPEATS` seconds per candidate (the graph engines, torch dtypes) and probe, interleaved.

    ``model`` is float32 on entry and on return (a bf16 candidate is timed on the model cast, then the float32
    weights are put back bit for bit)."""
    from mtbranch.spec.precision import place_model

    signature, branches = _largest_group(model)
    longest = model.max_length(branches)  # a trunk with fewer positions than a probe: its longest input instead
    inputs = [_probe_inputs(model, b, min(t, longest)) for b, t in PROBES]
    runs: dict[str, Any] = {"float32": lambda x: model(*x, branches)}
    for name, engine in engines.items():
        runs[name] = lambda x, engine=engine: engine.run(signature, *x)
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
    """The torch dtype (fewest total relative time over the probes) and the per-regime rules (the fastest of
    torch in that dtype and each graph engine timed; torch on a tie)."""
    torch_dtypes = [d for d in times if d not in ENGINES]
    fastest = [min(t[i] for t in times.values()) for i in range(len(PROBES))]
    dtype = min(torch_dtypes, key=lambda d: sum(t / f for t, f in zip(times[d], fastest, strict=True)))
    engines = [e for e in ENGINES if e in times]

    def seconds(engine: str, i: int) -> float:
        return times[dtype if engine == TORCH else engine][i]

    winners = [min([TORCH, *engines], key=lambda e: seconds(e, i)) for i in range(len(PROBES))]
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
              notes: str, ov_dtype: str) -> str:
    names = {ONNXRUNTIME: "onnxruntime float32", OPENVINO: f"openvino {ov_dtype}", TORCH: f"torch {dtype}"}
    if len(rules) == 1:
        pick = names[rules[0].engine]
    else:
        pick = ", ".join(f"{names[r.engine]} up to {r.up_to} tokens/batch" if r.up_to else f"{names[r.engine]} above"
                         for r in rules)
    shown = "; ".join(f"{b}x{t}: " + ", ".join(f"{n} {1000 * v[i]:.1f} ms" for n, v in times.items())
                      for i, (b, t) in enumerate(PROBES))
    return (f"auto: {pick} (fastest measured on this machine{' (cached)' if cached else ''}: {shown}; "
            f"{notes})")


def _optional(attach: Callable[..., tuple[Any, str]], *args: Any) -> tuple[Any, str]:
    """An engine auto may use: anything that keeps it from attaching (an unwritable cache, ...) leaves the model on
    torch with a warning, where an explicit ``--backend`` reports it as the error it is."""
    try:
        return attach(*args)
    except MtbranchError as exc:
        return None, f"not usable here ({exc})"


def _attach_engines(model: Any, candidates: Sequence[str]) -> tuple[dict[str, Any], list[str], str]:
    """The checked graph engines (by name), their libraries' versions (the timings key) and a note per engine.
    OpenVINO takes part only when installed (without it, auto is what it was before OpenVINO)."""
    from mtbranch.backends import ort, ov

    engines: dict[str, Any] = {}
    versions: list[str] = []
    notes: list[str] = []
    threads = torch.get_num_threads()
    ort_engine, note = _optional(ort.attach, model, threads)
    if ort_engine is None:
        log.warning("onnxruntime not used: %s", note)
    else:
        import onnxruntime

        engines[ONNXRUNTIME] = ort_engine
        versions.append(f"onnxruntime {onnxruntime.__version__}")
    notes.append(f"onnxruntime {note}")
    if ov.available() is None:
        ov_dtype = "bfloat16" if "bfloat16" in candidates else "float32"
        ov_engine, note = _optional(ov.attach, model, threads, ov_dtype)
        if ov_engine is None:
            log.warning("openvino not used: %s", note)
        else:
            engines[OPENVINO] = ov_engine
            versions.append(f"openvino {ov.version()} {ov_dtype}")
        notes.append(f"openvino {ov_dtype} {note}")
    return engines, versions, "; ".join(notes)


def _measured(model: Any, candidates: list[str]) -> Any:
    from mtbranch.io.atomic import write_text_atomic
    from mtbranch.spec.precision import place_model

    engines, versions, notes = _attach_engines(model, candidates)
    key = _timings_key(model, [*candidates, *engines], versions)
    path = _timings_path(key)
    cached = True
    try:
        times = json.loads(path.read_text(encoding="utf-8"))["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        cached = False
        times = measure(model, engines, candidates)
        try:
            write_text_atomic(path, json.dumps({"probes": PROBES, "seconds": times}, indent=2) + "\n")
        except (MtbranchError, OSError) as exc:  # a read-only cache: measure again next time
            log.warning("backend measurement not cached: %s", exc)
    dtype, rules = decide(times)
    model = place_model(model, "cpu", dtype)
    used = {r.engine for r in rules} - {TORCH}
    if used:
        model.runtime = Runtime({e: engines[e] for e in used}, rules)
    backend = rules[0].engine if len(rules) == 1 else AUTO
    ov_engine = engines.get(OPENVINO)
    ov_dtype = ov_engine.dtype if ov_engine is not None else "bfloat16"
    info = {"probes": [list(p) for p in PROBES], "seconds": times, "torch_dtype": dtype, "cached": cached,
            "rules": [{"up_to_tokens": r.up_to, "engine": r.engine} for r in rules], "timings_file": str(path)}
    return _record(model, backend, _describe(dtype, rules, times, cached, notes, ov_dtype), info)


__all__ = ["ENGINES", "ENV_BACKEND", "ENV_DTYPE", "PROBES", "Rule", "Runtime", "canonical_backend", "decide", "measure",
           "place"]
