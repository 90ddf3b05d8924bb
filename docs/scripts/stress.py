"""Stress run: many threads calling ``predict`` on one composed model, checked against sequential results.

    mtbranch compose -o out/composed          # the installed example plugins (see `make demo`)
    OMP_NUM_THREADS=1 python docs/scripts/stress.py out/composed --threads 8 --calls 2000

Each call predicts one (text, pair) input on every task. The reference is the same input predicted
sequentially before the threads start; every threaded result must be equal to it (same floats, same
labels). Resident memory (VmRSS) is sampled after every thousand calls; the report gives the value after
the first and after the last thousand calls. Prints one JSON object; exit 1 on any mismatch or error, or
when RSS grows by more than ``--rss-tolerance``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the soundtrack", "Angela Merkel", "a man",
            "the chef", "Emmanuel Macron", "the company in Paris", "a woman from Berlin", "the new series"]
VERBS = ["was", "is not", "seems", "felt", "became", "is rarely", "was surprisingly", "remains"]
OBJECTS = ["wonderful", "a complete mess", "boring and far too long", "beautifully acted", "playing a guitar",
           "in London with Google engineers", "cooking pasta", "a gripping story", "flat", "worth watching twice"]


def inputs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (text, pair) inputs of varied length, so batches of one differ in padding and content."""
    rng = random.Random(seed)
    combos = list(itertools.product(SUBJECTS, VERBS, OBJECTS))
    rng.shuffle(combos)
    out = []
    for i, (s, v, o) in enumerate(combos[:n]):
        text = f"{s} {v} {o}" + (" ." if i % 3 else f" , and {rng.choice(SUBJECTS)} {rng.choice(VERBS)} "
                                                      f"{rng.choice(OBJECTS)} .")
        out.append((text, f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"))
    return out


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", nargs="?", default="out/composed")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--calls", type=int, default=2000, help="predict calls per thread")
    ap.add_argument("--inputs", type=int, default=400, help="distinct inputs cycled through")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    args = ap.parse_args(argv)

    import torch

    import mtbranch

    torch.set_num_threads(args.torch_threads)
    model = mtbranch.load(args.artifact, backend="torch", dtype="float32")
    data = inputs(args.inputs)
    started = time.perf_counter()
    reference = [model.predict([t], text_pairs=[p])[0] for t, p in data]
    seq_seconds = time.perf_counter() - started

    lock = threading.Lock()
    done = 0
    samples: list[tuple[int, float]] = []
    mismatches: list[dict[str, Any]] = []
    errors: list[str] = []

    def worker(w: int) -> None:
        nonlocal done
        for k in range(args.calls):
            i = (w * 7919 + k * 31) % len(data)  # each thread walks the inputs in its own order
            t, p = data[i]
            try:
                got = model.predict([t], text_pairs=[p])[0]
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                if got != reference[i] and len(mismatches) < 20:
                    mismatches.append({"input": i, "thread": w, "call": k})
                elif got != reference[i]:
                    mismatches.append({})
                done += 1
                if done % 1000 == 0:
                    samples.append((done, rss_mib()))

    started = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(worker, range(args.threads)))
    seconds = time.perf_counter() - started
    first, last = samples[0][1], samples[-1][1]
    growth = (last - first) / first
    report = {
        "artifact": args.artifact, "tasks": model.task_names, "threads": args.threads,
        "calls_per_thread": args.calls, "calls": args.threads * args.calls, "completed": done,
        "distinct_inputs": len(data), "errors": len(errors), "error_examples": errors[:5],
        "mismatches": len(mismatches), "mismatch_examples": [m for m in mismatches if m][:5],
        "sequential_seconds": round(seq_seconds, 1), "threaded_seconds": round(seconds, 1),
        "calls_per_second": round(done / seconds, 1),
        "rss_mib_after_first_1000": round(first, 1), "rss_mib_after_last_1000": round(last, 1),
        "rss_growth": round(growth, 4), "rss_samples_mib": [round(r, 1) for _, r in samples],
        "torch_threads": args.torch_threads,
    }
    report["ok"] = not errors and not mismatches and done == args.threads * args.calls \
        and growth <= args.rss_tolerance
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
