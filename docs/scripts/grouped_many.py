"""Grouped matmuls re-measured at 100 branches: does grouping same-shape branches at one depth pay off now?

    python docs/scripts/grouped_many.py --n 100 --json docs/benchmarks/grouped-many.json

N copies of the eight example branches under new names (``sentiment-000`` ...; as many_branches.py does) are
composed on the example trunk (MiniLM-L6, hidden 384) in a temporary directory and loaded with ``mtbranch.load``.
The branches with layers of their own fall into groups of one shape: depth 4 with 2 layers (sentiment, entities,
slots on single texts; similarity, paraphrase on pairs) and depth 5 with 1 layer (intent); the heads at depth 6
have no layers to group. Each group runs two ways on the same hidden states (random, ``--seq-len`` tokens, no
padding, as grouped_ablation.py): (a) as mtbranch runs it, each branch's ``BranchModule.encode`` in turn; (b)
grouped, with grouped_ablation.py's code: the first layer's Q/K/V as one GEMM over the shared input with the
group's weights concatenated, the rest as ``torch.baddbmm`` over stacked weights, attention as one SDPA call over
branches x batch. The max abs difference (the grouped path must compute the same function) and the median time of
each, interleaved per round, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grouped_ablation import grouped_layer, stack  # the script beside this one

EXAMPLES = ("sentiment", "similarity", "entities", "paraphrase", "intent", "slots", "banking", "clinc")


def compose_copies(n: int, work: Path) -> Path:
    """N copies of the example branches (round robin) composed on the example trunk; returns the artifact."""
    import importlib

    from mtbranch.composition.artifact import compose, save_composed
    from mtbranch.spec.manifest import MANIFEST_NAME, read_manifest
    from mtbranch.trunk.source import resolve_trunk

    dirs = []
    for i in range(n):
        example = EXAMPLES[i % len(EXAMPLES)]
        src = Path(importlib.import_module(f"mtbranch_{example}").__file__).parent / "branch"  # type: ignore[arg-type]
        d = work / "branches" / f"{example}-{i:03d}"
        d.mkdir(parents=True)
        m = read_manifest(src / MANIFEST_NAME)
        shutil.copyfile(src / m.weights.path, d / m.weights.path)
        (d / MANIFEST_NAME).write_text(m.model_copy(update={"name": f"{example}-{i:03d}"}).to_json())
        dirs.append((d, "directory"))
    save_composed(compose(resolve_trunk("minilm-l6"), dirs), work / "composed")
    return work / "composed"


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    import mtbranch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="mtbranch-grouped-"))
    try:
        model = mtbranch.load(compose_copies(args.n, work))
        groups: dict[tuple[int, int, str], list[Any]] = {}
        for b in model.branches:
            m = b.manifest
            if m.num_layers:
                groups.setdefault((m.attach_depth, m.num_layers, m.tokenizer.input_signature), []).append(b)
        rows = []
        with torch.inference_mode():
            for (depth, layers, signature), members in sorted(groups.items()):
                cfg = members[0].config
                heads, hidden = cfg.num_attention_heads, cfg.hidden_size
                stacked = [stack([b.layers[i] for b in members]) for i in range(layers)]

                def separate(x: torch.Tensor, members: list[Any] = members) -> list[torch.Tensor]:
                    return [b.encode(x, None) for b in members]

                def grouped(x: torch.Tensor, stacked: list[dict[str, Any]] = stacked,
                            heads: int = heads) -> list[torch.Tensor]:
                    bs, t, _ = x.shape
                    h = grouped_layer(x, stacked[0], bs, t, heads, shared=True)
                    for p in stacked[1:]:
                        h = grouped_layer(h, p, bs, t, heads, shared=False)
                    return [h[g].view(bs, t, -1) for g in range(h.shape[0])]

                for bs in (int(v) for v in args.batch_sizes.split(",")):
                    x = torch.randn(bs, args.seq_len, hidden)
                    diff = max((p - q).abs().max().item() for p, q in zip(separate(x), grouped(x), strict=True))
                    times: dict[str, list[float]] = {"separate": [], "grouped": []}
                    for _ in range(args.rounds):
                        for name, fn in (("separate", separate), ("grouped", grouped)):
                            t0 = time.perf_counter()
                            fn(x)
                            times[name].append(time.perf_counter() - t0)
                    med = {k: statistics.median(v) for k, v in times.items()}
                    rows.append({"depth": depth, "layers": layers, "signature": signature, "branches": len(members),
                                 "batch_size": bs, "seq_len": args.seq_len, "max_abs_diff": diff,
                                 "separate_ms": round(1e3 * med["separate"], 2),
                                 "grouped_ms": round(1e3 * med["grouped"], 2),
                                 "grouped_speedup": round(med["separate"] / med["grouped"], 3)})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    totals = {}
    for bs in {r["batch_size"] for r in rows}:
        sep = sum(r["separate_ms"] for r in rows if r["batch_size"] == bs)
        grp = sum(r["grouped_ms"] for r in rows if r["batch_size"] == bs)
        totals[str(bs)] = {"separate_ms": round(sep, 1), "grouped_ms": round(grp, 1),
                           "grouped_speedup": round(sep / grp, 3)}
    models = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    out = {"command": " ".join(["python", *sys.argv]), "n": args.n, "trunk": "minilm-l6 (hidden 384, 12 heads)",
           "cpu": models[0] if models else platform.machine(), "cpus": os.cpu_count(), "threads": 1,
           "load_average": os.getloadavg(), "torch": torch.__version__, "groups": rows,
           "all_groups_by_batch_size": totals}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
