"""What an ``Evaluator`` decides once, before its first point, as a few typed records.

``Evaluator.__init__`` reads as the list of these decisions: where and in what number
format the points are computed (``Placement``, ``place_model``), which batch and how many
points per forward pass the spec asks for (``BatchPlan``; ``warm_up`` resolves its
``auto``\\ s on the device), which metrics a point gets and how (``MetricTables``), and the
Hessian's probe when a metric needs it (``curvature_probe``). Each is a small function of
the spec's sections, so each can be read and tested apart from the hot loop in
``surface.evaluator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from landscape_job.datasets.builtin import Split
from landscape_job.runtime.gpu import gpu_required, required_device
from landscape_job.runtime.precision import PrecisionChoice, compute_dtype, device_capability, resolve_precision
from landscape_job.spec.metrics import Metric, selected
from landscape_job.spec.sections import ComputeSpec, HessianSpec
from landscape_job.surface.custom_metrics import register_python_metrics
from landscape_job.surface.losses import TOKEN_TASKS, BatchFn, predicted_tokens

if TYPE_CHECKING:
    from landscape_job.surface.curvature import CurvatureProbe

#: ``batch_size: auto`` on a CPU: no device memory to fill, and larger batches are not faster there
#: (docs/performance.md: ResNet-20 was fastest at 500, slower at 1000).
CPU_AUTO_BATCH = 1024
#: ``batch_size: auto`` on CUDA starts here (or at the largest split) and halves until a forward fits.
CUDA_AUTO_BATCH_START = 32768


def resolve_device(name: str) -> torch.device:
    """``compute.device`` here; in a pod that requested a GPU always CUDA, or a ``GpuUnavailable`` (landscape_job.runtime.gpu)."""
    if gpu_required():
        return required_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from landscape_job.base.errors import UserError

        raise UserError("compute.device: cuda was asked for but no CUDA device is visible; use auto or cpu")
    return torch.device(name)


def configure_precision(precision: str) -> None:
    """TF32 only when asked for: fp32 must mean fp32 on Ampere and later too."""
    allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32


def resolve_batch_size(setting: int | str, device_type: str) -> int:
    """``compute.batch_size``: a number as given; ``auto`` starts at the most a device could want
    (``warm_up`` halves it on CUDA until a forward pass fits)."""
    if setting != "auto":
        return int(setting)
    return CUDA_AUTO_BATCH_START if device_type == "cuda" else CPU_AUTO_BATCH


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def decide_channels_last(setting: str | bool, device_type: str, input_ndim: int, conv2d: bool) -> bool:
    """``compute.channels_last``: auto turns it on on CUDA for 4-D image inputs into a model
    with 2-D convolutions (cuDNN's NHWC kernels, tensor cores); elsewhere it rarely helps."""
    if setting != "auto":
        return bool(setting)
    return device_type == "cuda" and input_ndim == 4 and conv2d


def no_cache(model: nn.Module) -> None:
    """``use_cache=False`` for a Hugging Face model (any module with a ``config.use_cache``): a grid
    point is one forward pass over whole sequences, and the key/value cache would only hold memory."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "use_cache", None):
            config.use_cache = False


@dataclass(frozen=True)
class Placement:
    """Where the points are computed and in what number format: the device, the precision in
    use (``auto`` decided for this device, and why) and the weights' dtype (``compute.weights``)."""

    device: torch.device
    choice: PrecisionChoice
    dtype: torch.dtype

    @property
    def precision(self) -> str:
        return self.choice.precision

    @property
    def half_weights(self) -> bool:
        """bf16/fp16 weights: θ is summed in float32 (the losses cast the logits to float32)."""
        return self.dtype in (torch.bfloat16, torch.float16)


def decide_placement(compute: ComputeSpec, device: torch.device | str) -> Placement:
    """The precision for this device (a UserError for bf16 before Ampere) and the weights' dtype."""
    device = torch.device(device)
    choice = resolve_precision(compute.precision, device.type, device_capability(device))
    return Placement(device, choice, compute_dtype(choice.precision, compute.weights))


def configure_backends(placement: Placement) -> None:
    """The process-wide settings of the placement: TF32 only when asked for; on CUDA cuDNN's
    autotuning, which pays for itself at once since batch shapes are fixed (all full but the last)."""
    configure_precision(placement.precision)
    if placement.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def place_model(model: nn.Module, placement: Placement, channels_last: str | bool,
                splits: Sequence[Split]) -> tuple[nn.Module, bool]:
    """The model on the device in the weights' dtype, in eval mode, without a key/value cache, and
    in channels_last memory format when ``compute.channels_last`` decides so; and that decision."""
    no_cache(model)
    model = model.to(placement.device, placement.dtype).eval()
    nhwc = decide_channels_last(channels_last, placement.device.type, splits[0].inputs.dim() if splits else 0,
                                has_conv2d(model))
    return (model.to(memory_format=torch.channels_last) if nhwc else model), nhwc


@dataclass(frozen=True)
class BatchPlan:
    """The batch and the forward pass as the spec asks for them, before ``warm_up`` on the device.

    ``batch_size`` is the first one tried (``auto``: the most this device could want, halved
    on CUDA until a forward pass fits); ``points_per_forward`` is K, or ``auto`` (timed in
    ``warm_up``), and 1 for a ``batch_fn`` or token data (a language model fills a device alone).
    """

    batch_size: int
    auto_batch: bool
    points_per_forward: int | str
    compile: bool


def plan_batches(compute: ComputeSpec, device_type: str, one_point: bool) -> BatchPlan:
    return BatchPlan(batch_size=resolve_batch_size(compute.batch_size, device_type),
                     auto_batch=compute.batch_size == "auto",
                     points_per_forward=1 if one_point else compute.points_per_forward, compile=compute.compile)


@dataclass(frozen=True)
class MetricTables:
    """The chosen metrics in registry order, by how they are computed, and each split's N.

    ``statistics``: per-split batch statistics, summed over one forward pass per split;
    ``probed``: per-point metrics, a probe's results; ``counts``: each split's N, its samples
    or for a token task its predicted tokens (the mean's denominator).
    """

    statistics: tuple[Metric, ...]
    probed: tuple[Metric, ...]
    counts: dict[str, int]

    @property
    def lanczos(self) -> bool:
        """Whether a metric needs the Hessian's extremes (``metrics: [hessian]``)."""
        return any(m.probe is not None and m.probe.probe == "lanczos" for m in self.probed)


def choose_metrics(metrics: tuple[str, ...], splits: Sequence[Split], task: str,
                   batch_fn: BatchFn | None) -> MetricTables:
    """The spec's ``metrics:`` (its ``python:`` ones registered first); accuracy and the like are
    skipped when the labels are regression targets (``check_outputs`` says so)."""
    register_python_metrics(metrics)
    classes = all(s.classes for s in splits)
    chosen = tuple(m for m in selected(metrics) if classes or not m.needs_classes)
    statistics = tuple(m for m in chosen if m.per_split)
    if batch_fn is not None and any(m.key != "loss" for m in statistics):
        raise ValueError("with batch_fn only the loss (and the Hessian) can be computed")
    counts = {s.name: predicted_tokens(s.labels, task) if task in TOKEN_TASKS else len(s.labels) for s in splits}
    return MetricTables(statistics, tuple(m for m in chosen if not m.per_split), counts)


def curvature_probe(tables: MetricTables, model: nn.Module, placement: Placement, hessian: HessianSpec | None,
                    hessian_split: Split | None, loss: str, batch_size: int,
                    batch_fn: BatchFn | None) -> CurvatureProbe | None:
    """The Hessian's probe at whatever θ the model holds, when a metric needs it; imported only then."""
    if not tables.lanczos:
        return None
    if hessian is None or hessian_split is None:
        raise ValueError("metrics has hessian but no hessian options or split were given")
    from landscape_job.surface.curvature import CurvatureProbe

    return CurvatureProbe(model=model, inputs=hessian_split.inputs.to(placement.device, placement.dtype),
                          labels=hessian_split.labels.to(placement.device), options=hessian, loss=loss,
                          batch_size=hessian.batch_size or batch_size, batch_fn=batch_fn)
