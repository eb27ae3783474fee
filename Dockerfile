# syntax=docker/dockerfile:1
#
# The landscape pod image: landscape_job (and the launcher) on NVIDIA's PyTorch image.
#
#   docker build -t ghcr.io/landscape-dev/landscape:0.1.0 .
#
# Base: NGC PyTorch 25.01 = Ubuntu 24.04, Python 3.12, CUDA 12.8.0,
# PyTorch 2.6.0a0+ecf3bae40a, torchvision 0.21.0a0. NVIDIA builds that torch against the
# image's own CUDA, cuDNN and NCCL, so it must survive this build unchanged:
#   * torch and torchvision are never named in a pip command, and the project goes in
#     with --no-deps (its pyproject asks for torch>=2.4,<3, which the base satisfies);
#   * the base's torch/torchvision versions are frozen into a constraints file for the
#     dependency install, so any dependency asking for another torch fails the build
#     instead of replacing it; torch/triton/nvidia-*/cuda-* pins of the dev constraints
#     are dropped, the other pins of requirements/constraints.txt (tested in CI) apply;
#   * the build then fails if torch's version changed or its NumPy bridge broke.
# NGC images from 25.03 on set PIP_CONSTRAINT=/etc/pip/constraint.txt (every preinstalled
# version); it is cleared for the one install below, which brings its own constraints.
FROM nvcr.io/nvidia/pytorch:25.01-py3

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /opt/landscape

# The runtime dependencies of pyproject.toml minus torch/torchvision, pinned as in
# requirements/constraints.txt (tests/test_image.py checks both). A layer of its own, so
# a source change does not reinstall them.
COPY requirements/constraints.txt requirements/constraints.txt
RUN python -m pip list --format=freeze | grep -iE '^(torch|torchvision)==' > /tmp/base-torch.txt \
 && test "$(wc -l < /tmp/base-torch.txt)" -eq 2 \
 && grep -viE '^(torch|torchvision|triton|nvidia-|cuda-)' requirements/constraints.txt > /tmp/pins.txt \
 && PIP_CONSTRAINT="" python -m pip install --no-cache-dir -c /tmp/pins.txt -c /tmp/base-torch.txt \
      numpy==2.4.6 \
      h5py==3.16.0 \
      matplotlib==3.11.2 \
      pyyaml==6.0.3 \
      scikit-learn==1.9.1 \
      boto3==1.44.5 \
      kubernetes==37.0.1 \
      tqdm==4.70.1 \
      safetensors==0.8.0 \
 && python -m pip list --format=freeze | grep -iE '^(torch|torchvision)==' | diff /tmp/base-torch.txt - \
 && rm -f /tmp/pins.txt

COPY pyproject.toml README.md ./
COPY landscape_job ./landscape_job
COPY launcher ./launcher
RUN PIP_CONSTRAINT="" python -m pip install --no-cache-dir --no-deps . \
 && python -m pip list --format=freeze | grep -iE '^(torch|torchvision)==' | diff /tmp/base-torch.txt - \
 && python -c "import numpy, torch, torchvision, h5py, matplotlib, sklearn, boto3, yaml; \
assert torch.from_numpy(numpy.arange(3.0)).numpy().sum() == 3.0; import landscape_job.cli" \
 && landscape-job --help > /dev/null \
 && rm -rf /opt/landscape/build /tmp/base-torch.txt

# Pods run with a read-only root file system: HOME and every cache point into /tmp,
# which Kubernetes mounts as an emptyDir (launcher/render.py sets the same variables).
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
ENTRYPOINT ["landscape-job"]
CMD ["--help"]
