#!/usr/bin/env bash
# The one-command GPU check: the GPU tests, then the evaluator benchmark in fp32, tf32, bf16
# and fp16 (time per point, deviation from fp32, peak memory), printed as rows for
# docs/performance.md's GPU table. Run from anywhere on a machine with a CUDA device:
#
#   benchmarks/gpu_check.sh                                  # ResNet-56, 50,000 CIFAR-shaped images
#   MODEL=resnet20 IMAGES=10000 POINTS=5 benchmarks/gpu_check.sh   # a shorter run
#
# Each benchmark's full output goes to stderr; the table rows to stdout. bf16 on a GPU before
# Ampere is refused by the evaluator and its row says so. Exits non-zero if the tests fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
MODEL=${MODEL:-resnet56}
IMAGES=${IMAGES:-50000}
BATCHES=${BATCHES:-1024,2048,4096}
POINTS=${POINTS:-10}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

GPU=$($PY -c 'import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible")
p = torch.cuda.get_device_properties(0)
print(f"{p.name} (compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB)")')
echo "gpu_check: $GPU, torch $($PY -c 'import torch; print(torch.__version__)')" >&2

MPLBACKEND=Agg $PY -m pytest tests/test_gpu.py tests/test_precision.py -q -p no:cacheprovider >&2

LABEL="$MODEL, $IMAGES CIFAR-shaped images, $GPU"
echo "| model, data, GPU | precision | ceiling (s/pass) | evaluator (s/point) | ratio | deviation from fp32 | peak memory |"
echo "|---|---|---|---|---|---|---|"
for precision in fp32 tf32 bf16 fp16; do
    # A refused precision exits 2 after printing why; the row says so and the check goes on.
    out=$($PY benchmarks/evaluator_speed.py --model "$MODEL" --images "$IMAGES" --device cuda \
        --precision "$precision" --batch-sizes "$BATCHES" --points "$POINTS" 2>&1) || true
    echo "$out" >&2
    $PY benchmarks/gpu_rows.py "$LABEL" "$precision" <<<"$out"
done
