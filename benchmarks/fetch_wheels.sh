#!/usr/bin/env bash
# Downloads the wheels the project needs beyond PyTorch into .wheels/ (git-ignored), for a bare
# GPU machine that has its own PyTorch and no network (issue 23): carry the folder along, then
#
#   pip install --no-index --find-links .wheels -r .wheels/requirements.txt && benchmarks/gpu_check.sh
#
#   benchmarks/fetch_wheels.sh 3.12                   # wheels for CPython 3.12 on x86-64 Linux
#   PLATFORM=manylinux_2_28_aarch64 benchmarks/fetch_wheels.sh 3.11
#   benchmarks/fetch_wheels.sh --list                 # print the requirements, download nothing
#   ALL=1 benchmarks/fetch_wheels.sh 3.12             # every runtime dependency (~110 MB), not only the check's
#
# By default only what gpu_check.sh imports (~50 MB: a device run carries at most 64 MiB):
# numpy, h5py, PyYAML, tqdm, safetensors, matplotlib and pytest for the GPU tests it runs first;
# scikit-learn (PCA), boto3 (s3://) and torchvision (its zoo) are imported only when a run uses
# them. The versions are requirements/constraints.txt's (the ones the tests ran with). torch is
# left out: the machine's own PyTorch is the one to measure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${WHEELS:-.wheels}

# pyproject's runtime dependencies without torch/torchvision, plus pytest (read, not copied here).
requirements=$($PY - <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
names = [re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0] for d in deps]
import os
check = ("numpy", "h5py", "pyyaml", "tqdm", "safetensors", "matplotlib")
names = [n for n in names if n.lower() not in ("torch", "torchvision")]
print("\n".join([n for n in names if os.environ.get("ALL") == "1" or n.lower() in check] + ["pytest"]))
EOF
)

case "${1:-}" in
    --list) echo "$requirements"; exit 0 ;;
    "" | 3.*) ;;
    *) echo "usage: benchmarks/fetch_wheels.sh [PYTHON_VERSION | --list]" >&2; exit 2 ;;
esac
PYTHON_VERSION=${1:-$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
PLATFORM=${PLATFORM:-manylinux_2_28_x86_64}

mkdir -p "$OUT"
echo "$requirements" > "$OUT/requirements.txt"
# --only-binary with a target Python/platform: pip resolves as that machine would, without building.
# Older manylinux tags are asked for too: many wheels are published for manylinux2014 only.
$PY -m pip download --dest "$OUT" --only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" \
    --platform "$PLATFORM" --platform manylinux2014_"${PLATFORM#manylinux_*_*_}" --platform any \
    -c requirements/constraints.txt -r "$OUT/requirements.txt" >&2
echo "fetch_wheels: $(ls "$OUT"/*.whl | wc -l) wheels for CPython $PYTHON_VERSION ($PLATFORM) in $OUT," \
     "$(du -sh "$OUT" | cut -f1); carry $OUT to the GPU machine (docs/directions.md)" >&2
