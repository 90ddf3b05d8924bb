"""The tables of docs/migrate.md from the raw run files in docs/results/migrate/ (written by the commands in
docs/results/migrate/commands.sh). ``python docs/scripts/migrate_table.py`` prints them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "migrate"
TASKS = ("sentiment", "entities", "similarity", "paraphrase", "intent")


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() and path.stat().st_size else None


def migration_table() -> str:
    lines = ["| task (dev metric) | teacher: MiniLM-L6, labels | L3 with labels | L3 migrated, no labels | "
             "no labels / labels | agreement with the teacher (held-out texts) | texts |",
             "|---|---|---|---|---|---|---|"]
    ratios = []
    for task in TASKS:
        mig, lab = _load(f"{task}-migrate"), _load(f"{task}-labelled")
        if mig is None or lab is None:
            continue
        (b,) = mig["branches"]
        metric = b["dev"]["metric"]
        labelled = lab["dev"][metric]
        ratio = b["dev"]["student"] / labelled
        ratios.append(ratio)
        s, t = b["student"], b["teacher"]
        layers = "layer" if t["num_layers"] == 1 else "layers"
        lines.append(f"| {task} ({metric}) | {100 * b['dev']['teacher']:.2f} ({t['num_layers']} {layers} at depth "
                     f"{t['attach_depth']}) | {100 * labelled:.2f} ({lab['layers']} at depth {lab['depth']}) | "
                     f"{100 * b['dev']['student']:.2f} ({s['num_layers']} at depth {s['attach_depth']}) | "
                     f"{100 * ratio:.1f}% | {b['agreement']['metric']} {100 * b['agreement']['value']:.2f} | "
                     f"{b['texts']['train']} + {b['texts']['holdout']} held out |")
    if ratios:
        lines.append(f"| **average** | | | | **{100 * sum(ratios) / len(ratios):.1f}%** | | |")
    more, lab = _load("sentiment-migrate-16k"), _load("sentiment-labelled")
    if more is not None and lab is not None:  # texts cost nothing: 4x as many, still against 4000 labelled examples
        (b,) = more["branches"]
        ratio = b["dev"]["student"] / lab["dev"]["accuracy"]
        lines.append(f"| sentiment, 4x the texts (not in the average) | {100 * b['dev']['teacher']:.2f} | "
                     f"{100 * lab['dev']['accuracy']:.2f} (4000 labelled) | {100 * b['dev']['student']:.2f} | "
                     f"{100 * ratio:.1f}% | accuracy {100 * b['agreement']['value']:.2f} | "
                     f"{b['texts']['train']} + {b['texts']['holdout']} held out |")
    return "\n".join(lines)


def consolidation_table() -> str:
    mig = _load("consolidation-migrate")
    if mig is None:
        return ""
    (b,) = mig["branches"]
    s, d = b["student"], b["dev"]
    return "\n".join([
        "| | SST-2 dev accuracy | layers run per input |",
        "|---|---|---|",
        f"| fine-tuned checkpoint (BertForSequenceClassification, all {b['teacher']['num_layers']} layers trained) | "
        f"{100 * d['teacher']:.2f} | {b['teacher']['num_layers']} (its own encoder) |",
        f"| consolidated branch on minilm-l6, no labels | {100 * d['student']:.2f} ({100 * d['ratio']:.1f}%) | "
        f"{s['num_layers']} branch layers at depth {s['attach_depth']} of the shared trunk |",
    ])


def speed_table() -> str:
    sp = _load("speed")
    if sp is None:
        return ""
    return "\n".join([
        "| composed model | trunk layers run | branch layers | texts/s | seconds |", "|---|---|---|---|---|",
        *[f"| {k}: {sp[k]['trunk']} | {sp[k]['trunk_layers_run']} | {sp[k]['branch_layers']} | "
          f"{sp[k]['texts_per_second']:.1f} | {sp[k]['seconds']:.2f} |" for k in ("old", "new")],
        f"| **new / old** | | | **x{sp['speedup']:.2f}** | |",
    ])


if __name__ == "__main__":
    print(migration_table(), consolidation_table(), speed_table(), sep="\n\n")
