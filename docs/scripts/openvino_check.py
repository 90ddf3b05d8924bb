"""The load check's figures for a bf16 engine: OpenVINO bf16 / f32 and torch bfloat16 against torch float32.

    OMP_NUM_THREADS=1 python docs/scripts/openvino_check.py runs/composed8 --json docs/benchmarks/openvino-check.json

On the probe inputs of mtbranch.backends.ort (what every load checks): the max |difference| of any head output,
the same over each head's scale (max(1, its largest |float32 output|)) and the share of argmax labels equal
(mtbranch.backends.ort.compare). torch bfloat16 is what ``auto`` ships on a native-bf16 CPU; the OpenVINO bf16
bound (mtbranch.backends.ov.BF16_SCALED / BF16_LABELS) is set from it with a margin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch


class TorchEngine:
    """A torch model behind the engine interface compare() calls."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def run(self, signature: str, ids: Any, mask: Any, types: Any) -> dict[str, torch.Tensor]:
        from mtbranch.backends.ort import groups

        branches = groups(self.model)[signature]
        return {k: v.float() for k, v in self.model(ids, mask, types, branches).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import openvino

    from mtbranch.backends import ov
    from mtbranch.backends.ort import compare
    from mtbranch.composition.artifact import load
    from mtbranch.spec.precision import cpu_report

    ref = load(args.artifact, backend="torch", dtype="float32")
    out: dict[str, Any] = {}
    for dtype in ("float32", "bfloat16"):
        model = load(args.artifact, backend="openvino", dtype=dtype)
        assert model.backend == "openvino", model.backend_reason
        out[f"openvino {dtype}"] = asdict(compare(model.runtime.engine, ref))
    out["torch bfloat16"] = asdict(compare(TorchEngine(load(args.artifact, backend="torch", dtype="bfloat16")), ref))
    report = {"command": "OMP_NUM_THREADS=1 python docs/scripts/openvino_check.py " + " ".join(sys.argv[1:]),
              "openvino": openvino.__version__, "torch": torch.__version__, "machine": cpu_report(),
              "loadavg": os.getloadavg(), "bounds": {"bf16_scaled": ov.BF16_SCALED, "bf16_labels": ov.BF16_LABELS},
              "tasks": ref.task_names, "against_torch_float32": out}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
