"""Memory a worker used, and the opt-in CUDA memory snapshot: so device memory is planned, not found by an OOM.

Two numbers per shard: the peak device memory PyTorch's allocator handed out
(``torch.cuda.max_memory_allocated``, reset after warm-up so it is the points' peak,
not the K search's), and the process's peak host RSS (``getrusage``: what the pod's
``kubernetes.memory`` limit is measured against). On a CPU there is no device memory
apart from the host's: the device peak is None ("not measured"), the RSS is the number.

The allocator's peak is below what ``nvidia-smi`` shows (the CUDA context, ~300-500 MiB,
and the caching allocator's reserved-but-free blocks are not in it); ``fits`` leaves a
margin for that. The calls into CUDA are each one small function here, so everything
else is tested on a CPU with fake values.
"""

from __future__ import annotations

import resource
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MiB = 2**20
GiB = 2**30
#: Device memory a CUDA process holds outside the allocator's peak (context, cuDNN/cuBLAS
#: workspaces, allocator rounding): a batch is said to fit when peak + this <= total.
CUDA_OVERHEAD_BYTES = 1 * GiB
#: ``_record_memory_history``'s bound on recorded events: a few hundred MiB of snapshot at most.
SNAPSHOT_MAX_ENTRIES = 100_000


def peak_host_rss_bytes() -> int:
    """The process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_device_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_device_bytes(device: torch.device) -> int | None:
    """The allocator's peak since the last reset; None off CUDA (no separate device memory)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def device_total_bytes(device: torch.device, properties: Any = None) -> int | None:
    """A CUDA device's memory (``properties``: a ``torch.cuda.get_device_properties`` record,
    or anything with ``total_memory``; a fake one in tests); None off CUDA."""
    if properties is None:
        if device.type != "cuda":
            return None
        properties = torch.cuda.get_device_properties(device)
    return int(properties.total_memory)


@dataclass(frozen=True)
class Fit:
    """A peak against a GPU's memory: how much of it the run uses, and whether it fits."""

    peak_bytes: int
    total_bytes: int
    overhead_bytes: int = CUDA_OVERHEAD_BYTES

    @property
    def fits(self) -> bool:
        return self.peak_bytes + self.overhead_bytes <= self.total_bytes

    @property
    def fraction(self) -> float:
        return (self.peak_bytes + self.overhead_bytes) / self.total_bytes

    def describe(self, what: str) -> str:
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"{what}: peak {mib(self.peak_bytes)} + {mib(self.overhead_bytes)} CUDA overhead = "
                f"{self.fraction:.0%} of {mib(self.total_bytes)}: {verdict}"
                + ("" if self.fits else "; lower compute.batch_size or points_per_forward, or use batch_size: auto "
                                        "(an OOM in a shard halves the batch, slower but not failed)"))


def mib(value: int | None) -> str:
    return "not measured" if value is None else f"{value / MiB:,.0f} MiB"


class MemorySnapshot:
    """``compute.memory_snapshot: true``: CUDA's allocation history, dumped as the pickle that
    https://pytorch.org/memory_viz reads. Started before the evaluator exists (so the data and
    weights are in it), dumped when the shard finishes. Off CUDA it records nothing (``active``
    False) and the stage says so."""

    def __init__(self, enabled: bool, device: torch.device):
        self.active = enabled and device.type == "cuda"
        if self.active:
            torch.cuda.memory._record_memory_history(max_entries=SNAPSHOT_MAX_ENTRIES)

    def dump(self, path: Path) -> bool:
        """Writes the snapshot to ``path`` and stops recording; False when nothing was recorded."""
        if not self.active:
            return False
        try:
            torch.cuda.memory._dump_snapshot(str(path))
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)
            self.active = False
        return True


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensors operators create while it is active, and their peak
    live at once: what a CUDA allocator would have to hold, without its block rounding,
    cuDNN workspaces or kernel-specific scratch. This is how a CPU estimates a GPU's peak
    (``launcher estimate`` on a laptop); on CUDA the allocator's own peak is measured instead.

    A storage is counted once however many views share it, and freed when the last tensor
    using it is collected.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._users: dict[int, int] = {}
        self._sizes: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key]
            self.live -= self._sizes.pop(key)

    #: Count tensors on the meta device too (``MetaBytes``): shapes without memory, keyed by storage.
    meta = False

    def _key(self, tensor: torch.Tensor) -> int:
        return storage_key(tensor)

    def _counted(self, tensor: object) -> bool:
        return isinstance(tensor, torch.Tensor) and (self.meta or tensor.device.type != "meta")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - the dispatch protocol
        out = func(*args, **(kwargs or {}))
        inputs = {self._key(t) for t in tree_flatten((args, kwargs))[0] if self._counted(t)}
        for tensor in tree_flatten(out)[0]:
            if not self._counted(tensor):
                continue
            storage = tensor.untyped_storage()
            key, size = self._key(tensor), storage.nbytes()
            if not size or (key in inputs and key not in self._users):
                continue  # a view of (or in-place into) memory that existed before: not new
            if key not in self._users:
                self._users[key], self._sizes[key] = 0, size
                self.live += size
                self.peak = max(self.peak, self.live)
            self._users[key] += 1
            weakref.finalize(tensor, self._free, key)
        return out


class MetaBytes(LiveBytes):
    """``LiveBytes`` over a forward pass on the meta device: the activation bytes of a model far
    too large for this machine, from its shapes alone (no memory, no arithmetic), for the plan
    ``launcher validate`` and ``estimate`` check against ``kubernetes.gpu_memory``."""

    meta = True


@dataclass(frozen=True)
class MemoryPlan:
    """A shard's device memory from counts: the evaluator holds the model, θ*'s copy and the
    directions (``resident``), and a forward pass adds activations linear in the batch
    (``per_sample_bytes``, measured at batch 1 on the meta device, the fp32 logits and the
    loss's copies included)."""

    parameters: int
    weight_bytes: int
    directions: int
    per_sample_bytes: int
    batch_size: int
    #: Extra stacked parameter sets of ``points_per_forward`` K > 1 (K model copies).
    stacked: int = 0
    #: Tokens (or values) per sample, for the message: "batch 8 × 1,024".
    sample_size: int | None = None

    @property
    def model_bytes(self) -> int:
        return self.parameters * self.weight_bytes

    @property
    def resident_bytes(self) -> int:
        return self.model_bytes * (2 + self.directions + self.stacked)

    def working_bytes(self, batch: int) -> int:
        return self.per_sample_bytes * batch * max(1, self.stacked)

    def peak_bytes(self, batch: int | None = None) -> int:
        return self.resident_bytes + self.working_bytes(self.batch_size if batch is None else batch)

    def largest_batch(self, total_bytes: int, overhead_bytes: int = CUDA_OVERHEAD_BYTES) -> int:
        room = total_bytes - overhead_bytes - self.resident_bytes
        per = self.per_sample_bytes * max(1, self.stacked)
        return max(0, room // per) if per > 0 else (1 << 30 if room >= 0 else 0)

    def describe(self, batch: int | None = None) -> str:
        batch = self.batch_size if batch is None else batch
        tokens = f" × {self.sample_size:,}" if self.sample_size else ""
        return (f"{mib(self.peak_bytes(batch))} = model {mib(self.model_bytes)} + θ* copy {mib(self.model_bytes)} + "
                f"{self.directions} direction(s) {mib(self.model_bytes * self.directions)}"
                + (f" + {self.stacked} stacked point(s) {mib(self.model_bytes * self.stacked)}" if self.stacked else "")
                + f" + activations {mib(self.working_bytes(batch))} at batch {batch:,}{tokens}")


def storage_key(tensor: torch.Tensor) -> int:
    """Which memory a tensor lives in: its storage's address, or for a meta tensor (no memory,
    every address 0) the storage object itself, so that two meta tensors are one only when tied."""
    storage = tensor.untyped_storage()
    return storage._cdata if tensor.device.type == "meta" else storage.data_ptr()
