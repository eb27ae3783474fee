# syntax=docker/dockerfile:1
#
# The landscape pod image: landscape_job on NVIDIA's PyTorch image. Only what the pods run:
# the launcher and its Kubernetes client stay on the user's machine (pyproject's
# [launcher] extra); the merge pod reads its Job's status with urllib (landscape_job/runtime/jobwatch.py).
#
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t ghcr.io/landscape-dev/landscape:0.1.0 .
#
# Base: NGC PyTorch 26.09, the newest release whose PyTorch minor version (2.14) is the one
# CI tests (requirements/constraints.txt: torch==2.14.1; tests/kubernetes/test_image.py keeps the two
# in step). It brings, as far as public sources show (NVIDIA's release-notes page for
# 26.09 was not reachable from where this was written; re-check it before a release):
#   * PyTorch 2.14.0a0 (NVIDIA's build, "2.14.0a0+<commit>.nv26.9"), with its torchvision;
#   * CUDA 13.4.1, cuDNN 9.26, Triton 3.8; Ubuntu 24.04, Python 3.12;
#   * driver floor: the R580 branch (CUDA 13.x's minor-version compatibility; images of this
#     line are reported running on driver 580 in forward-compatibility mode). The
#     forward-compatibility set-up is done by NVIDIA's entrypoint script, which is why it
#     stays in front of ours (ENTRYPOINT below, and no `command:` in the rendered pods).
#   * GPUs: compute capability 7.5 (Turing) and later; bf16 needs 8.0 (landscape_job/runtime/precision.py).
# The digest is that of the multi-arch index of nvcr.io/nvidia/pytorch:26.09-py3 as two
# independent public Dockerfiles pin it (the registry itself was not reachable here).
# To re-pin, on a machine with registry access:
#   docker buildx imagetools inspect nvcr.io/nvidia/pytorch:26.09-py3 --format '{{.Manifest.Digest}}'
# and replace the sha256 below (tests/kubernetes/test_image.py requires tag and digest together).
#
# NVIDIA builds torch against the image's own CUDA, cuDNN and NCCL, and its other Python
# packages (NumPy among them) against that torch, so the base must survive this build
# unchanged:
#   * every package the base has is frozen at its version (a constraints file written from
#     `pip list` before anything is installed): a dependency asking for another torch or
#     NumPy fails the build instead of replacing it. NumPy in particular stays the base's
#     (its major version is an ABI boundary for NVIDIA's prebuilt extensions), whatever
#     requirements/constraints.txt pins for CI;
#   * what the base lacks is pinned as in requirements/constraints.txt (tested in CI);
#   * the named requirements are pyproject.toml's runtime dependencies minus torch,
#     torchvision and NumPy, with pyproject's own bounds (tests/kubernetes/test_image.py checks it);
#   * the project goes in with --no-deps; afterwards the build fails if any package of the
#     base changed version or went missing, or torch's NumPy bridge broke.
# NGC images from 25.03 on set PIP_CONSTRAINT=/etc/pip/constraint.txt; it is cleared for the
# installs below, which bring the same freeze (and the pins of what is new) themselves.
FROM nvcr.io/nvidia/pytorch:26.09-py3@sha256:6e8ccc607fc2a51e3741667b86316a0889418ba8b78ed0ba96e8d282b648a7a6

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="landscape" \
      org.opencontainers.image.description="Loss landscapes of neural networks as a Kubernetes batch job: the pods' image (landscape-job)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/landscape-dev/landscape" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="landscape-dev" \
      org.opencontainers.image.base.name="nvcr.io/nvidia/pytorch:26.09-py3" \
      org.opencontainers.image.base.digest="sha256:6e8ccc607fc2a51e3741667b86316a0889418ba8b78ed0ba96e8d282b648a7a6"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /opt/landscape

# A layer of its own, so a source change does not reinstall the dependencies.
COPY requirements/constraints.txt requirements/constraints.txt
RUN python -m pip list --format=freeze | sort > /opt/landscape/base-packages.txt \
 && { grep -qiE '^torch==2\.14\.' /opt/landscape/base-packages.txt \
      || { echo "the base's torch is not 2.14, the minor version CI tests: move the base, requirements/constraints.txt and tests/kubernetes/test_image.py NGC_TORCH together" >&2; exit 1; }; } \
 && awk -F'==' '{ n = tolower($1); gsub(/[-_.]+/, "-", n); print n }' /opt/landscape/base-packages.txt > /tmp/base-names.txt \
 && awk -F'==' 'NR == FNR { have[$1] = 1; next } /^[[:space:]]*(#|$)/ { next } \
      { n = tolower($1); gsub(/[-_.]+/, "-", n) } !(n in have) && n !~ /^(torch|torchvision|triton|nvidia-|cuda-)/' \
      /tmp/base-names.txt requirements/constraints.txt > /tmp/pins.txt \
 && PIP_CONSTRAINT="" python -m pip install --no-cache-dir -c /opt/landscape/base-packages.txt -c /tmp/pins.txt \
      "h5py>=3.8" \
      "matplotlib>=3.7" \
      "pyyaml>=6" \
      "scikit-learn>=1.3" \
      "boto3>=1.34" \
      "tqdm>=4.66" \
      "safetensors>=0.4" \
      "packaging>=23" \
 && python -m pip list --format=freeze | sort | comm -23 /opt/landscape/base-packages.txt - | tee /tmp/changed.txt \
 && test ! -s /tmp/changed.txt \
 && rm -f /tmp/pins.txt /tmp/base-names.txt /tmp/changed.txt

COPY pyproject.toml README.md ./
COPY landscape_job ./landscape_job
# The project without the launcher: `launcher` is a console script of the package, not of the
# image, so it is removed with the package it would import.
RUN PIP_CONSTRAINT="" python -m pip install --no-cache-dir --no-deps . \
 && rm -f "$(command -v launcher)" \
 && python -m pip list --format=freeze | sort | comm -23 /opt/landscape/base-packages.txt - | tee /tmp/changed.txt \
 && test ! -s /tmp/changed.txt \
 && python -c "import numpy, torch, torchvision, h5py, matplotlib, sklearn, boto3, yaml, tqdm, safetensors; \
assert torch.from_numpy(numpy.arange(3.0)).numpy().sum() == 3.0; import landscape_job.cli" \
 && ! python -c "import launcher" 2> /dev/null \
 && landscape-job --help > /dev/null \
 && rm -rf /opt/landscape/build /tmp/changed.txt

# Pods run with a read-only root file system: HOME and every cache point into /tmp,
# which Kubernetes mounts as an emptyDir (launcher/kubernetes/render.py sets the same variables).
ENV MPLBACKEND=Agg \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/.cache/torch \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    TRITON_CACHE_DIR=/tmp/.cache/triton \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Numeric, so the kubelet can verify runAsNonRoot; render.py runs pods as 1000:1000.
USER 1000:1000
WORKDIR /tmp
# NVIDIA's script first (CUDA forward compatibility, its checks; it then execs its arguments),
# so landscape-job is the container's main process and gets SIGTERM (landscape_job/base/termination.py).
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "landscape-job"]
CMD ["--help"]
