"""ONNX Runtime as the engine of a loaded composed model (float32, CPU).

The artifact's forward is exported once per input signature (``single``, ``pair``) with torch's TorchScript
exporter and transformers' eager attention, the form ONNX Runtime's transformer optimizer recognizes: it fuses
every layer's attention (``Attention``), the embeddings (``EmbedLayerNormalization``), the residual + layer norms
(``SkipLayerNormalization``) and the GELUs (``BiasGelu``). A fork (hidden states read by several layers) hands
each reader its own copy, ``h + h[:1, :1, i:i+1] * 0``: the fuser needs one query/key/value reader per tensor,
and the distinct slices keep the copies from being merged again (the add costs one pass over ``h``).

The optimized graphs are cached in the user cache (``$MTBRANCH_CACHE``, else ``~/.cache/mtbranch``) under
``backends/<key>``, the key being the sha256 of the artifact's lock file (itself the hash of every file), the
tasks loaded and the torch / onnxruntime versions: the artifact directory is never written, so ``verify`` still
sees exactly the files of its lock. At load the engine's outputs are compared with the torch float32 model's on
:data:`PROBE_TEXTS`; over :data:`TOLERANCE` the engine is refused (the caller falls back to torch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtbranch.errors import MtbranchError

log = logging.getLogger("mtbranch")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FORMAT = 1  # bump when the exported graph changes: older cache entries are then never read
TOLERANCE = 1e-3  # max |onnxruntime - torch float32| of any head output on the probe inputs (seen: ~2e-5)
OPSET = 17
PROBE_TEXTS = [
    "a gripping, beautifully acted film that I would happily watch again",
    "bad",
    "Angela Merkel met Emmanuel Macron in Paris to discuss the future of the European Union .",
    "",
]
PROBE_PAIRS = ["A man is playing a guitar on stage.", "good", "Two leaders met in France.", "x"]


def available() -> str | None:
    """None when ONNX Runtime, onnx and the optimizer import; else why not (the ``[onnx]`` extra is missing)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        from onnxruntime.transformers import optimizer  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc.name}; pip install 'mtbranch[onnx]')"
    return None


class ForkGraph(nn.Module):
    """The forward of ``branches`` (one signature) as a tuple, each fork reader on its own copy of ``h``."""

    def __init__(self, model: Any, branches: Sequence[Any]) -> None:
        super().__init__()
        self.trunk = model.trunk
        self.branches = nn.ModuleList(branches)
        self.forks: list[Any] = list(branches)  # the same modules, typed as branches (ModuleList items are Modules)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        trunk = self.trunk
        hidden = trunk.embed(input_ids, token_type_ids, attention_mask)
        mask4d = trunk.mask(hidden, attention_mask)
        width = hidden.shape[-1]
        out: dict[str, torch.Tensor] = {}
        deepest = max(b.manifest.attach_depth for b in self.forks)
        for depth in range(deepest + 1):
            if depth:
                hidden = trunk.run_layer(depth, hidden, mask4d)
            for i, b in enumerate(self.forks):
                if b.manifest.attach_depth == depth:
                    k = i % width
                    out[b.name] = b(hidden + hidden[:1, :1, k:k + 1] * 0, attention_mask, mask4d)
        return tuple(out[b.name] for b in self.forks)


def lock_key(model: Any) -> str:
    """The artifact's identity for a cache entry: its lock (the hash of every file), the tasks loaded, torch."""
    if model.lock is None:  # composed in memory: no file hashes to key a cache entry by
        raise ValueError("a model composed in memory has no lock file to key its backend cache by")
    lock = json.dumps(model.lock.model_dump(mode="json"), sort_keys=True)
    return "\n".join([lock, ",".join(sorted(model.task_names)), torch.__version__])


def cache_key(model: Any, flavour: str = "fused") -> str:
    """``fused``: ONNX Runtime's optimized graphs (keyed by its version too); ``raw``: the export as is."""
    parts = [str(FORMAT), flavour, lock_key(model)]
    if flavour == "fused":
        import onnxruntime

        parts.append(onnxruntime.__version__)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def cache_dir(model: Any, flavour: str = "fused") -> Path:
    from mtbranch.trunk.fingerprint import cache_dir as root

    return root() / "backends" / cache_key(model, flavour)


def export_raw(model: Any, branches: Sequence[Any], path: Path) -> None:
    """Export ``branches``' forward (one signature) to ``path``: standard ONNX ops, eager attention."""
    from mtbranch.export.onnx import encode
    from mtbranch.spec.precision import set_attention

    graph = ForkGraph(model, branches).eval()
    example = encode(model, PROBE_TEXTS[:2], PROBE_PAIRS[:2] if _signature(branches) == "pair" else None,
                     model.max_length(branches))
    previous = model.attention
    set_attention(model, "eager")  # the matmul + softmax pattern the fuser matches
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer warnings: not actionable
            torch.onnx.export(graph, tuple(example[k] for k in INPUTS), str(path), input_names=list(INPUTS),
                              output_names=[b.name for b in branches],
                              dynamic_axes={k: {0: "batch", 1: "sequence"} for k in INPUTS},
                              opset_version=OPSET, dynamo=False)
    finally:
        set_attention(model, previous)


def _fuse(model: Any, path: Path) -> dict[str, int]:
    """Optimize ``path`` in place with ONNX Runtime's transformer optimizer; returns the fused operator counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = model.trunk.config
    heads, hidden = int(getattr(cfg, "num_attention_heads", 0)), int(getattr(cfg, "hidden_size", 0))
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    opt = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    opt.save_model_to_file(str(path))
    return {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}


def _signature(branches: Sequence[Any]) -> str:
    return str(branches[0].manifest.tokenizer.input_signature)


def groups(model: Any) -> dict[str, list[Any]]:
    """The model's branches by input signature (as composition.model.by_signature; that layer sits above this one).
    ``shared`` pair branches are in no graph: they run in torch (their two texts' passes and combining head)."""
    out: dict[str, list[Any]] = {}
    for b in model.branches:
        if b.shared_pair:
            continue
        out.setdefault(b.manifest.tokenizer.input_signature, []).append(b)
    return out


def export_cached(model: Any, flavour: str = "fused") -> Path:
    """The cache directory holding ``<signature>.onnx`` for each signature of ``model`` (exported if missing):
    ``fused`` for ONNX Runtime, ``raw`` (unfused, standard ops) for OpenVINO (mtbranch.backends.ov)."""
    from mtbranch.io.atomic import atomic_directory

    target = cache_dir(model, flavour)
    if (target / "backend.json").is_file():
        return target
    exporter = "torch.onnx.export(dynamo=False)" + (" + onnxruntime.transformers optimizer" if flavour == "fused"
                                                   else "")
    info: dict[str, Any] = {"format": FORMAT, "flavour": flavour, "tasks": model.task_names,
                            "torch": torch.__version__, "exporter": exporter, "fused": {}}
    with atomic_directory(target) as tmp:
        for signature, branches in groups(model).items():
            export_raw(model, branches, tmp / f"{signature}.onnx")
            if flavour == "fused":
                info["fused"][signature] = _fuse(model, tmp / f"{signature}.onnx")
        (tmp / "backend.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return target


class OrtEngine:
    """One ONNX Runtime session per signature; runs a signature's branches and returns torch tensors."""

    def __init__(self, model: Any, directory: Path, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.directory = directory
        self.info = json.loads((directory / "backend.json").read_text(encoding="utf-8"))
        self.sessions: dict[str, Any] = {}
        self.outputs: dict[str, list[str]] = {}
        self.max_diff: float | None = None  # the load check's largest difference from torch float32
        self.exported: dict[str, Any] = {}  # name -> the branch module exported (identity: a swapped branch differs)
        for signature, branches in groups(model).items():
            sess = ort.InferenceSession(str(directory / f"{signature}.onnx"), opts,
                                        providers=["CPUExecutionProvider"])
            self.sessions[signature] = sess
            self.outputs[signature] = [o.name for o in sess.get_outputs()]
            self.exported.update({b.name: b for b in branches})

    def covers(self, branches: Sequence[Any]) -> str | None:
        """The signature whose graph computes exactly ``branches`` (None: run them in torch). A subset runs in torch:
        the graph would compute every task of its signature."""
        if not branches or any(self.exported.get(b.name) is not b for b in branches):
            return None
        signature = _signature(branches)
        names = self.outputs.get(signature)
        return signature if names is not None and set(names) == {b.name for b in branches} else None

    def run(self, signature: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
            token_type_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
        ids = input_ids.cpu()
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.cpu()
        types = torch.zeros_like(ids) if token_type_ids is None else token_type_ids.cpu()
        feeds = {"input_ids": ids.long().numpy(), "attention_mask": mask.long().numpy(),
                 "token_type_ids": types.long().numpy()}
        got = self.sessions[signature].run(None, feeds)
        return {n: torch.from_numpy(v) for n, v in zip(self.outputs[signature], got, strict=True)}


@dataclass(frozen=True)
class Agreement:
    """An engine against torch float32 on the probe inputs (real tokens only)."""

    max_diff: float  # max |engine - torch| over every head output
    max_scaled: float  # the same, each head's over max(1, its largest |torch| output): bf16 errors scale with it
    labels_equal: float  # share of argmax labels equal (every head but regression)


def compare(engine: Any, model: Any) -> Agreement:
    """``engine``'s outputs against ``model``'s (torch float32) on :data:`PROBE_TEXTS` / :data:`PROBE_PAIRS`."""
    from mtbranch.export.onnx import encode

    worst, scaled, same, total = 0.0, 0.0, 0, 0
    for signature, branches in groups(model).items():
        pairs = PROBE_PAIRS if signature == "pair" else None
        enc = encode(model, PROBE_TEXTS, pairs, model.max_length(branches))
        ref = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], branches)
        got = engine.run(signature, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        real = enc["attention_mask"].bool()
        for b in branches:
            g, r = got[b.name].float(), ref[b.name].float()
            if g.dim() == 3:  # token heads: real tokens only
                g, r = g[real], r[real]
            diff = float((g - r).abs().max())
            worst = max(worst, diff)
            scaled = max(scaled, diff / max(1.0, float(r.abs().max())))
            if b.manifest.head.type != "regression" and g.shape[-1] > 1:
                same += int((g.argmax(-1) == r.argmax(-1)).sum())
                total += int(g.argmax(-1).numel())
    return Agreement(worst, scaled, same / total if total else 1.0)


def check(engine: OrtEngine, model: Any) -> float:
    """Max |onnxruntime - torch| over every head output on the probe inputs (real tokens only)."""
    return compare(engine, model).max_diff



def open_cached(model: Any, flavour: str, make: Any) -> Any:
    """``make(directory)`` on the cached graphs; a cache entry that does not open (a file damaged or removed by
    hand) is exported again, once."""
    directory = export_cached(model, flavour)
    try:
        return make(directory)
    except Exception as exc:
        log.warning("ONNX cache %s unusable (%s): exporting again", directory, type(exc).__name__)
        (directory / "backend.json").unlink(missing_ok=True)
        return make(export_cached(model, flavour))


def not_exportable(model: Any) -> str | None:
    """Why ``model`` has no ONNX graph for an engine to run (ONNX Runtime's or OpenVINO's), or None."""
    from mtbranch.trunk.families import record_for

    family = record_for(model.trunk.config.model_type)
    if not family.onnx:
        return f"the {family.name} trunk family has no checked ONNX export"
    return None if model.branches else "no branches"


def _engine(model: Any, threads: int) -> OrtEngine:
    engine: OrtEngine = open_cached(model, "fused", lambda d: OrtEngine(model, d, threads))
    return engine


def attach(model: Any, threads: int) -> tuple[OrtEngine | None, str]:
    """The checked engine for ``model`` (float32, CPU), or None and why not (a warning's text)."""
    missing = available() or not_exportable(model)
    if missing:
        return None, missing
    try:
        engine = _engine(model, threads)
        diff = check(engine, model)
    except MtbranchError:
        raise
    except Exception as exc:  # an exporter / optimizer / runtime failure: the torch path still answers
        return None, f"ONNX export or session failed ({type(exc).__name__}: {str(exc)[:200]})"
    if not diff <= TOLERANCE:
        return None, f"ONNX Runtime differs from torch by {diff:.2e} > {TOLERANCE:g} on the probe inputs"
    engine.max_diff = diff
    return engine, f"checked: max |diff| {diff:.1e} <= {TOLERANCE:g} vs torch float32"


__all__ = ["TOLERANCE", "Agreement", "OrtEngine", "attach", "available", "cache_dir", "check", "compare",
           "export_cached", "export_raw", "groups", "lock_key", "open_cached"]
