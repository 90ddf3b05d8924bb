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
