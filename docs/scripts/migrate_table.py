"""The tables of docs/migrate.md from the raw run files in docs/results/migrate/ (written by the commands in
docs/results/migrate/commands.sh). ``python docs/scripts/migrate_table.py`` prints them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "migrate"
# task -> (migration run, labelled run, protocol); both arms of a row share depth, size, pooling and lr, and the
# epochs unless the protocol names each arm's (paraphrase: the migration reads more unlabelled pairs)
RUNS = {
    "sentiment": ("sentiment-migrate", "sentiment-labelled-mean", "3 epochs"),
    "entities": ("entities-migrate", "entities-labelled", "3 epochs"),
    "similarity": ("similarity-migrate", "similarity-labelled-mean", "3 epochs"),
    "paraphrase": ("paraphrase-migrate-mrpc-sts", "paraphrase-labelled-e10",
                   "labels: 10 epochs, patience 3 (MRPC's 3668 pairs); no labels: 4 epochs over MRPC's and STS-B's "
                   "training pairs"),
    "intent": ("intent-migrate", "intent-labelled-mean", "3 epochs"),
    "slots": ("slots-migrate", "slots-labelled", "3 epochs"),
    "banking": ("banking-migrate", "banking-labelled", "15 epochs, patience 5"),
    "clinc": ("clinc-migrate", "clinc-labelled", "15 epochs, patience 5"),
}
# the first labelled runs of sentiment, similarity, paraphrase and intent used train's default pooling (cls), not
# the teacher's (mean) that the migrated students use: kept beside the re-runs with mean pooling
POOLING = {"sentiment": ("sentiment-migrate", "sentiment-labelled", "sentiment-labelled-mean"),
           "similarity": ("similarity-migrate", "similarity-labelled", "similarity-labelled-mean"),
           "paraphrase": ("paraphrase-migrate", "paraphrase-labelled", "paraphrase-labelled-mean"),
           "intent": ("intent-migrate", "intent-labelled", "intent-labelled-mean")}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() and path.stat().st_size else None


def migration_table() -> str:
    lines = ["| task (dev metric) | teacher: MiniLM-L6, labels | L3 with labels | L3 migrated, no labels | "
             "no labels / labels | agreement with the teacher (held-out texts) | texts | "
             "training (both arms unless named) |",
             "|---|---|---|---|---|---|---|---|"]
    ratios = []
    for task, (mig_name, lab_name, protocol) in RUNS.items():
        mig, lab = _load(mig_name), _load(lab_name)
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
                     f"{b['texts']['train']} + {b['texts']['holdout']} held out | {protocol} |")
    if ratios:
        lines.append(f"| **average ({len(ratios)} tasks)** | | | | **{100 * sum(ratios) / len(ratios):.1f}%**, "
                     f"lowest {100 * min(ratios):.1f}% | | | |")
    more, lab = _load("sentiment-migrate-16k"), _load(RUNS["sentiment"][1])
    if more is not None and lab is not None:  # texts cost nothing: 4x as many, still against 4000 labelled examples
        (b,) = more["branches"]
        ratio = b["dev"]["student"] / lab["dev"]["accuracy"]
        lines.append(f"| sentiment, 4x the texts (not in the average) | {100 * b['dev']['teacher']:.2f} | "
                     f"{100 * lab['dev']['accuracy']:.2f} (4000 labelled) | {100 * b['dev']['student']:.2f} | "
                     f"{100 * ratio:.1f}% | accuracy {100 * b['agreement']['value']:.2f} | "
                     f"{b['texts']['train']} + {b['texts']['holdout']} held out | 3 epochs |")
    return "\n".join(lines)


def pooling_table() -> str:
    """The labelled L3 branches with cls pooling (the first runs) and with the teacher's mean pooling."""
    lines = ["| task (dev metric) | L3 migrated (mean pooling, the teacher's) | L3 with labels, cls pooling | "
             "ratio | L3 with labels, mean pooling | ratio |", "|---|---|---|---|---|---|"]
    for task, (mig_name, cls_name, mean_name) in POOLING.items():
        mig, cls, mean = _load(mig_name), _load(cls_name), _load(mean_name)
        if mig is None or cls is None or mean is None:
            continue
        (b,) = mig["branches"]
        metric, got = b["dev"]["metric"], b["dev"]["student"]
        lines.append(f"| {task} ({metric}, 3 epochs) | {100 * got:.2f} | {100 * cls['dev'][metric]:.2f} | "
                     f"{100 * got / cls['dev'][metric]:.1f}% | {100 * mean['dev'][metric]:.2f} | "
                     f"{100 * got / mean['dev'][metric]:.1f}% |")
    return "\n".join(lines) if len(lines) > 2 else ""


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


def speed_table(name: str = "speed") -> str:
    sp = _load(name)
    if sp is None:
        return ""
    return "\n".join([
        "| composed model | trunk layers run | branch layers | texts/s | seconds |", "|---|---|---|---|---|",
        *[f"| {k}: {sp[k]['trunk']} | {sp[k]['trunk_layers_run']} | {sp[k]['branch_layers']} | "
          f"{sp[k]['texts_per_second']:.1f} | {sp[k]['seconds']:.2f} |" for k in ("old", "new")],
        f"| **new / old** | | | **x{sp['speedup']:.2f}** | |",
    ])


if __name__ == "__main__":
    print(migration_table(), pooling_table(), consolidation_table(), speed_table(), speed_table("speed-8"),
          sep="\n\n")
