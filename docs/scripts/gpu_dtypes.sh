#!/usr/bin/env bash
# The GPU rows of docs/benchmarks.md "Compute dtype" (issue 16 item 5), ready for a machine with a CUDA device:
#     bash docs/scripts/gpu_dtypes.sh [OUT_DIR]      # default docs/benchmarks; about 2 minutes on one GPU
# Each scenario: the composed model in float32, float16, bfloat16 and auto (what `auto` picks there), interleaved
# in one run, with achieved GFLOP/s, the fraction of the GPU's matmul peak per dtype and the max diff vs float32.
set -euo pipefail
out=${1:-docs/benchmarks}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
for scenario in paper-mixed xiaoai-21; do
    mtbranch bench --scenario "$scenario" --device cuda --compare-dtypes float32,float16,bfloat16,auto \
        --dtypes-only --batch-size 32 --seq-len 64 --rounds 10 --warmup 3 --workdir /tmp/mtbranch-bench \
        --json "$out/dtypes-$scenario-cuda.json"
done
