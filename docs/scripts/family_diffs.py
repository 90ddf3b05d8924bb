"""Max abs differences mtbranch vs transformers for every built-in trunk family (the figures on docs/families.md).

    OMP_NUM_THREADS=1 .venv/bin/python docs/scripts/family_diffs.py [--onnx] > docs/families-diffs.json

Uses the same tiny random configs as tests/test_families.py (tests/family_fixtures.py: hidden 32, 4 layers,
ModernBERT with a 4-token local window and global attention every 3rd layer, DeBERTa-v2 with relative
attention and a ConvLayer), float32, a padded batch of 3 texts: per family the largest difference over all
hidden states, and for branches imported from *ForSequenceClassification (3 classes, depth 2),
*ForTokenClassification (depth 3) and a pair regression (depth 1) the difference standalone and composed.
``--onnx`` adds ONNX Runtime vs PyTorch for a composed classification + token model.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from family_fixtures import FAMILIES, LAYERS, make_family_dir  # noqa: E402
from test_families import PAIRS, TEXTS, checkpoint, import_cli, inputs, max_diff  # noqa: E402
from transformers import AutoModel  # noqa: E402

from mtbranch.branch.model import load_branch  # noqa: E402
from mtbranch.composition.artifact import compose  # noqa: E402
from mtbranch.trunk.model import load_trunk  # noqa: E402
from mtbranch.trunk.source import load_trunk_source  # noqa: E402
from mtbranch.trunk.tokenizer import load_tokenizer  # noqa: E402


def family_row(family: str, tmp: Path, onnx: bool) -> dict[str, float]:
    d = make_family_dir(tmp / "trunk", family)
    tok = load_tokenizer(d)
    single, pair = tok(TEXTS, padding=True, return_tensors="pt"), tok(TEXTS, PAIRS, padding=True, return_tensors="pt")
    src = load_trunk_source(d)
    trunk = load_trunk(src)
    row: dict[str, float] = {}
    with torch.no_grad():
        expected = AutoModel.from_pretrained(str(d)).eval()(**inputs(single), output_hidden_states=True).hidden_states
        got = trunk(single["input_ids"], single["attention_mask"], single.get("token_type_ids"))
        if family == "modernbert":
            got = [*got[:-1], trunk.final(got[-1])]
    row["hidden_states"] = max(max_diff(a, b) for a, b in zip(expected, got, strict=True))
    plan = {"cls": ("seq", 2, ()), "ner": ("tok", 1, ()), "sim": ("reg", 3, ("--pair",))}
    refs = {n: checkpoint(family, d, tmp / f"ckpt-{n}", k, lay) for n, (k, lay, _) in plan.items()}
    for n, (_, lay, p) in plan.items():
        import_cli(tmp / f"ckpt-{n}", d, lay, n, tmp / n, *p)
    model = compose(src, [(tmp / n, "directory") for n in plan])
    with torch.no_grad():
        for n, (kind, lay, _) in plan.items():
            enc = pair if kind == "reg" else single
            ref = refs[n](**inputs(enc)).logits
            depth = LAYERS - lay
            states = trunk(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), depth=depth)
            row[f"{n}_standalone"] = max_diff(ref, load_branch(tmp / n)(states[depth], enc["attention_mask"]))
            composed = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), [model.branch(n)])
            row[f"{n}_composed"] = max_diff(ref, composed[n])
    if onnx:
        from mtbranch.export.onnx import check_onnx, export_onnx

        two = compose(src, [(tmp / "cls", "directory"), (tmp / "ner", "directory")])
        export_onnx(two, tmp / "onnx")
        row.update({f"onnx_{k}": v for k, v in check_onnx(two, tmp / "onnx").items()})
    return row


def hardware() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    import os

    return f"{os.cpu_count()} CPU cores, {model}"


def main() -> None:
    torch.set_num_threads(1)
    onnx = "--onnx" in sys.argv
    out = {"command": "OMP_NUM_THREADS=1 .venv/bin/python docs/scripts/family_diffs.py" + (" --onnx" if onnx else ""),
           "hardware": hardware(), "torch": torch.__version__,
           "dtype": "float32", "families": {}}
    for family in FAMILIES:
        with tempfile.TemporaryDirectory() as tmp:
            out["families"][family] = family_row(family, Path(tmp), onnx)
        print(family, out["families"][family], file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
