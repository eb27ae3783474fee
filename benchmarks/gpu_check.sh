#!/usr/bin/env bash
# The one-command GPU check (issue 12): on a machine with an NVIDIA GPU, the GPU tests, then the
# ResNet-56 benchmark in fp32, tf32 and bf16 against the bare-forward ceiling (time per point,
# ratio, deviation from fp32, peak memory), printed as the rows of docs/performance.md's GPU table.
#
#   benchmarks/gpu_check.sh                           # ResNet-56, 50,000 CIFAR-shaped images, ~3-5 min on an H100/H200
#   PRECISIONS="fp32 tf32 bf16 fp16" benchmarks/gpu_check.sh      # fp16 too (GPUs before Ampere)
#   MODEL=resnet20 IMAGES=10000 POINTS=5 benchmarks/gpu_check.sh  # a shorter run
#   benchmarks/gpu_check.sh --smoke                   # on a CPU: the same pipeline on a tiny model, no GPU tests
#   LM=0 benchmarks/gpu_check.sh                      # without the language-model rows
#
# Then a ~1.1B-parameter Llama-style model (random init, bf16 weights; benchmarks/lm_speed.py), with
# seeded directions and with a direction file: setup, s/point over LM_SEQUENCES x LM_CONTEXT tokens
# (default 8 x 2048), tokens/s, peak memory, MFU. A bare GPU machine with only PyTorch needs the
# project's other wheels: benchmarks/fetch_wheels.sh here, then carry .wheels/ (docs/directions.md).
#
# Table rows go to stdout; everything else (tests, each benchmark's full output) to stderr.
# It fails loudly: no CUDA device (exit 3, one line saying why), a GPU test failing, or a
# benchmark that crashes (its row says "failed"; exit 1 after the table). bf16 on a GPU
# before Ampere is refused by the evaluator; its row says so and that is not a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg

SMOKE=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    *) echo "usage: benchmarks/gpu_check.sh [--smoke]" >&2; exit 2 ;;
esac

if [ "$SMOKE" = 1 ]; then
    # The pipeline, not the numbers: a CPU, a tiny model, one point per precision.
    DEVICE=cpu MODEL=${MODEL:-resnet8} IMAGES=${IMAGES:-32} BATCHES=${BATCHES:-16,32} POINTS=${POINTS:-1}
else
    DEVICE=cuda MODEL=${MODEL:-resnet56} IMAGES=${IMAGES:-50000} BATCHES=${BATCHES:-1024,2048,4096} POINTS=${POINTS:-10}
fi
# The device and torch's version from one interpreter (importing torch costs seconds; a smoke run reads the
# installed version without importing it): "<device>\t<versions>".
if ! INFO=$($PY - "$SMOKE" <<'EOF'
import sys
if sys.argv[1] == "1":
    from importlib.metadata import version
    print(f"CPU (smoke run, not a measurement)\ttorch {version('torch')}")
    sys.exit()
import torch
versions = f"torch {torch.__version__} CUDA {torch.version.cuda}"
from landscape_job.runtime.gpu import cuda_problem
problem = cuda_problem()
if problem is not None:
    sys.exit(f"gpu_check: no usable CUDA device: {problem}")
p = torch.cuda.get_device_properties(0)
print(f"{p.name} (compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB)\t{versions}")
EOF
); then
    exit 3
fi
GPU=${INFO%%$'\t'*}
PRECISIONS=${PRECISIONS:-fp32 tf32 bf16}
started=$SECONDS
echo "gpu_check: $GPU, ${INFO#*$'\t'}" >&2

if [ "$SMOKE" = 0 ]; then
    # -rs names any skipped test: on a GPU machine nothing in test_gpu.py may skip.
    $PY -m pytest tests/runtime/test_gpu.py tests/runtime/test_precision.py -q -rs -p no:cacheprovider >&2
fi

LABEL="$MODEL, $IMAGES CIFAR-shaped images, $GPU"
echo "| model, data, GPU | precision | ceiling (s/pass) | evaluator (s/point) | ratio | deviation from fp32 | peak memory |"
echo "|---|---|---|---|---|---|---|"
failed=0
for precision in $PRECISIONS; do
    code=0
    out=$($PY benchmarks/evaluator_speed.py --model "$MODEL" --images "$IMAGES" --device "$DEVICE" \
        --precision "$precision" --batch-sizes "$BATCHES" --points "$POINTS" 2>&1) || code=$?
    echo "$out" >&2
    # Exit 2 with "precision refused" is the evaluator refusing bf16 before Ampere: a row, not a failure.
    if [ "$code" != 0 ] && ! { [ "$code" = 2 ] && grep -q '^precision refused: ' <<<"$out"; }; then
        echo "gpu_check: the $precision benchmark failed (exit $code)" >&2
        failed=1
    fi
    $PY benchmarks/gpu_rows.py "$LABEL" "$precision" <<<"$out"
done
if [ "${LM:-1}" = 1 ]; then
    if [ "$SMOKE" = 1 ]; then
        LM_ARGS="--smoke --points 1"; LM_LABEL="tiny llama-style, 2 x 32 tokens, $GPU"
    else
        LM_ARGS="--sequences ${LM_SEQUENCES:-8} --context ${LM_CONTEXT:-2048} --points ${LM_POINTS:-5}"
        LM_LABEL="llama-style 1.1B bf16, ${LM_SEQUENCES:-8} x ${LM_CONTEXT:-2048} tokens, $GPU"
    fi
    echo
    echo "| model, tokens a point, GPU | directions | setup (s) | s/point | tokens/s | peak memory | MFU |"
    echo "|---|---|---|---|---|---|---|"
    for directions in seeded file; do
        code=0
        # shellcheck disable=SC2086 # LM_ARGS is a list of flags
        out=$($PY benchmarks/lm_speed.py $LM_ARGS --directions "$directions" 2>&1) || code=$?
        echo "$out" >&2
        if [ "$code" != 0 ]; then
            echo "gpu_check: the language-model benchmark with $directions directions failed (exit $code)" >&2
            failed=1
        fi
        $PY benchmarks/gpu_rows.py --lm "$LM_LABEL" "$directions" <<<"$out"
    done
fi
echo "gpu_check: done in $((SECONDS - started)) s" >&2
exit "$failed"
