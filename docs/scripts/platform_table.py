"""The eight-task table (paper Table 2 style) from the committed raw JSON in docs/results/platform/.

    python docs/scripts/platform_table.py > docs/platform.md

Inputs (all committed): one JSON per training run (`<run>.json`: the exact command, its --json result, wall
time, hardware), `references-3.json` (the full fine-tuning references of the three older tasks, as recorded
in docs/results.md), the shipped branches' manifests (examples/plugin-<task>/src/mtbranch_<task>/branch/), and
`composed-remeasure.json` (every task re-measured through the composed model, docs/scripts/remeasure_composed.py).
Nothing is typed in by hand here except which run is the reference and which branch is shipped per task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "docs" / "results" / "platform"
TRUNK_LAYERS = 6

# task -> dataset, metric, the full fine-tuning reference run, the shipped run and the other runs tried.
# A reference without a JSON file was not run (its command is printed under "Not run").
TASKS: dict[str, dict[str, Any]] = {
    "sentiment": {"data": "SST-2", "metric": "accuracy", "ref": "sentiment-full67k-ref", "ship": None},
    "similarity": {"data": "STS-B", "metric": "pearson", "ref": "similarity-full8", "ship": None},
    "entities": {"data": "CoNLL-2003", "metric": "entity_f1", "ref": "entities-full3", "ship": None},
    "paraphrase": {"data": "MRPC", "metric": "accuracy", "ref": "paraphrase-full2", "ship": "paraphrase-d4l2",
                   "tried": ["paraphrase-d6l0"]},
    "intent": {"data": "SNIPS intents", "metric": "accuracy", "ref": "intent-full1", "ship": "intent-d5l1",
               "tried": ["intent-d6l0"]},
    "slots": {"data": "SNIPS slots", "metric": "entity_f1", "ref": "slots-full1", "ship": "slots-d5l1", "tried": []},
    "banking": {"data": "Banking77", "metric": "accuracy", "ref": "banking-full1", "ship": "banking-d6l0",
                "tried": []},
    "clinc": {"data": "CLINC150 + oos", "metric": "accuracy", "ref": "clinc-full1", "ship": "clinc-d6l0",
              "tried": []},
}
D = "../shared/data"
COMMON = "--trunk minilm-l6 --threads 2 --cache-dir runs/cache --no-progress --json"
DATA = {
    "paraphrase": f"--task classification --train {D}/MRPC/train.tsv --dev {D}/MRPC/dev.tsv --quote-none "
                  "--text-col 3 --pair-col 4 --label-col 0 --label-names not_paraphrase,paraphrase --max-length 128 "
                  "--pooling mean",
    "intent": "--task classification --train runs/data/snips-intent/train.jsonl --dev runs/data/snips-intent/dev.jsonl "
              "--text-col text --label-col label --max-length 64 --pooling mean",
    "slots": f"--task token-classification --train {D}/snips/train --dev {D}/snips/valid --max-length 64",
    "banking": "--task classification --train runs/data/banking77/train.jsonl --dev runs/data/banking77/dev.jsonl "
               "--text-col text --label-col label --max-length 128 --pooling mean",
    "clinc": "--task classification --train runs/data/clinc150/train.jsonl --dev runs/data/clinc150/dev.jsonl "
             "--text-col text --label-col label --max-length 64 --pooling mean",
}
# the planned reference commands (same flags as the runs that did finish)
PLANNED = {
    "paraphrase-full2": ("paraphrase", "--full --epochs 2"),
    "intent-full1": ("intent", "--full --epochs 1"),
    "slots-full1": ("slots", "--full --epochs 1"),
    "banking-full1": ("banking", "--full --epochs 1"),
    "clinc-full1": ("clinc", "--full --epochs 1"),
}


NOTES = """
What this table says plainly:

- Four tasks have a full fine-tuning reference: the three older ones and `intent` (1 epoch of full fine-tuning,
  98.71, the same as its 1-layer branch: 100.0%; that run was paused with SIGSTOP from 02:51 to 04:04 UTC while
  branches trained, so its wall time includes the pause). `paraphrase`, `slots`, `banking` and `clinc` have
  none (see "Not run"), so their retention, the eight-task average and the 97% floor are **not measured**; the
  average in the goals table is over the four measured tasks only. A 1-epoch reference is short (the branch
  trained 3 epochs); on SNIPS intents both reach 98.71 (691 of 700).
- Two new branches are clearly weak and would very likely miss 97% of full fine-tuning: `paraphrase` (MRPC
  accuracy 71.57, F1 79.93; always answering "paraphrase" scores 68.38) and `slots` (SNIPS entity F1 80.86 with
  1 layer at depth 5, 3 epochs, still rising: 75.60, 79.31, 80.86). The 0-layer head at depth 6 for MRPC
  (`paraphrase-d6l0`, 69.12) is the majority baseline. More layers, epochs and distillation from a full
  fine-tuning teacher did not fit in the session's CPU time.
- The 0-layer heads on the trunk's sentence features for `clinc` (93.32) and `banking` (91.91) are plausible
  shipping branches; whether they keep 97% of full fine-tuning is not measured.
- Composed: 16 of 48 layers (33.3%): trunk to depth 6 (the two 0-layer heads need the last trunk layer),
  2 layers each for sentiment, similarity, entities, paraphrase at depth 4, 1 layer each for intent and slots at
  depth 5 (`mtbranch inspect` on the eight-branch artifact prints `6 + 10 = 16 of 48, 33.3%`).
"""


def _remeasured() -> dict[str, dict[str, Any]]:
    """Per task, its re-measurement through a composed artifact (the one with most branches that has it)."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("composed5-remeasure", "composed7-remeasure", "composed8-remeasure"):
        rec = _load(name)
        for task, row in (rec or {}).get("tasks", {}).items():
            out[task] = row | {"file": f"{name}.json", "artifact_layers": rec["composed_layers"]}
    return out


def remeasure_section() -> None:
    rows = _remeasured()
    if not rows:
        return
    print("\n## Re-measured through the composed model\n")
    print("The re-measurements ran on three artifacts as the branches arrived (5, 7, then 8 branches); a "
          "branch's outputs do not depend on the other branches in the artifact, and the branch files are the ones "
          "the plugin packages ship.\n")
    print("`python docs/scripts/remeasure_composed.py ARTIFACT`: every dev text (pair) of a task goes through "
          "`mtbranch predict ARTIFACT --input <task>.jsonl --task <task> --raw` on the composed artifact "
          "(`mtbranch compose --no-plugins --branch examples/plugin-<task>/src/mtbranch_<task>/branch ...`), "
          "1 thread; the metric is computed from the predictions and compared with the branch manifest's. "
          "Token tasks: the trainer's scoring (first sub-token of each dataset word; words past max_length "
          "left out) and, as extra columns, every word counted and the returned entity spans turned back "
          "into word tags (their word split is the tokenizer's, so CoNLL words such as `U.S.` split).\n")
    print("| task | metric | manifest | composed (predict) | abs diff | artifact | other figures |")
    print("|---|---|---|---|---|---|---|")
    for task, r in rows.items():
        key = r["metric"]
        extra = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in r["composed"].items() if k != key)
        art = r["artifact_layers"]
        print(f"| {task} | {key} | {pct(r['manifest'])} | {pct(r['composed'][key])} | {r['abs_diff']:.1e} | "
              f"`{r['file']}` ({art['total']} layers) | {extra or '-'} |")


def _load(name: str) -> dict[str, Any] | None:
    p = RAW / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _manifest(task: str) -> dict[str, Any] | None:
    p = ROOT / "examples" / f"plugin-{task}" / "src" / f"mtbranch_{task}" / "branch" / "manifest.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _run_metric(rec: dict[str, Any] | None, metric: str) -> float | None:
    if not rec or not rec.get("result"):
        return None
    res = rec["result"]
    dev = res.get("dev") or res.get("student") or {}
    return dev.get(metric)


def _recipe(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "not run"
    cmd = rec["command"].split()
    keep = []
    for flag in ("--layers", "--epochs", "--lr", "--head-lr", "--alpha", "--student-layers", "--student-depth"):
        if flag in cmd:
            keep.append(f"{flag.lstrip('-')} {cmd[cmd.index(flag) + 1]}")
    if "--full" in cmd:
        keep.insert(0, "full")
    if "distill" in cmd:
        keep.insert(0, "distilled from full FT")
    return ", ".join(keep)


def _ratio(r: float | None) -> str:
    return "not measured" if r is None else f"{100 * r:.1f}%"


def _s(x: object) -> str:
    return "-" if x is None else str(x)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


INTRO = """# Eight tasks on one MiniLM-L6 trunk (paper Table 2)

Generated by `python docs/scripts/platform_table.py > docs/platform.md` from the committed raw JSON in
[`docs/results/platform/`](results/platform/) (one file per training run: the exact command, its `--json` result,
wall time, hardware) and the shipped branches' manifests. Trunk: `all-MiniLM-L6-v2` (6 layers, hidden 384,
`minilm-l6` from `examples/trunk-minilm`). Hardware: a shared 2-core AMD EPYC (avx512_bf16, no AMX), 2 torch
threads, with up to 7 agents' jobs on the same cores (wall times are not comparable between runs). Seed 42,
AdamW, linear schedule with 6% warm-up, batch 32, best dev epoch kept. Metrics are on dev splits, in percent.
The five new tasks were trained with the SDK as of commit 4c9889c (a clone, `/tmp/h17`, while `core/` was being
restructured); the commands below are as run there; they were not re-run with the current code.

Data (`../shared/data`, never copied into the repo; [SOURCES.md](../../shared/data/SOURCES.md)): SST-2 dev,
STS-B sts-dev, CoNLL-2003 valid, MRPC dev (408 pairs), SNIPS valid (700 utterances; intents from `label`,
slots from `seq.out`), Banking77 (no dev split: a seeded stratified 10% of `train.csv`, 1,001 rows, is the dev
set and the other 9,002 rows train, `docs/scripts/prepare_data.py`), CLINC150 `data_full.json` (train +
oos_train, dev = val + oos_val, 3,100 rows, 151 classes with `oos`). `python docs/scripts/prepare_data.py --out
runs/data` writes the converted JSONL files the commands below read
([row counts and sha256](results/platform/prepare_data.json)).

"Full fine-tuning" is `mtbranch train --full`: every transformer layer trained (depth 0, 6 layers, initialised
from the trunk; the embeddings frozen), a separate 6-layer model per task. A branch of L layers at depth d
keeps the trunk frozen up to layer d and trains L layers initialised from trunk layers d+1..d+L; L = 0 is a
head on the trunk's last layer. The three older tasks' references and branches are documented in
[results](results.md).
"""


def main() -> None:
    print(INTRO)
    refs3 = json.loads((RAW / "references-3.json").read_text())
    remeasure = _remeasured()
    rows = []
    all_ratios: list[float | None] = []
    total = 0
    depths, layers = [], []
    for task, t in TASKS.items():
        m = _manifest(task)
        metric = t["metric"]
        if t["ship"] is None:
            ref = refs3[task]["value"]
            ref_name = f"`{t['ref']}` (docs/results.md)"
            ship = m["metrics"].get(f"dev_{metric}") if m else None
            recipe = refs3[task]["shipped_recipe"]
        else:
            ref = _run_metric(_load(t["ref"]), metric)
            ref_name = f"`{t['ref']}` ({_recipe(_load(t['ref']))})" if _load(t["ref"]) else f"`{t['ref']}`: not run"
            srec = _load(t["ship"])
            ship = _run_metric(srec, metric)
            recipe = f"`{t['ship']}` ({_recipe(srec)})"
            if m is not None and ship is not None and abs(m["metrics"].get(f"dev_{metric}", -1) - ship) > 1e-6:
                recipe += " **(manifest differs from run JSON)**"
        depth = m["attach_depth"] if m else None
        n = m["num_layers"] if m else None
        if depth is not None:
            depths.append(depth)
            layers.append(n)
        ratio = None if ref is None or ship is None else ship / ref
        all_ratios.append(ratio)
        composed = None
        if task in remeasure:
            composed = remeasure[task]["composed"].get(metric)
        flag = "" if ratio is None or ratio >= 0.97 else " **(< 97%)**"
        rows.append(f"| {task} | {t['data']} ({metric}) | {ref_name} {pct(ref)} | {recipe} | {_s(depth)} | {_s(n)} | "
                    f"{pct(ship)} | {pct(composed)} | {_ratio(ratio)}{flag} |")
    print("## Table\n")
    print("| task | data (dev metric) | full fine-tuning (6 layers) | shipped branch | depth | layers | branch "
          "(trainer) | branch (composed, predict) | branch / full FT |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if depths:
        total = max(depths) + sum(layers)
        print(f"\nComposed: trunk to depth {max(depths)} + {sum(layers)} branch layers = {total} of "
              f"{TRUNK_LAYERS * len(TASKS)} layers ({100 * total / (TRUNK_LAYERS * len(TASKS)):.1f}%).")
    print("\n## Against the issue's goals\n")
    measured = {task: r for task, r in zip(TASKS, all_ratios, strict=True) if r is not None}
    unmeasured = [task for task, r in zip(TASKS, all_ratios, strict=True) if r is None]
    avg = sum(measured.values()) / len(measured) if measured else None
    below = [task for task, r in measured.items() if r < 0.97]
    met_avg = "**no** (not measured for every task)" if unmeasured else \
        ("yes" if avg is not None and avg >= 0.985 else "**no**")
    print("| goal | measured | met |")
    print("|---|---|---|")
    print(f"| average retention >= 98.5% over the eight tasks | {_ratio(avg)} over {len(measured)} task(s) "
          f"({', '.join(measured)}); no full fine-tuning reference for {', '.join(unmeasured) or 'none'} | "
          f"{met_avg} |")
    print(f"| no task below 97% of full fine-tuning | below: {', '.join(below) or 'none'} of the measured; "
          f"unknown: {', '.join(unmeasured) or 'none'} | {'**no**' if below or unmeasured else 'yes'} |")
    if depths:
        print(f"| composed layers <= 17 of 48 (35%) | {total} of {TRUNK_LAYERS * len(TASKS)} | "
              f"{'yes' if total <= 17 else '**no**'} |")
    print(NOTES)
    remeasure_section()
    missing = [r for r in PLANNED if _load(r) is None]
    if missing:
        print("\n## Not run\n")
        print("These full fine-tuning references did not fit in the session's CPU time (one full fine-tuning "
              "epoch of 13k SNIPS utterances took about an hour of wall time on the shared cores); their rows "
              "have no retention. The commands, as planned:\n")
        for r in missing:
            task, flags = PLANNED[r]
            print(f"- `{r}`:\n\n  ```\n  mtbranch train {DATA[task]} {COMMON} {flags} --lr 1e-4 --head-lr 1e-3 "
                  f"--name {task} --owner team-{task} -o runs/out/{r}\n  ```")
    print("\n## Commands\n")
    print("Every run of the new tasks (the shipped branch, the reference and the other runs tried), as recorded; "
          "paths are as run (`/work/runs17` was the run directory, `/work/shared/data` is `../shared/data`).\n")
    for p in sorted(RAW.glob("*.json")):
        rec = json.loads(p.read_text())
        if "name" not in rec or "command" not in rec:
            continue
        res = rec.get("result") or {}
        metric = res.get("metric")
        dev = res.get("dev") or res.get("student") or {}
        val = f"{metric} {pct(dev.get(metric))}" if metric else "no result"
        print(f"- `{rec['name']}` ({val}, {rec['wall_s']:.0f} s wall, started {rec['started']}):\n")
        print(f"  ```\n  {rec['command']}\n  ```")


if __name__ == "__main__":
    main()
