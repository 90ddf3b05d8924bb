"""Backends and dtypes of a composed model vs 8 separate models, side by side in one process (issue 31).

    OMP_NUM_THREADS=1 python docs/scripts/bench_backends.py runs/composed8 --workdir runs/bench-backends \
        --json docs/benchmarks/backends.json

Every setup answers all the artifact's tasks for the same token ids (tokenized once beforehand with the trunk's
tokenizer: the single-text encoding for single-text tasks, the pair encoding for pair tasks), 1 thread:

* mtbranch ``default``: ``mtbranch.load(artifact)`` with no backend or dtype (auto: measured, cached);
  ``torch float32`` (the reference and the old default), ``torch bfloat16``, ``onnxruntime float32`` (the
  fused graph of mtbranch.backends.ort), ``openvino bfloat16`` / ``float32`` (the raw graph compiled by OpenVINO,
  mtbranch.backends.ov; needs the [openvino] extra).
* peers: one full transformers model per task (the trunk's layers 1..d and the branch's own layers, its pooler
  and classifier where the branch has them; 6 layers each for the example branches): ``HF float32`` (SDPA),
  ``HF bfloat16``, ``ORT fused float32`` (each exported with torch.onnx's TorchScript exporter and ONNX Runtime's
  transformer optimizer) and ``ORT fused int8`` (the same, onnxruntime.quantization.quantize_dynamic).

Cells: ``short`` (STS-B dev sentences as they are) and ``128 tok`` (STS-B sentences joined until >= 128 tokens,
truncated to 128), batch 1 (8 inputs, one at a time) and batch 32 (one batch). Rounds: each round runs every
setup once on the cell's inputs, in a shuffled order; the figure is the median over rounds (sentences/s). The
matmul peak of each dtype (mtbranch.bench.precision.matmul_peak, 2048x384x1536) is probed at the start and the
end; ``pct_peak`` is the setup's transformer-layer FLOPs per second over its dtype's best. ``agreement``: the
fraction of labels (argmax per input, per token at real tokens) equal to the float32 reference of its family
(mtbranch torch float32; HF float32 for the peers); regression outputs: the max |difference|.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "STS-B" / "sts-dev.csv"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def sentence_pairs() -> list[tuple[str, str]]:
    with DATA.open(encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    return [(r[5], r[6]) for r in rows]


def long_texts(tok: Any, pairs: list[tuple[str, str]], n: int, tokens: int) -> list[tuple[str, str]]:
    out, k = [], 0
    while len(out) < n:
        text = ""
        while len(tok(text)["input_ids"]) < tokens + 2:
            text = (text + " " + pairs[k % len(pairs)][0]).strip()
            k += 1
        out.append((text, pairs[k % len(pairs)][1]))
    return out


def encode(tok: Any, items: list[tuple[str, str]], max_length: int) -> dict[str, dict[str, torch.Tensor]]:
    def enc(pair: bool) -> dict[str, torch.Tensor]:
        e = tok([a for a, _ in items], [b for _, b in items] if pair else None, padding="longest",
                truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": e["input_ids"], "attention_mask": e["attention_mask"],
                "token_type_ids": e.get("token_type_ids", torch.zeros_like(e["input_ids"]))}
    return {"single": enc(False), "pair": enc(True)}


# -- setups ---------------------------------------------------------------------------------------------
def mtbranch_call(model: Any) -> Callable[[dict[str, Any]], dict[str, torch.Tensor]]:
    from mtbranch.backends.ort import groups

    grouped = list(groups(model).items())

    def run(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            for sig, branches in grouped:
                e = batch[sig]
                out.update(model(e["input_ids"], e["attention_mask"], e["token_type_ids"], branches))
        return out
    return run


def peer_model(model: Any, branch: Any, dtype: torch.dtype) -> Any:
    """transformers' full model for ``branch``: embeddings, trunk layers 1..d, the branch's layers and head."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    m = branch.manifest
    cfg = model.trunk.config.__class__(**{**model.trunk.config.to_dict(),
                                         "num_hidden_layers": m.attach_depth + m.num_layers,
                                         "num_labels": m.head.num_outputs})
    cfg._attn_implementation = "sdpa"
    cls = AutoModelForSequenceClassification if branch.sequence_level else AutoModelForTokenClassification
    torch.manual_seed(0)
    cfg.id2label = {i: str(i) for i in range(m.head.num_outputs)}
    cfg.label2id = {str(i): i for i in range(m.head.num_outputs)}
    hf = cls.from_config(cfg)
    base = getattr(hf, hf.base_model_prefix)
    state = {f"embeddings.{k}": v for k, v in model.trunk.embeddings.state_dict().items()}
    layers = [*list(model.trunk.layers)[: m.attach_depth], *branch.layers]
    for k, layer in enumerate(layers):
        state.update({f"encoder.layer.{k}.{n}": v for n, v in layer.state_dict().items()})
    pooler = getattr(branch, "pooler", None)
    if branch.sequence_level and pooler is not None and hasattr(pooler, "dense"):
        state.update({f"pooler.dense.{n}": v for n, v in pooler.dense.state_dict().items()})
    base.load_state_dict(state, strict=False)
    classifier = getattr(branch.head, "classifier", None)
    if isinstance(classifier, torch.nn.Linear) and classifier.weight.shape == hf.classifier.weight.shape:
        hf.classifier.load_state_dict(classifier.state_dict())
    return hf.to(dtype).eval()


def peers_call(peers: dict[str, tuple[str, Any]]) -> Callable[[dict[str, Any]], dict[str, torch.Tensor]]:
    def run(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return {name: m(**batch[sig]).logits for name, (sig, m) in peers.items()}
    return run


def export_peer(hf: Any, path: Path, sig_batch: dict[str, torch.Tensor], heads: int, hidden: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    raw = path.with_suffix(".raw.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(hf, tuple(sig_batch[k] for k in INPUTS), str(raw), input_names=list(INPUTS),
                          output_names=["logits"], dynamic_axes={k: {0: "batch", 1: "sequence"} for k in INPUTS},
                          opset_version=17, dynamo=False)
    opt = optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    opt.save_model_to_file(str(path))
    raw.unlink()


def ort_peers(peers32: dict[str, tuple[str, Any]], example: dict[str, Any], workdir: Path, cfg: Any,
              int8: bool) -> Callable[[dict[str, Any]], dict[str, torch.Tensor]]:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sessions = {}
    for name, (sig, hf) in peers32.items():
        path = workdir / f"peer-{name}.onnx"
        if not path.is_file():
            export_peer(hf, path, example[sig], cfg.num_attention_heads, cfg.hidden_size)
        if int8:
            q = workdir / f"peer-{name}-int8.onnx"
            if not q.is_file():
                # the fused graph's contrib ops have no inferred types: FLOAT is every activation's type here
                quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            path = q
        sessions[name] = (sig, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))

    def run(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {}
        for name, (sig, s) in sessions.items():
            feeds = {k: batch[sig][k].numpy() for k in INPUTS}
            out[name] = torch.from_numpy(s.run(None, feeds)[0])
        return out
    return run


# -- figures ----------------------------------------------------------------------------------------------
def agreement(ref: list[dict[str, torch.Tensor]], got: list[dict[str, torch.Tensor]], batches: list[dict[str, Any]],
              heads: dict[str, tuple[str, str]]) -> dict[str, Any]:
    same = total = 0
    reg = 0.0
    for r, g, b in zip(ref, got, batches, strict=True):
        for name, (kind, sig) in heads.items():
            a, c = r[name].float(), g[name].float()
            if kind == "regression":
                reg = max(reg, float((a - c).abs().max()))
                continue
            la, lc = a.argmax(-1), c.argmax(-1)
            if la.dim() == 2:  # token head: real tokens only
                real = b[sig]["attention_mask"].bool()
                la, lc = la[real], lc[real]
            same += int((la == lc).sum())
            total += la.numel()
    return {"labels_equal": same / total if total else None, "regression_max_abs_diff": reg}


def layer_flops_total(model: Any, batches: list[dict[str, Any]], peers: bool) -> int:
    from mtbranch.backends.ort import groups
    from mtbranch.bench.precision import layer_flops

    cfg = model.trunk.config
    total = 0
    for b in batches:
        for sig, branches in groups(model).items():
            bs, seq = b[sig]["input_ids"].shape
            if peers:
                layers = sum(x.manifest.attach_depth + x.manifest.num_layers for x in branches)
            else:
                layers = max(x.manifest.attach_depth for x in branches) + sum(x.manifest.num_layers for x in branches)
            total += layer_flops(cfg, bs, seq) * layers
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench-backends"), help="peer ONNX exports (cached)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per batch-1 cell")
    ap.add_argument("--rounds-batch32", type=int, default=3, help="rounds per batch-32 cell")
    ap.add_argument("--inputs-batch1", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    from mtbranch.backends.ort import groups
    from mtbranch.bench.precision import matmul_peak
    from mtbranch.composition.artifact import load
    from mtbranch.spec.precision import cpu_report

    say = lambda s: print(s, flush=True)  # noqa: E731
    load0 = os.getloadavg()
    peaks0 = {d: matmul_peak(d, 2048, 384, 1536, budget_s=2.0)["gflops"] for d in ("float32", "bfloat16", "int8")}
    say(f"matmul peak (start): {peaks0}")
    peaks_seen = [peaks0]
    t0 = time.perf_counter()
    default = load(args.artifact)
    default_load_s = time.perf_counter() - t0
    say(f"default: {default.backend_reason} (load {default_load_s:.1f} s)")
    ref = load(args.artifact, backend="torch", dtype="float32")
    bf16 = load(args.artifact, backend="torch", dtype="bfloat16")
    ortm = load(args.artifact, backend="onnxruntime")
    assert ortm.backend == "onnxruntime", ortm.backend_reason
    ov16 = load(args.artifact, backend="openvino", dtype="bfloat16")
    ov32 = load(args.artifact, backend="openvino", dtype="float32")
    assert ov16.backend == ov32.backend == "openvino", (ov16.backend_reason, ov32.backend_reason)
    tok = ref.tokenizer
    heads = {b.name: ("regression" if b.head_spec.type == "regression" else "labels",
                      b.manifest.tokenizer.input_signature) for b in ref.branches}
    peers32 = {b.name: (b.manifest.tokenizer.input_signature, peer_model(ref, b, torch.float32))
               for b in ref.branches}
    peers16 = {b.name: (b.manifest.tokenizer.input_signature, peer_model(ref, b, torch.bfloat16))
               for b in ref.branches}
    pairs = sentence_pairs()
    rng = random.Random(args.seed)
    short = rng.sample(pairs, 64)
    longs = long_texts(tok, pairs, 40, 128)
    ml = ref.max_length(ref.branches)
    example = encode(tok, short[:2], ml)
    say("exporting the peers' ONNX models (cached in --workdir)...")
    setups: dict[str, tuple[str, str, Callable[[dict[str, Any]], Any]]] = {
        "mtbranch default (auto)": ("mtbranch", "default", mtbranch_call(default)),
        "mtbranch torch float32": ("mtbranch", "float32", mtbranch_call(ref)),
        "mtbranch torch bfloat16": ("mtbranch", "bfloat16", mtbranch_call(bf16)),
        "mtbranch onnxruntime float32": ("mtbranch", "float32", mtbranch_call(ortm)),
        "mtbranch openvino bfloat16": ("mtbranch", "bfloat16", mtbranch_call(ov16)),
        "mtbranch openvino float32": ("mtbranch", "float32", mtbranch_call(ov32)),
        "peers HF float32": ("peers", "float32", peers_call(peers32)),
        "peers HF bfloat16": ("peers", "bfloat16", peers_call(peers16)),
        "peers ORT fused float32": ("peers", "float32",
                                    ort_peers(peers32, example, args.workdir, ref.trunk.config, False)),
        "peers ORT fused int8": ("peers", "int8", ort_peers(peers32, example, args.workdir, ref.trunk.config, True)),
    }
    cells = {"short, batch 1": [encode(tok, [x], ml) for x in short[: args.inputs_batch1]],
             "short, batch 32": [encode(tok, short[:32], 128)],
             "128 tok, batch 1": [encode(tok, [x], 128) for x in longs[: args.inputs_batch1]],
             "128 tok, batch 32": [encode(tok, longs[:32], 128)]}
    results: dict[str, Any] = {}
    for cell, batches in cells.items():
        n = sum(b["single"]["input_ids"].shape[0] for b in batches)
        rounds = args.rounds if n == len(batches) else args.rounds_batch32
        outs = {name: [fn(b) for b in batches] for name, (_, _, fn) in setups.items()}  # warm-up + agreement
        times: dict[str, list[float]] = {name: [] for name in setups}
        la = os.getloadavg()
        for _ in range(rounds):
            order = list(setups)
            rng.shuffle(order)
            for name in order:
                fn = setups[name][2]
                t = time.perf_counter()
                for b in batches:
                    fn(b)
                times[name].append(time.perf_counter() - t)
        row: dict[str, Any] = {"sentences": n, "rounds": rounds, "loadavg_1min": [la[0], os.getloadavg()[0]],
                               "width": {s: [int(b[s]["input_ids"].shape[1]) for b in batches]
                                         for s in ("single", "pair")},
                               "setups": {}}
        first = next(iter(groups(default).values()))
        rt = default.runtime
        hit = None if rt is None else rt.route(first, batches[0]["single"]["input_ids"])
        engine, engine_dtype = f"torch {default.compute_dtype}", default.compute_dtype
        if hit is not None:
            name = next(k for k, v in rt.engines.items() if v is hit[0])
            engine_dtype = getattr(hit[0], "dtype", "float32")
            engine = f"{name} {engine_dtype}"
        for name, (family, dtype, _) in setups.items():
            med = statistics.median(times[name])
            pdtype = engine_dtype if dtype == "default" else dtype
            flops = layer_flops_total(ref, batches, family == "peers")
            refs = outs["mtbranch torch float32" if family == "mtbranch" else "peers HF float32"]
            row["setups"][name] = {"sentences_per_s": n / med, "median_s": med, "seconds": times[name],
                                   "dtype_for_peak": pdtype, "gflops": flops / med / 1e9,
                                   "agreement_with_float32": agreement(refs, outs[name], batches, heads)}
        row["default_engine"] = engine
        results[cell] = row
        say(f"{cell}: " + ", ".join(f"{k} {v['sentences_per_s']:.1f}/s" for k, v in row["setups"].items()))
        probe = {d: matmul_peak(d, 2048, 384, 1536, budget_s=2.0)["gflops"] for d in ("float32", "bfloat16", "int8")}
        peaks_seen.append(probe)
    peaks1 = peaks_seen[-1]
    # the dtype's matmul peak: the best probe of the run (start, after each cell) on this shared machine
    peak = {d: max(p[d] for p in peaks_seen) for d in peaks0}
    for row in results.values():
        for v in row["setups"].values():
            v["pct_peak"] = 100 * v["gflops"] / peak[v["dtype_for_peak"]]
    summary = {}
    for cell, row in results.items():
        s = row["setups"]
        exact_mt = ["mtbranch torch float32", "mtbranch torch bfloat16", "mtbranch onnxruntime float32",
                    "mtbranch openvino bfloat16", "mtbranch openvino float32"]
        exact_peers = ["peers HF float32", "peers HF bfloat16", "peers ORT fused float32"]
        best_mt = max(exact_mt, key=lambda k: s[k]["sentences_per_s"])
        best_peer = max(exact_peers, key=lambda k: s[k]["sentences_per_s"])
        summary[cell] = {"default_vs_best_mtbranch": s["mtbranch default (auto)"]["sentences_per_s"]
                         / s[best_mt]["sentences_per_s"], "best_mtbranch": best_mt, "best_peer": best_peer,
                         "best_mtbranch_vs_best_peer": s[best_mt]["sentences_per_s"]
                         / s[best_peer]["sentences_per_s"],
                         "default_vs_old_default": s["mtbranch default (auto)"]["sentences_per_s"]
                         / s["mtbranch torch float32"]["sentences_per_s"],
                         "best_mtbranch_vs_peers_int8": s[best_mt]["sentences_per_s"]
                         / s["peers ORT fused int8"]["sentences_per_s"]}
    report = {"command": "OMP_NUM_THREADS=1 python docs/scripts/bench_backends.py " + " ".join(sys.argv[1:]),
              "artifact_tasks": ref.task_names, "threads": 1, "machine": cpu_report(),
              "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
              "openvino": __import__("openvino").__version__,
              "loadavg_start": load0, "loadavg_end": os.getloadavg(),
              "matmul_peak_gflops": {"start": peaks0, "end": peaks1, "probes": peaks_seen, "used": peak},
              "default_reason": default.backend_reason, "default_info": default.backend_info,
              "default_load_s": default_load_s, "cells": results, "summary": summary,
              "note": "exact-enough: float32 and bfloat16 (docs/benchmarks.md, Compute dtype); int8 is reported, "
                      "not counted as exact-enough"}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
