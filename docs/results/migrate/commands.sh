#!/bin/bash
# The commands behind docs/migrate.md, as run (1 torch thread, 2-core AMD EPYC).
# texts: the training files with their labels dropped:
#   tail -n +2 SST-2/train.tsv | cut -f1 > sst2-train.txt
#   awk 'BEGIN{s=""} /^-DOCSTART-/{next} NF==0{if(s!="")print s; s=""; next} {s = (s=="" ? $1 : s" "$1)} END{if(s!="")print s}' conll2003/train.txt > conll-train.txt
#   awk -F'\t' '{print $6"\t"$7}' STS-B/sts-train.csv > sts-train.txt

# run.sh: the three migrations and their labelled baselines
# Real migrations MiniLM-L6 -> MiniLM-L3 (no labels) vs labelled training on L3 at the same depth/size.
set -x
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate/.venv/bin/mtbranch
EX=/work/wt-migrate/examples
D=/work/shared/data
T=/tmp/mig-runs/texts
R=/tmp/mig-runs/results
COMMON="--to-trunk minilm-l3 --from-trunk minilm-l6 --layers 2 --epochs 3 --patience 3 --lr 3e-4 --threads 1 --no-progress --json"
# sentiment (SST-2): 4000 texts
$M migrate $EX/plugin-sentiment/src/mtbranch_sentiment/branch $COMMON --texts $T/sst2-train.txt --max-texts 4000 \
  --dev sentiment=$D/SST-2/dev.tsv --dev-text-col sentence --dev-label-col label --dev-label-names negative,positive \
  -o /tmp/mig-runs/sentiment > $R/sentiment-migrate.json 2> $R/sentiment-migrate.log
$M train --trunk minilm-l3 --task classification --train $D/SST-2/train.tsv --dev $D/SST-2/dev.tsv --text-col sentence \
  --label-col label --label-names negative,positive --layers 2 --depth 1 --max-train 4000 --epochs 3 --lr 3e-4 \
  --threads 1 --no-progress --json --name sentiment -o /tmp/mig-runs/sentiment-labelled > $R/sentiment-labelled.json 2> $R/sentiment-labelled.log
# entities (CoNLL-2003): 2000 sentences
$M migrate $EX/plugin-entities/src/mtbranch_entities/branch $COMMON --texts $T/conll-train.txt --max-texts 2000 \
  --dev entities=$D/conll2003/valid.txt -o /tmp/mig-runs/entities > $R/entities-migrate.json 2> $R/entities-migrate.log
$M train --trunk minilm-l3 --task token-classification --train $D/conll2003/train.txt --dev $D/conll2003/valid.txt \
  --layers 2 --depth 1 --max-train 2000 --epochs 3 --lr 3e-4 --threads 1 --no-progress --json --name entities \
  -o /tmp/mig-runs/entities-labelled > $R/entities-labelled.json 2> $R/entities-labelled.log
# similarity (STS-B pairs): 3000 pairs
$M migrate $EX/plugin-similarity/src/mtbranch_similarity/branch $COMMON --texts $T/sts-train.txt --max-texts 3000 \
  --dev similarity=$D/STS-B/sts-dev.csv --dev-no-header --dev-quote-none --dev-text-col 5 --dev-pair-col 6 --dev-label-col 4 \
  -o /tmp/mig-runs/similarity > $R/similarity-migrate.json 2> $R/similarity-migrate.log
$M train --trunk minilm-l3 --task regression --train $D/STS-B/sts-train.csv --dev $D/STS-B/sts-dev.csv --no-header \
  --quote-none --text-col 5 --pair-col 6 --label-col 4 --layers 2 --depth 1 --max-train 3000 --epochs 3 --lr 3e-4 \
  --threads 1 --no-progress --json --name similarity -o /tmp/mig-runs/similarity-labelled > $R/similarity-labelled.json 2> $R/similarity-labelled.log
echo done

# run2.sh: consolidation
# Consolidation: a full fine-tuned transformers checkpoint -> a 2-layer branch on MiniLM-L6, no labels.
set -x
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
# (started after the run.sh jobs were under way)
R=/tmp/mig-runs/results
/work/wt-migrate/.venv/bin/python docs/scripts/migrate_finetune_hf.py /tmp/mig-runs/sst2-full-ft > $R/consolidation-finetune.log 2>&1
/work/wt-migrate/.venv/bin/mtbranch migrate /tmp/mig-runs/sst2-full-ft --name sentiment --to-trunk minilm-l6 --layers 2 \
  --epochs 3 --patience 3 --lr 3e-4 --threads 1 --no-progress --json --texts /tmp/mig-runs/texts/sst2-train.txt \
  --max-texts 4000 --dev sentiment=/work/shared/data/SST-2/dev.tsv --dev-text-col sentence --dev-label-col label \
  --dev-label-names negative,positive -o /tmp/mig-runs/consolidated > $R/consolidation-migrate.json 2> $R/consolidation-migrate.log
echo done

# run3.sh: 4x the unlabelled texts
# Unlabelled texts cost nothing: the same sentiment migration from 16000 SST-2 texts instead of 4000.
set -x
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
while pgrep -f "bash ./run.sh" > /dev/null; do sleep 20; done
R=/tmp/mig-runs/results
/work/wt-migrate/.venv/bin/mtbranch migrate /work/wt-migrate/examples/plugin-sentiment/src/mtbranch_sentiment/branch \
  --to-trunk minilm-l3 --from-trunk minilm-l6 --layers 2 --epochs 3 --patience 3 --lr 3e-4 --threads 1 --no-progress \
  --json --speed-texts 0 --texts /tmp/mig-runs/texts/sst2-train.txt --max-texts 16000 \
  --dev sentiment=/work/shared/data/SST-2/dev.tsv --dev-text-col sentence --dev-label-col label \
  --dev-label-names negative,positive -o /tmp/mig-runs/sentiment-16k > $R/sentiment-migrate-16k.json 2> $R/sentiment-migrate-16k.log
echo done

# run4.sh: two more branches
# Two more branches: paraphrase (MRPC pairs, 2 layers) and intent (SNIPS, 1 layer), same protocol as run.sh.
set -x
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate/.venv/bin/mtbranch
EX=/work/wt-migrate/examples
D=/work/shared/data
T=/tmp/mig-runs/texts
R=/tmp/mig-runs/results
COMMON="--to-trunk minilm-l3 --from-trunk minilm-l6 --epochs 3 --patience 3 --lr 3e-4 --threads 1 --no-progress --json --speed-texts 0"
# paraphrase (MRPC): all 3668 training pairs
$M migrate $EX/plugin-paraphrase/src/mtbranch_paraphrase/branch $COMMON --layers 2 --texts $T/mrpc-train.txt \
  --dev paraphrase=$D/MRPC/dev.tsv --dev-text-col "#1 String" --dev-pair-col "#2 String" --dev-label-col Quality \
  --dev-quote-none --dev-label-names not_paraphrase,paraphrase -o /tmp/mig-runs/paraphrase > $R/paraphrase-migrate.json 2> $R/paraphrase-migrate.log
$M train --trunk minilm-l3 --task classification --train $D/MRPC/train.tsv --dev $D/MRPC/dev.tsv --text-col "#1 String" \
  --pair-col "#2 String" --label-col Quality --quote-none --label-names not_paraphrase,paraphrase --layers 2 --depth 1 \
  --epochs 3 --lr 3e-4 --threads 1 --no-progress --json --name paraphrase -o /tmp/mig-runs/paraphrase-labelled > $R/paraphrase-labelled.json 2> $R/paraphrase-labelled.log
# intent (SNIPS): 4000 texts; the shipped branch has 1 layer (at depth 5): 1 layer at depth 2 on L3
$M migrate $EX/plugin-intent/src/mtbranch_intent/branch $COMMON --layers 1 --texts $T/snips-train.txt --max-texts 4000 \
  --dev intent=/work/main/runs/data/snips-intent/dev.jsonl --dev-text-col text --dev-label-col label \
  -o /tmp/mig-runs/intent > $R/intent-migrate.json 2> $R/intent-migrate.log
$M train --trunk minilm-l3 --task classification --train /work/main/runs/data/snips-intent/train.jsonl \
  --dev /work/main/runs/data/snips-intent/dev.jsonl --text-col text --label-col label --layers 1 --depth 2 --max-train 4000 \
  --epochs 3 --lr 3e-4 --threads 1 --no-progress --json --name intent -o /tmp/mig-runs/intent-labelled > $R/intent-labelled.json 2> $R/intent-labelled.log
echo done
# (texts: tail -n +2 MRPC/train.tsv | awk -F'\t' '{print $4"\t"$5}' > mrpc-train.txt; snips-train.txt: the text field of each JSON line)

# speed
OMP_NUM_THREADS=1 python docs/scripts/migrate_speed.py /tmp/mig-runs > docs/results/migrate/speed.json

# ---- session 2 (/work/wt-migrate2; texts under /tmp/mig2/texts, results copied from /tmp/mig2/results) ----
# texts: banking77-train.txt and clinc150-train.txt: the "text" field of each line of /work/main/runs/data/{banking77,clinc150}/train.jsonl
#   (docs/scripts/prepare_data.py's files, the shipped branches' training data); slots reads snips/train/seq.in as it is
#   (its tags are in seq.out); mrpc-train.txt as above

# laneA.sh
# laneA: slots (SNIPS slot tagging): 4000 utterances, 2 layers at depth 1 of L3, 3 epochs (as run.sh)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate2/.venv/bin/mtbranch
EX=/work/wt-migrate2/examples
D=/work/shared/data
R=/tmp/mig2/results
COMMON="--to-trunk minilm-l3 --from-trunk minilm-l6 --epochs 3 --patience 3 --lr 3e-4 --threads 1 --no-progress --json --speed-texts 0"
$M migrate $EX/plugin-slots/src/mtbranch_slots/branch $COMMON --layers 2 --texts $D/snips/train/seq.in --max-texts 4000 \
  --dev slots=$D/snips/valid -o /tmp/mig2/slots > $R/slots-migrate.json 2> $R/slots-migrate.log
$M train --trunk minilm-l3 --task token-classification --train $D/snips/train --dev $D/snips/valid \
  --layers 2 --depth 1 --max-train 4000 --epochs 3 --lr 3e-4 --threads 1 --no-progress --json --name slots \
  -o /tmp/mig2/slots-labelled > $R/slots-labelled.json 2> $R/slots-labelled.log

# laneB.sh
# laneB: banking (Banking77) and clinc (CLINC150 + oos): heads on the trunk's last layer (0 layers, mean pooling),
# all training texts, 15 epochs, patience 5 (the shipped branches' recipe), both arms alike
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate2/.venv/bin/mtbranch
EX=/work/wt-migrate2/examples
RD=/work/main/runs/data
T=/tmp/mig2/texts
R=/tmp/mig2/results
COMMON="--to-trunk minilm-l3 --from-trunk minilm-l6 --layers 0 --epochs 15 --patience 5 --lr 3e-4 --threads 1 --no-progress --json --speed-texts 0"
$M migrate $EX/plugin-banking/src/mtbranch_banking/branch $COMMON --texts $T/banking77-train.txt \
  --dev banking=$RD/banking77/dev.jsonl --dev-text-col text --dev-label-col label -o /tmp/mig2/banking \
  > $R/banking-migrate.json 2> $R/banking-migrate.log
$M train --trunk minilm-l3 --task classification --train $RD/banking77/train.jsonl --dev $RD/banking77/dev.jsonl \
  --text-col text --label-col label --layers 0 --depth 3 --pooling mean --epochs 15 --patience 5 --lr 3e-4 --threads 1 \
  --no-progress --json --name banking -o /tmp/mig2/banking-labelled > $R/banking-labelled.json 2> $R/banking-labelled.log
$M migrate $EX/plugin-clinc/src/mtbranch_clinc/branch $COMMON --texts $T/clinc150-train.txt \
  --dev clinc=$RD/clinc150/dev.jsonl --dev-text-col text --dev-label-col label -o /tmp/mig2/clinc \
  > $R/clinc-migrate.json 2> $R/clinc-migrate.log
$M train --trunk minilm-l3 --task classification --train $RD/clinc150/train.jsonl --dev $RD/clinc150/dev.jsonl \
  --text-col text --label-col label --layers 0 --depth 3 --pooling mean --epochs 15 --patience 5 --lr 3e-4 --threads 1 \
  --no-progress --json --name clinc -o /tmp/mig2/clinc-labelled > $R/clinc-labelled.json 2> $R/clinc-labelled.log

# laneA2.sh (after laneA; it ran this migration only: its two labelled runs moved to lane3.sh and lane4.sh, which
# ran in parallel with it and with laneB to fit the time left)
# laneA2 (after laneA): paraphrase (MRPC pairs) again, both arms alike: 10 epochs (the shipped branch's), patience 3,
# mean pooling (the teacher's; the labelled run of run4.sh used train's default, cls), all 3668 training pairs
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate2/.venv/bin/mtbranch
EX=/work/wt-migrate2/examples
D=/work/shared/data
T=/tmp/mig2/texts
R=/tmp/mig2/results
$M migrate $EX/plugin-paraphrase/src/mtbranch_paraphrase/branch --to-trunk minilm-l3 --from-trunk minilm-l6 --layers 2 \
  --epochs 10 --patience 3 --lr 3e-4 --threads 1 --no-progress --json --speed-texts 0 --texts $T/mrpc-train.txt \
  --dev paraphrase=$D/MRPC/dev.tsv --dev-text-col "#1 String" --dev-pair-col "#2 String" --dev-label-col Quality \
  --dev-quote-none --dev-label-names not_paraphrase,paraphrase -o /tmp/mig2/paraphrase-e10 \
  > $R/paraphrase-migrate-e10.json 2> $R/paraphrase-migrate-e10.log

# lane3.sh (after laneB)
# lane3 (after laneB, i.e. clinc): replaces laneB2 and laneA2's tail (same commands, reordered to fit the time left)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate2/.venv/bin/mtbranch
D=/work/shared/data
R=/tmp/mig2/results
$M train --trunk minilm-l3 --task classification --train $D/MRPC/train.tsv --dev $D/MRPC/dev.tsv --text-col "#1 String" \
  --pair-col "#2 String" --label-col Quality --quote-none --label-names not_paraphrase,paraphrase --layers 2 --depth 1 \
  --pooling mean --epochs 10 --patience 3 --lr 3e-4 --threads 1 --no-progress --json --name paraphrase \
  -o /tmp/mig2/paraphrase-labelled-e10 > $R/paraphrase-labelled-e10.json 2> $R/paraphrase-labelled-e10.log
$M train --trunk minilm-l3 --task regression --train $D/STS-B/sts-train.csv --dev $D/STS-B/sts-dev.csv --no-header \
  --quote-none --text-col 5 --pair-col 6 --label-col 4 --layers 2 --depth 1 --max-train 3000 --pooling mean --epochs 3 \
  --lr 3e-4 --threads 1 --no-progress --json --name similarity -o /tmp/mig2/similarity-labelled-mean \
  > $R/similarity-labelled-mean.json 2> $R/similarity-labelled-mean.log
$M train --trunk minilm-l3 --task classification --train $D/MRPC/train.tsv --dev $D/MRPC/dev.tsv --text-col "#1 String" \
  --pair-col "#2 String" --label-col Quality --quote-none --label-names not_paraphrase,paraphrase --layers 2 --depth 1 \
  --pooling mean --epochs 3 --lr 3e-4 --threads 1 --no-progress --json --name paraphrase \
  -o /tmp/mig2/paraphrase-labelled-mean > $R/paraphrase-labelled-mean.json 2> $R/paraphrase-labelled-mean.log

# lane4.sh (after the 10-epoch paraphrase migration)
# lane4 (after the paraphrase 10-epoch migration, pid 32296)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate2/.venv/bin/mtbranch
D=/work/shared/data
R=/tmp/mig2/results
$M train --trunk minilm-l3 --task classification --train /work/main/runs/data/snips-intent/train.jsonl \
  --dev /work/main/runs/data/snips-intent/dev.jsonl --text-col text --label-col label --layers 1 --depth 2 --max-train 4000 \
  --pooling mean --epochs 3 --lr 3e-4 --threads 1 --no-progress --json --name intent -o /tmp/mig2/intent-labelled-mean \
  > $R/intent-labelled-mean.json 2> $R/intent-labelled-mean.log
$M train --trunk minilm-l3 --task classification --train $D/SST-2/train.tsv --dev $D/SST-2/dev.tsv --text-col sentence \
  --label-col label --label-names negative,positive --layers 2 --depth 1 --max-train 4000 --pooling mean --epochs 3 \
  --lr 3e-4 --threads 1 --no-progress --json --name sentiment -o /tmp/mig2/sentiment-labelled-mean \
  > $R/sentiment-labelled-mean.json 2> $R/sentiment-labelled-mean.log

# the paraphrase teacher against MRPC's training labels (docs/migrate.md, paraphrase): /tmp/mig2/teacher_train.py is
#   # The paraphrase teacher's agreement with MRPC's training labels: its cached outputs over mrpc-train.txt (the
#   # 10-epoch migration's OUT/.cache) against train.tsv's Quality column, line by line.
#   import glob, json, sys
#   import numpy as np
#   x = np.load(glob.glob(sys.argv[1] + "/.cache/teacher-paraphrase-*.npz")[0])["flat"]
#   rows = [r.split("\t") for r in open(sys.argv[2], encoding="utf-8-sig").read().splitlines()[1:] if r.strip()]
#   y = np.array([int(r[0]) for r in rows])
#   pred = x.argmax(-1)
#   print(json.dumps({"pairs": int(len(y)), "teacher_accuracy_on_train_labels": float((pred == y).mean()),
#                     "teacher_says_paraphrase": float(pred.mean()), "labels_paraphrase": float(y.mean())}, indent=2))
python teacher_train.py /tmp/mig2/paraphrase-e10 /work/shared/data/MRPC/train.tsv > docs/results/migrate/paraphrase-teacher-train.json

# speed8.sh: the eight teacher branches on L6 vs the eight migrated ones on L3 (run twice: the first pass, kept as
# speed-8-first.json, ran beside the last labelled run of lane3.sh; the second, speed-8.json, beside no run of this session)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
cd /work/wt-migrate2 && .venv/bin/python docs/scripts/migrate_speed.py sentiment=/tmp/mig-runs/sentiment/branches/sentiment \
  entities=/tmp/mig-runs/entities/branches/entities similarity=/tmp/mig-runs/similarity/branches/similarity \
  paraphrase=/tmp/mig2/paraphrase-e10/branches/paraphrase intent=/tmp/mig-runs/intent/branches/intent \
  slots=/tmp/mig2/slots/branches/slots banking=/tmp/mig2/banking/branches/banking clinc=/tmp/mig2/clinc/branches/clinc \
  > /tmp/mig2/results/speed-8.json 2> /tmp/mig2/results/speed-8.err

# paraphrase-mrpc-sts.sh (session 8, lead): paraphrase migrated from more unlabelled pairs. Unlabelled texts cost
# nothing: MRPC's 3668 training pairs plus STS-B's 5749 training pairs (both pair files of ../shared/data, labels
# dropped, pairs kept as pairs), 4 epochs; the labelled arm (paraphrase-labelled-e10) cannot use STS-B's pairs (they
# carry no paraphrase labels). Same student: 2 layers at depth 1 of L3, mean pooling, lr 3e-4.
#   awk -F'\t' '{print $6"\t"$7}' STS-B/sts-train.csv > /tmp/lead/para/sts-train.txt
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
M=/work/wt-migrate2/.venv/bin/mtbranch
EX=/work/wt-migrate2/examples
D=/work/shared/data
$M migrate $EX/plugin-paraphrase/src/mtbranch_paraphrase/branch --to-trunk minilm-l3 --from-trunk minilm-l6 --layers 2 \
  --epochs 4 --patience 3 --lr 3e-4 --threads 1 --no-progress --json --speed-texts 0 \
  --texts /tmp/mig2/texts/mrpc-train.txt --texts /tmp/lead/para/sts-train.txt \
  --dev paraphrase=$D/MRPC/dev.tsv --dev-text-col "#1 String" --dev-pair-col "#2 String" --dev-label-col Quality \
  --dev-quote-none --dev-label-names not_paraphrase,paraphrase -o /tmp/lead/para/out \
  > docs/results/migrate/paraphrase-migrate-mrpc-sts.json 2> docs/results/migrate/paraphrase-migrate-mrpc-sts.log
