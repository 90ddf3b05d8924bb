"""``mtbranch bench``: the composed model against the ways teams serve the same tasks today, in one run.

Every setup answers every task of the scenario for the same token batch, timed interleaved (a shuffled
order each round) so that a busy machine slows them alike and the ratios stay meaningful:

* ``composed``   one ComposedModel: the trunk once per input signature, each branch forked at its depth.
* ``standalone`` the same branches unmerged: one model per task (trunk layers 1..d + the branch), run one
  after the other.
* ``full``       single-task serving as teams deploy it today: one fine-tuned model per task with every
  trunk layer and a head (transformers' ``*ForSequenceClassification`` / ``*ForTokenClassification``).
* ``subset``     the composed model asked for its cheapest task only.
* ``one-branch`` vs ``hf-reference``: one branch composed vs transformers' ``BertForSequenceClassification``
  holding the same weights (time ratio and max abs difference of the logits).

The layer counts are the paper's overhead metric; "efficiency" is the measured speedup over the ideal
(layer-count) speedup. Synthetic scenarios use random weights (speed does not depend on their values).
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtbranch.errors import MtbranchError, UsageError


@dataclass(frozen=True)
class BranchPlan:
    name: str
    depth: int
    layers: int
    head: str = "classification"  # classification | regression | token_classification
    labels: int = 2


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    branches: tuple[BranchPlan, ...] = ()
    trunk: dict[str, int] = field(default_factory=dict)  # synthetic BERT config; empty = installed plugins
    subset_task: str | None = None
    reference_task: str | None = None

    @property
    def synthetic(self) -> bool:
        return bool(self.trunk)


BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 30522, "max_position_embeddings": 512}

SCENARIOS: dict[str, Scenario] = {
    "paper-mixed": Scenario(
        "paper-mixed",
        "8 GLUE-like branches with the (depth, layers) of the paper's Table 2 'Ours (mixed)' on a 12-layer, "
        "768-hidden trunk: 7 + 26 = 33 of 96 layers",
        branches=(BranchPlan("qnli", 2, 3), BranchPlan("rte", 7, 5), BranchPlan("qqp", 2, 1),
                  BranchPlan("mnli", 4, 3, labels=3), BranchPlan("sst2", 6, 2), BranchPlan("mrpc", 7, 3),
                  BranchPlan("cola", 4, 8), BranchPlan("stsb", 4, 1, head="regression", labels=1)),
        trunk=BERT_BASE, subset_task="qqp", reference_task="cola"),
    "xiaoai-21": Scenario(
        "xiaoai-21",
        "21 branches on 8 shared frozen layers, 40 layers in all (paper, appendix E): 11 tasks with 2 layers, "
        "10 with 1, on a 12-layer, 768-hidden trunk",
        branches=tuple(BranchPlan(f"task{i:02d}", 8, 2 if i < 11 else 1) for i in range(21)),
        trunk=BERT_BASE, subset_task="task20", reference_task="task00"),
    "real": Scenario("real", "the installed example plugins' branches on their installed trunk (real weights)"),
}


# -- building the scenario on disk (the real load path) ---------------------------------------------------
def _synthetic_trunk(path: Path, config: dict[str, int], seed: int) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    if (path / "model.safetensors").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(specials + [f"w{i}" for i in range(config["vocab_size"] - len(specials))]) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=config["max_position_embeddings"])
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**config))  # transformers' own init: realistic magnitudes, no denormals
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def _synthetic_branches(trunk: Any, tokenizer: Any, plans: Sequence[BranchPlan], root: Path,
                        seq_len: int) -> list[tuple[Path, str]]:
    from mtbranch.branch.factory import branch_manifest, init_from_trunk
    from mtbranch.branch.model import BranchModule, save_branch
    from mtbranch.plugins.manager import PluginManager
    from mtbranch.spec.heads import ClassificationHead, RegressionHead, TokenClassificationHead

    pm = PluginManager(autoload=False)
    out = []
    for p in plans:
        d = root / p.name
        if not (d / "manifest.json").is_file():
            head: Any = (RegressionHead() if p.head == "regression" else
                         TokenClassificationHead(labels=["O", "B-X", "I-X"]) if p.head == "token_classification"
                         else ClassificationHead(labels=[f"l{i}" for i in range(p.labels)]))
            m = branch_manifest(trunk, tokenizer, name=p.name, attach_depth=p.depth, num_layers=p.layers,
                                head=head, pooling="cls", projection=True, max_length=seq_len)
            module = BranchModule(m, pm.head_type(head.type))
            init_from_trunk(module, trunk)  # the trunk's own layers d+1..d+n, as partial fine-tuning starts
            save_branch(module, d)
        out.append((d, "bench"))
    return out


def prepare(scenario: Scenario, workdir: Path, *, seq_len: int, seed: int = 0) -> tuple[Any, list[tuple[Path, str]]]:
    """The trunk source and branch directories the scenario runs on (built once under ``workdir``)."""
    from mtbranch.trunk.source import load_trunk_source
    from mtbranch.trunk.tokenizer import load_tokenizer

    if not scenario.synthetic:
        from mtbranch.plugins.manager import get_plugin_manager
        from mtbranch.trunk.choose import choose_trunk
        from mtbranch.validation.sources import collect_branches

        pm = get_plugin_manager()
        branches = collect_branches(plugin_manager=pm)
        if not branches:
            raise UsageError("the 'real' scenario needs installed branch plugins",
                             hint="pip install the example plugins (make demo), or pick a synthetic scenario")
        return choose_trunk(None, branches, pm, required=True), branches
    tdir = _synthetic_trunk(workdir / scenario.name / "trunk", scenario.trunk, seed)
    trunk = load_trunk_source(tdir)
    return trunk, _synthetic_branches(trunk, load_tokenizer(tdir), scenario.branches,
                                      workdir / scenario.name / "branches", seq_len)


# -- the setups -------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """One way of serving the scenario: a single call answering every task, or one model call per task."""

    name: str
    layers: int  # transformer layers run to answer every task once (the paper's overhead metric)
    weights_bytes: int
    run: Callable[[], Any] | None = None
    per_task: dict[str, Callable[[], Any]] = field(default_factory=dict)


def _bytes(modules: Sequence[Any]) -> int:
    seen: dict[int, int] = {}
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def _composed_call(model: Any, selected: Sequence[Any], batch: dict[str, Any]) -> Callable[[], Any]:
    """Answer ``selected`` as predict() does: one trunk pass per input signature (a pair task needs its own)."""
    from mtbranch.composition.model import by_signature

    groups = list(by_signature(selected).values())
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    return lambda: [model(ids, mask, types, g) for g in groups]


def _composed_layers(selected: Sequence[Any]) -> int:
    """Layers run: per input signature the trunk to that group's deepest branch, plus every branch's layers."""
    from mtbranch.composition.model import by_signature

    trunk = sum(max(b.manifest.attach_depth for b in g) for g in by_signature(selected).values())
    return trunk + sum(b.manifest.num_layers for b in selected)


def build_setups(trunk: Any, branch_dirs: list[tuple[Path, str]], batch: dict[str, Any], *,
                 device: str, dtype: Any, subset_task: str | None,
                 reference_task: str | None) -> tuple[Any, dict[str, Setup]]:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    from mtbranch.branch.model import load_branch
    from mtbranch.composition.artifact import compose
    from mtbranch.composition.model import ComposedModel
    from mtbranch.trunk.model import load_trunk

    hf_logging.set_verbosity_error()  # "newly initialized heads" is expected for the single-task baseline
    hf_logging.disable_progress_bar()
    composed = compose(trunk, branch_dirs, device=device, dtype=dtype)
    branches = list(composed.branches)
    n_full = trunk.num_layers
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]

    setups: dict[str, Setup] = {}
    setups["composed"] = Setup("composed", _composed_layers(branches), _bytes([composed]),
                               _composed_call(composed, branches, batch))

    standalone = {}
    for b in branches:
        m = ComposedModel(load_trunk(trunk, b.manifest.attach_depth), [load_branch(b.artifact_path)],
                          composed.tokenizer).to(device=device, dtype=dtype)
        standalone[b.name] = m
    setups["standalone"] = Setup(
        "standalone", sum(b.manifest.attach_depth + b.manifest.num_layers for b in branches),
        _bytes(list(standalone.values())), per_task={k: _call(m, ids, mask, types) for k, m in standalone.items()})

    full = {}
    for b in branches:
        head = b.manifest.head
        auto = AutoModelForTokenClassification if head.type == "token_classification" \
            else AutoModelForSequenceClassification
        hf = auto.from_pretrained(str(trunk.path), num_labels=head.num_outputs, attn_implementation="sdpa",
                                  use_safetensors=True)
        full[b.name] = hf.to(device=device, dtype=dtype).eval()
    setups["full"] = Setup("full", n_full * len(branches), _bytes(list(full.values())),
                           per_task={k: _call(m, ids, mask, types, hf=True) for k, m in full.items()})

    if subset_task:
        b = composed.branch(subset_task)
        setups["subset"] = Setup(f"subset ({subset_task})", _composed_layers([b]),
                                 _bytes([composed]), _composed_call(composed, [b], batch))
    if reference_task:
        b = composed.branch(reference_task)
        one = standalone[reference_task]
        hf = hf_reference(one, b).to(device=device, dtype=dtype)
        layers = b.manifest.attach_depth + b.manifest.num_layers
        setups["one-branch"] = Setup(f"one-branch ({reference_task})", layers, _bytes([one]),
                                     _call(one, ids, mask, types))
        setups["hf-reference"] = Setup("hf-reference", layers, _bytes([hf]), _call(hf, ids, mask, types, hf=True))
    return composed, setups


def _call(model: Any, ids: Any, mask: Any, types: Any, *, hf: bool = False) -> Callable[[], Any]:
    if hf:
        return lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    return lambda: model(ids, mask, types)


def hf_reference(one: Any, branch: Any) -> Any:
    """transformers' ``*ForSequenceClassification`` with the trunk layers 1..d + the branch's layers, pooler and
    classifier: the model a team would have trained and served for this task alone."""
    from transformers import AutoModelForSequenceClassification

    m = branch.manifest
    if not (branch.sequence_level and m.pooling == "cls" and m.projection and m.tokenizer.input_signature == "single"):
        raise UsageError(f"branch {branch.name!r} is not a [CLS] + pooler sequence head",
                         hint="the transformers reference needs pooling 'cls' with projection")
    cfg = one.trunk.config.__class__(**{**one.trunk.config.to_dict(),
                                         "num_hidden_layers": m.attach_depth + m.num_layers,
                                         "num_labels": m.head.num_outputs})
    cfg._attn_implementation = "sdpa"
    hf = AutoModelForSequenceClassification.from_config(cfg)
    base = getattr(hf, hf.base_model_prefix)
    state = {f"embeddings.{k}": v for k, v in one.trunk.embeddings.state_dict().items()}
    for k, layer in enumerate([*one.trunk.layers, *branch.layers]):
        state.update({f"encoder.layer.{k}.{n}": v for n, v in layer.state_dict().items()})
    state.update({f"pooler.dense.{n}": v for n, v in branch.pooler.dense.state_dict().items()})
    base.load_state_dict(state, strict=True)
    hf.classifier.load_state_dict(branch.head.classifier.state_dict())
    return hf.eval()


# -- timing -----------------------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _stats(times: list[float], batch_size: int) -> dict[str, float]:
    qs = sorted(times)

    def pct(p: float) -> float:  # nearest-rank percentile: honest for a handful of rounds
        return qs[min(len(qs), max(1, math.ceil(p / 100 * len(qs)))) - 1]

    mean = statistics.fmean(times)
    return {"mean_ms": 1000 * mean, "p50_ms": 1000 * statistics.median(times), "p99_ms": 1000 * pct(99),
            "throughput": batch_size / mean, "rounds": len(times)}


def make_batch(batch_size: int, seq_len: int, vocab_size: int, device: str, seed: int = 0) -> dict[str, Any]:
    """Random token ids framed as [CLS] ... [SEP], no padding: speed does not depend on the ids."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(1000, vocab_size // 2), vocab_size, (batch_size, seq_len), generator=g)
    ids[:, 0], ids[:, -1] = 101 % vocab_size, 102 % vocab_size
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "token_type_ids": torch.zeros_like(ids).to(device)}


def run_bench(scenario: str | Scenario = "paper-mixed", *, batch_size: int = 32, seq_len: int = 64,
              rounds: int = 5, warmup: int = 1, threads: int | None = None, device: str = "cpu",
              dtype: str | None = None, workdir: str | os.PathLike[str] | None = None, seed: int = 0,
              task_curve: bool = True, load_check: bool = True,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one scenario; returns the JSON-able result (see docs/benchmarks.md)."""
    import torch

    from mtbranch.spec.dtypes import torch_dtype

    sc = SCENARIOS.get(scenario) if isinstance(scenario, str) else scenario
    if sc is None:
        raise UsageError(f"unknown scenario {scenario!r}", hint=f"choose one of {', '.join(SCENARIOS)}")
    say = progress or (lambda _msg: None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mtbranch-bench-")
        workdir = tmp.name
    try:
        say(f"preparing {sc.name} under {workdir}")
        trunk, dirs = prepare(sc, Path(workdir), seq_len=seq_len, seed=seed)
        batch = make_batch(batch_size, seq_len, int(trunk.config["vocab_size"]), device, seed)
        say("building setups (composed, standalone, full single-task, transformers reference)")
        composed, setups = build_setups(trunk, dirs, batch, device=device, dtype=torch_dtype(dtype),
                              subset_task=sc.subset_task, reference_task=sc.reference_task)
        with torch.inference_mode():  # every setup, the transformers models included, runs without autograd
            result = _measure(sc, setups, batch_size, seq_len, rounds, warmup, device, seed, say)
        result["tasks"] = len(composed.branches)
        result["machine"] = machine_info(device)
        result["config"] = {"batch_size": batch_size, "seq_len": seq_len, "rounds": rounds, "warmup": warmup,
                            "threads": torch.get_num_threads(), "device": device, "dtype": dtype or "float32",
                            "seed": seed}
        if "hf-reference" in setups:
            with torch.inference_mode():
                a, b = setups["one-branch"].run(), setups["hf-reference"].run()
            result["reference"] = {"task": sc.reference_task, "max_abs_diff": float((a[sc.reference_task]
                                                                                    - b).abs().max()),
                                   **result["ratios"].pop("one_branch_vs_hf")}
        if task_curve:
            say("time vs number of tasks")
            result["task_curve"] = _task_curve(composed, result["setups"], batch, device, max(1, min(3, rounds)))
        if load_check:
            from mtbranch.composition.artifact import save_composed

            say("load check (fresh processes: resident memory and load time)")
            artifact = Path(workdir) / sc.name / "composed"
            save_composed(composed, artifact)
            result["load"] = measure_load(artifact)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def _measure(sc: Scenario, setups: dict[str, Setup], batch_size: int, seq_len: int, rounds: int, warmup: int,
             device: str, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    times: dict[str, list[float]] = {k: [] for k in setups}
    task_times: dict[str, dict[str, list[float]]] = {k: {t: [] for t in s.per_task} for k, s in setups.items()}
    rng = random.Random(seed)
    for r in range(warmup + rounds):
        order = list(setups)
        rng.shuffle(order)  # interleaved, in a different order each round
        for k in order:
            s = setups[k]
            if s.per_task:  # time each task's own model; the setup's time is their sum
                spent = {t: _timed(fn, device) for t, fn in s.per_task.items()}
                if r >= warmup:
                    for t, v in spent.items():
                        task_times[k][t].append(v)
                    times[k].append(sum(spent.values()))
            else:
                assert s.run is not None, k  # a setup has either one call or per-task calls
                v = _timed(s.run, device)
                if r >= warmup:
                    times[k].append(v)
        if r >= warmup:
            say(f"round {r - warmup + 1}/{rounds}: " + ", ".join(
                f"{k} {1000 * times[k][-1]:.0f} ms" for k in setups))
    rows = {k: {"layers": s.layers, "weights_mib": s.weights_bytes / 2**20, **_stats(times[k], batch_size),
                "per_task_ms": {t: 1000 * statistics.fmean(v) for t, v in task_times[k].items()}}
            for k, s in setups.items()}
    comp = rows["composed"]
    ratios: dict[str, Any] = {}
    for base in ("full", "standalone"):
        if base in rows:
            speedup = rows[base]["mean_ms"] / comp["mean_ms"]
            ideal = rows[base]["layers"] / comp["layers"]
            ratios[f"composed_vs_{base}"] = {"speedup": speedup, "ideal": ideal, "efficiency": speedup / ideal}
    if "subset" in rows:
        frac = rows["subset"]["mean_ms"] / comp["mean_ms"]
        layer_frac = rows["subset"]["layers"] / comp["layers"]
        ratios["subset_vs_composed"] = {"time_fraction": frac, "layer_fraction": layer_frac,
                                        "limit": 1.2 * layer_frac, "cost_per_layer_share": frac / layer_frac}
    if "hf-reference" in rows:
        ratios["one_branch_vs_hf"] = {"time_ratio": rows["one-branch"]["mean_ms"] / rows["hf-reference"]["mean_ms"]}
    return {"scenario": sc.name, "description": sc.description, "tasks": len(sc.branches) or None,
            "setups": rows, "ratios": ratios}


def _task_curve(model: Any, rows: dict[str, Any], batch: dict[str, Any], device: str,
                repeats: int) -> dict[str, list[float]]:
    """ms per batch to answer the first k tasks, k = 1..n: the composed model is measured for each k (median of
    ``repeats``); unmerged and single-task serving add up their per-task means from the main rounds."""
    import torch

    branches = list(model.branches)
    curve: dict[str, list[float]] = {"tasks": list(range(1, len(branches) + 1)), "composed": []}
    for k in range(1, len(branches) + 1):
        call = _composed_call(model, branches[:k], batch)
        with torch.inference_mode():
            spent = [_timed(call, device) for _ in range(repeats)]
        curve["composed"].append(1000 * statistics.median(spent))
    for base in ("standalone", "full"):
        per = rows.get(base, {}).get("per_task_ms", {})
        if per:
            acc, curve[base] = 0.0, []
            for b in branches:
                acc += per[b.name]
                curve[base].append(acc)
    return curve


# -- load check: a fresh process loads a composed artifact -----------------------------------------------
_PROBE = r"""
import json, sys, time
from pathlib import Path

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

# the empty-process baseline: a service with its libraries imported: torch, mtbranch, and transformers' modules
# for this trunk's model and tokenizer classes (transformers imports them lazily, about 1 s on first use; that
# is a process-start cost, reported as import_s, not a cost of loading the artifact)
t0 = time.perf_counter()
import importlib
import torch, transformers  # noqa: F401
import mtbranch.branch.model, mtbranch.composition.model, mtbranch.trunk.model  # noqa: F401
from mtbranch.composition.artifact import load
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
torch.set_num_threads(1)
path = Path(sys.argv[1])
model_type = json.loads((path / "trunk" / "config.json").read_text())["model_type"]
importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
tok_cfg = path / "trunk" / "tokenizer_config.json"
tok_class = json.loads(tok_cfg.read_text()).get("tokenizer_class") if tok_cfg.is_file() else None
if tok_class:
    tokenizer_class_from_name(tok_class)
import_s = time.perf_counter() - t0
baseline = rss()
files = [p for p in path.rglob("*") if p.is_file()]
t0 = time.perf_counter()
total = sum(len(p.read_bytes()) for p in files)
read_s = time.perf_counter() - t0
t0 = time.perf_counter()
model = load(path, verify=sys.argv[2] == "verify")
load_s = time.perf_counter() - t0
after = rss()
params = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
with torch.inference_mode():  # touches every weight page once
    model(torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))
after_forward = rss()
del model
t0 = time.perf_counter()  # again: files in the page cache, every lazy import done
model = load(path, verify=sys.argv[2] == "verify")
load_again_s = time.perf_counter() - t0
print(json.dumps({"files_bytes": total, "import_s": import_s, "read_s": read_s, "load_s": load_s,
                  "load_again_s": load_again_s, "baseline_rss": baseline, "rss_after_load": after,
                  "rss_after_forward": after_forward, "param_bytes": params}))
"""


def measure_load(artifact: str | os.PathLike[str]) -> dict[str, Any]:
    """Resident memory and load time of ``mtbranch.load`` in a fresh process, with and without hash checks.

    The limits (issue 6): RSS after load <= 1.2 x parameter bytes + the empty process (torch, transformers,
    mtbranch imported); load time <= 1.5 x the time to read the artifact's files once.
    """
    out: dict[str, Any] = {}
    for mode in ("no-verify", "verify"):
        # the first read warms the page cache, so both loads and reads are measured warm
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(artifact), mode], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise MtbranchError(f"load probe failed: {proc.stderr.strip()[-500:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["rss_over_params"] = (r["rss_after_load"] - r["baseline_rss"]) / r["param_bytes"]
        r["rss_after_forward_over_params"] = (r["rss_after_forward"] - r["baseline_rss"]) / r["param_bytes"]
        r["rss_limit_bytes"] = 1.2 * r["param_bytes"] + r["baseline_rss"]
        r["load_over_read"] = r["load_s"] / r["read_s"]
        r["load_again_over_read"] = r["load_again_s"] / r["read_s"]
        out[mode] = r
    return out


def plot(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """PNG of ms per batch vs number of tasks for the three ways of serving (matplotlib, written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtbranch.io.atomic import write_bytes_atomic

    curve = result["task_curve"]
    labels = {"composed": "composed (one model)", "standalone": "unmerged branches (one model per task)",
              "full": "single-task serving (full model per task)"}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, label in labels.items():
        if key in curve:
            ax.plot(curve["tasks"], curve[key], marker="o", label=label)
    cfg = result["config"]
    ax.set_xlabel("number of tasks answered")
    ax.set_ylabel(f"ms per batch ({cfg['batch_size']} x {cfg['seq_len']} tokens)")
    ax.set_title(f"{result['scenario']}: time vs tasks ({cfg['device']}, {cfg['threads']} threads)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = Path(path)
    write_bytes_atomic(out, buf.getvalue())
    return out


def machine_info(device: str) -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        info["cpu"] = model[0] if model else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


__all__ = ["SCENARIOS", "BranchPlan", "Scenario", "measure_load", "plot", "run_bench"]
