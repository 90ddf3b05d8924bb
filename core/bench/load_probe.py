"""The load check: a fresh process loads a composed artifact; resident memory and load time.

Run as ``python -m mtbranch.bench.load_probe ARTIFACT {verify|no-verify}``: it prints one JSON line. The parent
side, :func:`measure_load`, starts it twice (with and without hash checks) and derives the ratios. Importing this
module imports nothing heavy; the child imports torch itself, inside :func:`probe`, so that the import time is
measured and reported (``import_s``) apart from the load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mtbranch.errors import MtbranchError

MODES = ("no-verify", "verify")
PROBE_MODULE = "mtbranch.bench.load_probe"  # this file, run in a fresh interpreter


def rss() -> int:
    """This process's resident set size in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def probe(path: Path, mode: str) -> dict[str, Any]:
    """Runs in the fresh process: import, read the files once, load (twice), one forward pass."""
    # the empty-process baseline: a service with its libraries imported: torch, mtbranch, and transformers'
    # modules for this trunk's model and tokenizer classes (transformers imports them lazily, about 1 s on first
    # use; that is a process-start cost, reported as import_s, not a cost of loading the artifact)
    t0 = time.perf_counter()
    import importlib

    import torch
    import transformers  # noqa: F401
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    import mtbranch.branch.model
    import mtbranch.composition.model
    import mtbranch.trunk.model  # noqa: F401
    from mtbranch.composition.artifact import load

    torch.set_num_threads(1)
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
    model = load(path, verify=mode == "verify", backend="torch", dtype="float32")
    load_s = time.perf_counter() - t0
    after = rss()
    params = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with torch.inference_mode():  # touches every weight page once
        model(torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long),
              torch.zeros(1, 8, dtype=torch.long))
    after_forward = rss()
    del model
    t0 = time.perf_counter()  # again: files in the page cache, every lazy import done
    load(path, verify=mode == "verify", backend="torch", dtype="float32")
    load_again_s = time.perf_counter() - t0
    return {"files_bytes": total, "import_s": import_s, "read_s": read_s, "load_s": load_s,
            "load_again_s": load_again_s, "baseline_rss": baseline, "rss_after_load": after,
            "rss_after_forward": after_forward, "param_bytes": params}


def measure_load(artifact: str | os.PathLike[str]) -> dict[str, Any]:
    """Resident memory and load time of ``mtbranch.load`` in a fresh process, with and without hash checks.

    The limits (issue 6): RSS after load <= 1.2 x parameter bytes + the empty process (torch, transformers,
    mtbranch imported); load time <= 1.5 x the time to read the artifact's files once.
    """
    out: dict[str, Any] = {}
    for mode in MODES:
        # the first read warms the page cache, so both loads and reads are measured warm
        proc = subprocess.run([sys.executable, "-m", PROBE_MODULE, str(artifact), mode], capture_output=True,
                              text=True, check=False)
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[1] not in MODES:
        print(f"usage: python -m mtbranch.bench.load_probe ARTIFACT {{{'|'.join(MODES)}}}", file=sys.stderr)
        return 2
    print(json.dumps(probe(Path(args[0]), args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
