"""Which floating-point format a run computes in, decided once per worker from its device.

``compute.precision`` names what the numbers are computed in: fp32, tf32 (fp32 storage,
TF32 tensor-core matmuls on Ampere+), bf16 and fp16 (autocast; the loss and accuracy
reductions stay float32), fp64. ``auto`` is decided by each worker for the device it got,
because a spec is written on a laptop and run on whatever the cluster gives:

* CPU: fp32 (autocast to bf16/fp16 on a CPU without AMX is many times slower, see
  docs/performance.md).
* CUDA with compute capability 8.0 or later (A100, H100, L4, RTX 30xx+): bf16, native there,
  with fp32's exponent range (no overflow).
* older CUDA (V100 7.0, T4 7.5): fp16, whose tensor cores they have; bf16 there is emulated
  and slow.

bf16 asked for on a CUDA device below 8.0 is refused (exit 2) rather than run ~10x slower
in silence; fp16 is the answer there. The decision is a pure function of the device type
and its capability tuple, so it is tested without a GPU; ``device_capability`` is the one
call that asks CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from landscape_job.base.errors import UserError

#: The first CUDA compute capability with native bf16 (Ampere).
BF16_CAPABILITY = (8, 0)
#: Precisions that autocast, and the dtype they autocast to.
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a worker computes in, and why (shown by validate, logged, and in report.json)."""

    precision: str
    reason: str


def device_capability(device: torch.device) -> tuple[int, int] | None:
    """CUDA's (major, minor) compute capability of ``device``; None for a CPU."""
    if device.type != "cuda":
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def resolve_precision(asked: str, device_type: str, capability: tuple[int, int] | None) -> PrecisionChoice:
    """``compute.precision`` as it will run on a device of this type and capability.

    Raises UserError for bf16 on a CUDA device without native bf16 (one line, exit 2).
    """
    native_bf16 = capability is not None and tuple(capability) >= BF16_CAPABILITY
    cap = "" if capability is None else f"compute capability {capability[0]}.{capability[1]}"
    if asked == "auto":
        if device_type != "cuda":
            return PrecisionChoice("fp32", f"auto: fp32 on {device_type} (reduced precision is slower "
                                           "on CPUs without bf16/fp16 hardware)")
        if native_bf16:
            return PrecisionChoice("bf16", f"auto: bf16, native on {cap} (>= 8.0)")
        return PrecisionChoice("fp16", f"auto: fp16, as {cap} has no native bf16 (< 8.0)")
    if asked == "bf16" and device_type == "cuda" and capability is not None and not native_bf16:
        raise UserError(f"compute.precision: bf16 is not native on this GPU ({cap}; bf16 needs 8.0, Ampere "
                        "or later) and would run many times slower; use fp16 or auto")
    return PrecisionChoice(asked, "as the spec says")


def compute_dtype(precision: str, weights: str = "fp32") -> torch.dtype:
    """The dtype of the weights and data: float64 for fp64; ``compute.weights`` bf16/fp16 hold them
    in half the memory; else float32 (autocast lowers per op)."""
    if precision == "fp64":
        return torch.float64
    return WEIGHT_DTYPES.get(weights, torch.float32)


#: ``compute.weights`` and the dtype the model, θ* and the directions are held in on the device.
WEIGHT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
