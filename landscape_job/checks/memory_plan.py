"""Will a shard fit its GPU? Planned from counts, before anything runs (issue 23, item 7).

``launcher estimate`` measures a shard's memory by running points, which a laptop cannot do
for a 7B-parameter model. The plan needs no weights: the model is built on the meta device
(shapes, no memory), its parameters counted, and one forward pass of a single sample counted
by ``memory.MetaBytes``. Then

    peak = model + θ*'s copy + directions (1 or 2) [+ K−1 stacked copies] + batch × per-sample activations

in the bytes of ``compute.weights`` (fp32 unless bf16/fp16). ``validate`` and ``estimate``
refuse a spec whose peak (+ ``memory.CUDA_OVERHEAD_BYTES``) exceeds ``kubernetes.gpu_memory``,
in one line that says the largest batch that fits.
"""

from __future__ import annotations

import torch

from landscape_job.base.errors import UserError
from landscape_job.datasets.builtin import dataset_info
from landscape_job.models import build_model
from landscape_job.runtime.memory import CUDA_OVERHEAD_BYTES, MemoryPlan, MetaBytes, mib
from landscape_job.runtime.precision import compute_dtype
from landscape_job.spec.sections import Spec
from landscape_job.surface.evaluator_setup import CUDA_AUTO_BATCH_START

#: The loss's copies of the logits: the float32 cast and log-softmax's output.
_LOGIT_COPIES = 2


def plan_memory(spec: Spec, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> MemoryPlan:
    """The plan of ``spec``'s shard (``spec`` localized: its data set is read for its shape).

    ``batch_size: auto`` is planned at the largest batch a worker would start from.
    """
    if input_shape is None or num_classes is None:
        d = spec.data
        input_shape, num_classes = dataset_info(d.dataset, d.options, root=d.root, classes=d.classes)
    dtype = compute_dtype(spec.compute.precision, spec.compute.weights)
    with torch.device("meta"):
        model = build_model(spec.model.arch, num_classes, input_shape, spec.model.kwargs).to(dtype).eval()
    floating = [t for t in (*model.parameters(), *model.buffers()) if torch.is_floating_point(t)]
    moved = [t for _, t in model.named_parameters()] if spec.directions.dir_type == "weights" else floating
    sample = torch.zeros((1, *input_shape), device="meta", dtype=dtype)
    with torch.no_grad(), MetaBytes() as counted:
        outputs = model(sample)
    logits = outputs if isinstance(outputs, torch.Tensor) else None
    logit_bytes = 0 if logits is None else logits.numel() * 4 * _LOGIT_COPIES
    k = spec.compute.points_per_forward
    batch = spec.compute.batch_size if isinstance(spec.compute.batch_size, int) else CUDA_AUTO_BATCH_START
    return MemoryPlan(parameters=sum(t.numel() for t in moved), weight_bytes=dtype.itemsize,
                      directions=spec.grid.ndim, per_sample_bytes=counted.peak + logit_bytes, batch_size=batch,
                      stacked=k if isinstance(k, int) and k > 1 else 0,
                      sample_size=int(torch.Size(input_shape).numel()) if len(input_shape) else None)


def check_fits(spec: Spec, plan: MemoryPlan, total_bytes: int, source: str) -> None:
    """One line naming ``source`` and the largest batch that fits, when a shard cannot fit it."""
    need = plan.peak_bytes() + CUDA_OVERHEAD_BYTES
    if need <= total_bytes:
        return
    largest = plan.largest_batch(total_bytes)
    auto = spec.compute.batch_size == "auto"
    if largest >= 1 and auto:
        return  # each worker halves its batch until a forward pass fits
    head = f"{source}: a shard needs about {plan.describe()} + {mib(CUDA_OVERHEAD_BYTES)} CUDA overhead"
    if largest >= 1:
        raise UserError(f"{head}; the largest batch that fits is {largest:,}: set compute.batch_size: {largest}")
    raise UserError(f"{head}; not even batch 1 fits: use compute.weights: bf16, fewer tensors (directions.params), "
                    "a 1-D grid, or a larger GPU")


def planned_lines(plan: MemoryPlan, total_bytes: int | None, source: str) -> list[str]:
    """What ``validate`` and ``estimate`` print about the plan."""
    lines = [f"memory plan (counted on the meta device): peak {plan.describe()}"]
    if total_bytes is not None:
        lines.append(f"  largest batch that fits {source}: {plan.largest_batch(total_bytes):,} "
                     f"(with {mib(CUDA_OVERHEAD_BYTES)} CUDA overhead)")
    return lines
