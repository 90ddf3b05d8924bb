#!/bin/bash
# the four branches of docs/benchmarks.md "Shared pair branches in the product"; ROOT /tmp/pairs-bench holds example/ (the example artifact)
# $1 = stsb|mrpc, $2 = joint|shared: the same settings for both modes (run as four parallel jobs)
cd "$(dirname "$0")/../.."
D=/work/shared/data
COMMON="--trunk /tmp/pairs-bench/example/trunk --depth 4 --layers 2 --pooling mean --no-projection --epochs 2 --patience 0 --max-train 1000 --seed 0 --batch-size 32 --lr 1e-4 --head-lr 1e-3 --threads 1 --no-progress --json"
if [ "$1" = stsb ]; then
  ARGS="--task regression --train $D/STS-B/sts-train.csv --dev $D/STS-B/sts-dev.csv --no-header --quote-none --text-col 5 --pair-col 6 --label-col 4 --name similarity"
else
  ARGS="--task classification --train $D/MRPC/train.tsv --dev $D/MRPC/dev.tsv --quote-none --text-col '#1 String' --pair-col '#2 String' --label-col Quality --name paraphrase"
fi
start=$(date +%s)
eval OMP_NUM_THREADS=1 .venv/bin/mtbranch train $ARGS $COMMON --pair-mode $2 -o /tmp/pairs-bench/$1-$2 > /tmp/pairs-bench/$1-$2.json 2> /tmp/pairs-bench/$1-$2.err
echo "$1 $2 rc=$? seconds=$(( $(date +%s) - start ))" >> /tmp/pairs-bench/train.log
