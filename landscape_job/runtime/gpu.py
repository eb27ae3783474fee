"""A pod that holds a GPU computes on it, or stops and says why: never a silent CPU run.

``compute.device: auto`` picks CUDA when it initialises and the CPU otherwise: right for a
laptop, wrong for a pod that requested ``nvidia.com/gpu``. There a failed CUDA start (no
driver mounted, the wrong container runtime, devices hidden) would compute the surface on
the CPU, 50-100x slower, while the GPU sits idle and billed. So the pod side has a
contract with the renderer:

* ``launcher/kubernetes/render.py`` sets ``LANDSCAPE_REQUIRE_GPU=1`` (:data:`REQUIRE_GPU_ENV`) on every
  container that requests a GPU, and on no other;
* with it set, a stage checks CUDA before it reads or writes anything
  (:func:`require_cuda`, called from ``landscape_job.cli``), and every device it resolves
  is CUDA (:func:`required_device`): ``auto`` means ``cuda``, and ``cpu`` is refused;
* a CUDA that cannot be used is a ``StageError``, one line, exit 1: not the user's mistake
  (the same spec runs on a healthy node), so the Job retries the index, perhaps elsewhere.

The line names the first reason found, in the order a pod would hit them: torch built
without CUDA; ``NVIDIA_VISIBLE_DEVICES`` or ``CUDA_VISIBLE_DEVICES`` hiding every device;
CUDA's own initialisation error (no driver, driver too old for the image's CUDA, ...); no
device counted. Each ends with where to look: the node's driver and the container runtime
(``kubernetes.runtime_class``, e.g. ``nvidia``, where the NVIDIA runtime is not the default,
as on k3s and RKE2).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

from landscape_job.base.errors import StageError, UserError

if TYPE_CHECKING:
    import torch

#: Set to 1 by the renderer on every container that requests a GPU.
REQUIRE_GPU_ENV = "LANDSCAPE_REQUIRE_GPU"
#: Values of NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES that leave no device.
_HIDDEN = {"", "void", "none", "-1"}
HINT = ("check the node's NVIDIA driver and the container runtime (kubernetes.runtime_class, e.g. nvidia, "
        "where the NVIDIA runtime is not the default, as on k3s and RKE2)")
_REASON_CHARS = 300


class GpuUnavailable(StageError):
    """A pod that requested a GPU cannot use CUDA (exit 1: the Job retries the index)."""


def gpu_required(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a container that requested a GPU (``LANDSCAPE_REQUIRE_GPU``)."""
    value = (os.environ if environ is None else environ).get(REQUIRE_GPU_ENV, "").strip().lower()
    return value in ("1", "true", "yes")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."


def cuda_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why CUDA cannot be used in this process (one line, ending in where to look), or None when it can."""
    import torch  # here, not above: the launcher reads REQUIRE_GPU_ENV without loading torch

    environ = os.environ if environ is None else environ
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is built without CUDA; the image must carry a CUDA build "
                "(the NGC PyTorch base of the project's Dockerfile)")
    for name in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        value = environ.get(name)
        if value is not None and value.strip().lower() in _HIDDEN:
            return f"{name}={value!r} hides every GPU from this container; {HINT}"
    try:
        torch.cuda.init()
    except Exception as err:  # noqa: BLE001 - its text is the reason, whatever its type
        return f"CUDA does not initialise ({_one_line(str(err)) or type(err).__name__}); {HINT}"
    if torch.cuda.device_count() == 0:
        return f"CUDA initialised but counts no device; {HINT}"
    return None


def require_cuda(environ: Mapping[str, str] | None = None) -> None:
    """Raises :class:`GpuUnavailable` (exit 1, one line) unless CUDA works here."""
    problem = cuda_problem(environ)
    if problem is not None:
        raise GpuUnavailable(f"this pod requested a GPU ({REQUIRE_GPU_ENV}=1) but cannot use CUDA: {problem}. "
                             "It does not fall back to the CPU; the Job retries it")


def required_device(name: str) -> torch.device:
    """``compute.device`` in a pod that requested a GPU: always CUDA, checked."""
    import torch

    if name == "cpu":
        raise UserError("compute.device: cpu, but the pod requested a GPU (kubernetes.gpus > 0); "
                        "set compute.device: auto or cuda, or kubernetes.gpus: 0")
    require_cuda()
    return torch.device(name if name.startswith("cuda") else "cuda")
