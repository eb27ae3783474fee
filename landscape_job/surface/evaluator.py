"""Loss and accuracy of θ* + a·δ + b·η at grid points, one forward pass per point or less.

A grid point is one forward pass over each split; nothing else should cost anything.
So the data is decoded and normalised once and kept on the device (or streamed from
pinned host memory when it does not fit, see ``feed``), the directions live on the
device next to the weights, and each point sets θ in place from a saved copy of θ* with
fused foreach operations (recomputed from θ* each time, so no error accumulates over
thousands of points). With ``points_per_forward`` K > 1, K points' parameters are stacked
and one vmapped forward evaluates all K on each batch, which reads every batch once per K
points and fills a large GPU better than one small model can. Loss is the exact mean over
the split, summed in float64.

Token data (``task: causal_lm``, ``masked_lm``, ``sequence_classification``) reaches the model
as keyword arguments (``input_ids``, ``attention_mask``), one point per forward pass (a
language model fills a device alone: ``points_per_forward`` is 1 whatever the spec says); its
metrics are means over the split's predicted tokens (``losses.token_view``). The Hessian's
probe (``surface.curvature``) is imported only by an evaluator that computes it."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Sequence, TypeVar

import torch
from torch import nn
from torch.func import functional_call, vmap

from landscape_job.datasets.builtin import Split
from landscape_job.runtime.precision import AUTOCAST, PrecisionChoice
from landscape_job.spec.sections import DEFAULT_METRICS, ComputeSpec, HessianSpec
from landscape_job.surface.directions import Directions
from landscape_job.surface.displacement import Displacement
from landscape_job.surface.evaluator_setup import (configure_backends, choose_metrics, curvature_probe,
                                                   decide_placement, place_model, plan_batches)
from landscape_job.surface.feed import ResidentSplit, StreamedSplit, place_splits
from landscape_job.surface.losses import (TOKEN_TASKS, BatchFn, batch_fn_sum, batch_loss_sum, batch_loss_sums,
                                          token_view)
from landscape_job.surface.point_evaluator import HowEvaluated

_T = TypeVar("_T")


def _nan_if(values: dict[str, float], nonfinite: int) -> dict[str, float]:
    """A split's values, NaN when some sample's fp16 logits overflowed: a mean over an inf is not a
    loss, and an accuracy over garbage logits is not an accuracy (the point is reported instead)."""
    return {name: float("nan") for name in values} if nonfinite else values


#: The K that ``points_per_forward: auto`` tries on CUDA.
AUTO_CANDIDATES = (1, 2, 4, 8)


def call(forward: Callable, inputs: "torch.Tensor | dict[str, torch.Tensor]") -> torch.Tensor:
    """``forward(inputs)``, or ``forward(**inputs)`` for token data's dict of model arguments."""
    return forward(**inputs) if isinstance(inputs, dict) else forward(inputs)


def _shape(inputs: "torch.Tensor | dict[str, torch.Tensor]") -> tuple[int, ...]:
    return tuple((inputs["input_ids"] if isinstance(inputs, dict) else inputs).shape)


def make_stacked_forward(model: nn.Module) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """forward(stacked params, inputs) -> (K, batch, classes): the model run once per stacked
    parameter set, vmapped so that K points share one read of each batch. Tensors not in
    the dict (e.g. BatchNorm running statistics under dir_type weights) are the module's own."""

    def one(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params, (inputs,))

    return vmap(one, in_dims=(0, None))


class Evaluator:
    """Evaluates the model at points of the plane spanned by the directions through θ*.

    ``compute`` is the spec's section as a whole: precision, batch size and the speed
    settings (see docs/performance.md for their rules). ``compute.points_per_forward``
    K > 1 evaluates K grid points in one vmapped forward pass with stacked parameters (each
    batch is read once for K points); ``auto`` resolves it in ``warm_up``. ``device`` is
    apart from it because the caller resolves ``compute.device`` (``auto``) once per process.
    What is decided once is in ``evaluator_setup``'s records: ``placement``, ``plan`` and ``metrics``.
    """

    def __init__(self, model: nn.Module, directions: Directions, splits: list[Split], *,
                 compute: ComputeSpec = ComputeSpec(), device: torch.device | str = "cpu",
                 loss: str = "cross_entropy", metrics: tuple[str, ...] = DEFAULT_METRICS,
                 hessian: HessianSpec | None = None, hessian_split: Split | None = None,
                 task: str = "classification", batch_fn: BatchFn | None = None):
        # The API's batch_fn(model, batch) replaces the forward and the loss: one point per pass, loss only.
        self.batch_fn, self.task, self.loss = batch_fn, task, loss
        #: The device, the precision in use and why (UserError for bf16 on pre-Ampere), the weights' dtype.
        self.placement = decide_placement(compute, device)
        self.device = self.placement.device
        #: What the spec asks of batches and passes; token data is one point per forward (module docstring).
        self.plan = plan_batches(compute, self.device.type, one_point=batch_fn is not None
                                 or any(s.attention_mask is not None for s in splits))
        #: The batch size in use: ``auto`` is decided in ``warm_up``; an OOM halves it (``oom_halvings``).
        self.batch_size: int = self.plan.batch_size
        self.oom_halvings = 0
        #: Of the points evaluated, those with non-finite fp16 logits (their values are NaN): (a, b, samples).
        self.nonfinite: list[tuple[float, float, int]] = []
        configure_backends(self.placement)
        self.model, self.channels_last = place_model(model, self.placement, compute.channels_last, splits)
        self.data_resident, self.splits = place_splits(splits, self.placement.dtype, self.device,
                                                       compute.data_on_device, self.channels_last)
        #: θ = θ* + a·δ + b·η on the model's tensors, in place or stacked for K points.
        self.displacement = Displacement(self.model, directions, self.device,
                                         half_weights=self.placement.half_weights)
        self.metrics = choose_metrics(metrics, splits, task, batch_fn)
        if not self.metrics.statistics:
            self.splits = []  # metrics: [hessian] alone needs no forward pass over the splits
        self.curvature = curvature_probe(self.metrics, self.model, self.placement, hessian, hessian_split, loss,
                                         self.batch_size, batch_fn)
        #: Points whose Lanczos run hit hessian.iterations before its tolerance.
        self.unconverged = 0
        self._single: Callable[[torch.Tensor], torch.Tensor] = self.model
        self._stacked = make_stacked_forward(self.model)
        #: The K in use; None until ``warm_up`` resolves ``auto``.
        self.points_per_forward: int | None = (self.plan.points_per_forward
                                               if isinstance(self.plan.points_per_forward, int) else None)
        #: Seconds spent compiling (torch.compile) in ``warm_up``; kept out of the per-point time.
        self.compile_seconds = 0.0
        self._warm = False

    @property
    def precision_choice(self) -> PrecisionChoice:
        return self.placement.choice

    @property
    def precision(self) -> str:
        return self.placement.precision

    def resident_bytes(self) -> int:
        """Bytes the evaluator holds for the whole run: the model's tensors, θ*'s copy, the
        directions and (when resident) the data. A point's forward pass needs more on top."""
        tensors = [*self.model.parameters(), *self.model.buffers(), *self.displacement.held()]
        total = sum(t.numel() * t.element_size() for t in tensors)
        if self.data_resident:
            total += sum(s.inputs.numel() * s.inputs.element_size() + s.labels.numel() * s.labels.element_size()
                         + (0 if s.mask is None else s.mask.numel() * s.mask.element_size())
                         for s in self.splits if isinstance(s, ResidentSplit))
        return int(total)

    def how(self) -> HowEvaluated:
        """The settings in effect, as a shard records them (``point_evaluator.PointEvaluator``)."""
        return HowEvaluated(precision=self.precision, precision_reason=self.precision_choice.reason,
                            points_per_forward=self.points_per_forward or 1, compile_seconds=self.compile_seconds,
                            data_on_device=self.data_resident, channels_last=self.channels_last)

    def unconverged_points(self) -> int | None:
        return self.unconverged if self.curvature is not None else None

    def metric_names(self) -> list[str]:
        """The names of the values each point gets: each split's metrics, then the per-point ones."""
        names = [f"{s.name}_{m.key}" for s in self.splits for m in self.metrics.statistics]
        return names + [m.key for m in self.metrics.probed]

    # -- one point: θ set in place ------------------------------------------------------

    def set_point(self, a: float, b: float = 0.0) -> None:
        """θ = θ* + a·δ + b·η, computed from θ* (not from the previous point)."""
        self.displacement.set(a, b)

    def restore(self) -> None:
        self.displacement.restore()

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST.get(self.precision)
        if dtype is not None:
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def _loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.batch_fn is not None:
            return logits  # batch_fn's sum already
        return batch_loss_sum(logits, labels, self.loss)

    def _loss_sums(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return batch_loss_sums(logits, labels, self.loss)

    def _nonfinite_samples(self, logits: torch.Tensor) -> torch.Tensor:
        """Samples whose fp16 logits overflowed (|x| > 65504 is inf in fp16): (…, B, C) -> (…,)."""
        return (~torch.isfinite(logits)).any(dim=-1).sum(dim=-1)

    def _halving(self, run: Callable[[], _T]) -> _T:
        """``run()`` (one split's sums at the point(s) set), halving the batch on a CUDA out-of-memory
        error until it fits, instead of failing the shard. The sums restart from zero, so the
        values differ from the unhalved batch's only by float rounding (the exact mean over the
        split either way); the halving stays inside this worker and never touches the spec or
        its hash. A compiled forward recompiles once for the new shape."""
        while True:
            try:
                return run()
            except torch.cuda.OutOfMemoryError:
                if self.batch_size <= 1:
                    raise
            # Outside the except block, so the failed attempt's tensors are freed first.
            self.batch_size = max(1, self.batch_size // 2)
            self.oom_halvings += 1
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    @torch.no_grad()
    def _evaluate_split(self, split: ResidentSplit | StreamedSplit) -> tuple[dict[str, float], int]:
        """Each per-split metric's batch sums, added up in float64, times its scale over N; and
        (fp16 only) how many samples had non-finite logits."""
        check = self.precision == "fp16"

        def run() -> tuple[dict[str, float], int]:
            totals = [torch.zeros((), dtype=torch.float64, device=self.device) for _ in self.metrics.statistics]
            bad = torch.zeros((), dtype=torch.float64, device=self.device)
            with self._autocast():
                for inputs, labels in split.batches(self.batch_size):
                    if self.batch_fn is not None:  # the batch's summed loss in place of the outputs
                        logits = batch_fn_sum(self.batch_fn, self.model, inputs, labels)
                    else:
                        logits = call(self._single, inputs)
                        if self.task in TOKEN_TASKS:
                            logits, labels = token_view(logits, labels, self.task)
                    for total, metric in zip(totals, self.metrics.statistics):
                        total += metric.statistic.one(logits, labels, self._loss_sum).double()
                    if check and self.batch_fn is None:
                        bad += self._nonfinite_samples(logits)
            n = self.metrics.counts[split.name]
            # One synchronisation per split, not per batch.
            *sums, nonfinite = torch.stack(totals + [bad]).tolist()
            return ({f"{split.name}_{m.key}": m.statistic.value(s, n) for m, s in zip(self.metrics.statistics, sums)},
                    int(nonfinite))

        return self._halving(run)

    def _probe_point(self) -> dict[str, float]:
        """The per-point metrics at θ as set_point left it (the Hessian's extremes, by Lanczos)."""
        if self.curvature is None:
            return {}
        # Gradients are enabled inside the probe only.
        found = self.curvature.extremes()
        self.unconverged += int(not found.converged and found.max_eig == found.max_eig)  # NaN: diverged, not slow
        return {m.key: getattr(found, m.probe.result) for m in self.metrics.probed}

    def evaluate(self, a: float, b: float = 0.0) -> dict[str, float]:
        """Every chosen metric at (a, b): per split, then per point; inf/NaN are kept, not raised."""
        self.set_point(a, b)
        try:
            results: dict[str, float] = {}
            nonfinite = 0
            for split in self.splits:
                values, bad = self._evaluate_split(split)
                results.update(_nan_if(values, bad))
                nonfinite += bad
            if nonfinite:
                self.nonfinite.append((a, b, nonfinite))
            results.update(self._probe_point())
            return results
        finally:
            self.restore()

    # -- K points: stacked parameters, one vmapped forward --------------------------------

    def stacked_point_params(self, points: Sequence[tuple[float, float]]) -> dict[str, torch.Tensor]:
        """θ* + a_k·δ + b_k·η for every point k, stacked on a new leading dimension."""
        return self.displacement.stacked(points)

    @torch.no_grad()
    def _evaluate_split_stacked(self, split: ResidentSplit | StreamedSplit, params: dict[str, torch.Tensor],
                                k: int) -> tuple[dict[str, list[float]], list[int]]:
        """As ``_evaluate_split`` for K stacked points: each metric's K values, each point's non-finite samples."""
        check = self.precision == "fp16"

        def run() -> tuple[dict[str, list[float]], list[int]]:
            totals = [torch.zeros(k, dtype=torch.float64, device=self.device) for _ in self.metrics.statistics]
            bad = torch.zeros(k, dtype=torch.float64, device=self.device)
            with self._autocast():
                for inputs, labels in split.batches(self.batch_size):
                    logits = self._stacked(params, inputs)  # (K, batch, classes)
                    for total, metric in zip(totals, self.metrics.statistics):
                        total += metric.statistic.sum_stacked(logits, labels, self._loss_sum, self._loss_sums).double()
                    if check and self.batch_fn is None:
                        bad += self._nonfinite_samples(logits)
            n = self.metrics.counts[split.name]
            return ({f"{split.name}_{m.key}": [m.statistic.value(t, n) for t in total.tolist()]
                     for m, total in zip(self.metrics.statistics, totals)}, [int(x) for x in bad.tolist()])

        return self._halving(run)

    def evaluate_many(self, points: Sequence[tuple[float, float]]) -> list[dict[str, float]]:
        """The metrics of each point, in order, computed ``points_per_forward`` points a pass."""
        self.warm_up()
        k = self.points_per_forward or 1
        results: list[dict[str, float]] = []
        if k == 1 or self.curvature is not None:
            # The Hessian's Lanczos runs are per point: K only groups the forward passes.
            return [self.evaluate(a, b) for a, b in points]
        for start in range(0, len(points), k):
            group = list(points[start:start + k])
            # A short last group is padded to K with copies of its last point: every forward
            # then has the same shapes (no recompilation, no new cuDNN autotuning).
            params = self.stacked_point_params(group + [group[-1]] * (k - len(group)))
            metrics: list[dict[str, float]] = [{} for _ in group]
            nonfinite = [0] * len(group)
            for split in self.splits:
                stacked, bad = self._evaluate_split_stacked(split, params, k)
                for i, point in enumerate(metrics):
                    point.update(_nan_if({name: values[i] for name, values in stacked.items()}, bad[i]))
                    nonfinite[i] += bad[i]
            self.nonfinite.extend((a, b, n) for (a, b), n in zip(group, nonfinite) if n)
            results.extend(metrics)
        return results

    # -- warm-up: choose K, compile ------------------------------------------------------

    def warm_up(self) -> None:
        """Resolves ``points_per_forward: auto`` and compiles, before any point is timed."""
        if self._warm:
            return
        self._warm = True
        if self.plan.auto_batch and self.device.type == "cuda":
            self._fit_batch()
        if self.points_per_forward is None:
            self.points_per_forward = self._choose_points_per_forward()
        if self.plan.compile:
            self._compile_forward()

    @torch.no_grad()
    def _fit_batch(self) -> None:
        """``batch_size: auto`` on CUDA: the largest batch (from the split's size or
        CUDA_AUTO_BATCH_START, halving) whose forward pass at the chosen K fits in memory."""
        sizes = [s.size for s in self.splits]
        if not sizes:
            return
        self.batch_size = min(self.batch_size, max(sizes))
        k = self.points_per_forward or 1
        params = self.stacked_point_params([(0.0, 0.0)] * k) if k > 1 else None

        def forward() -> None:
            inputs = self._first_batch()
            with self._autocast():
                self._stacked(params, inputs) if params is not None else call(self._single, inputs)
            torch.cuda.synchronize(self.device)

        self._halving(forward)
        self.oom_halvings = 0  # the search's halvings are not the run's

    def _first_batch(self) -> "torch.Tensor | dict[str, torch.Tensor] | None":
        for split in self.splits:
            for inputs, _ in split.batches(self.batch_size):
                return inputs
        return None

    def _choose_points_per_forward(self) -> int:
        """CPU: 1 (measured: the vmapped grouped convolutions are slower per point there).
        CUDA: the fastest per point of AUTO_CANDIDATES, timed on the first batch; a K that
        runs out of memory ends the search."""
        inputs = self._first_batch()
        if self.device.type != "cuda" or inputs is None:
            return 1
        times: dict[int, float] = {}
        for k in AUTO_CANDIDATES:
            try:
                times[k] = self._time_forward(inputs, k) / k
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                break
        return min(times, key=times.get) if times else 1

    @torch.no_grad()
    def _time_forward(self, inputs: torch.Tensor, k: int, repeats: int = 2) -> float:
        params = self.stacked_point_params([(0.0, 0.0)] * k) if k > 1 else None
        best = float("inf")
        with self._autocast():
            for i in range(repeats + 1):  # the first call builds kernels and is not counted
                torch.cuda.synchronize(self.device)
                start = time.perf_counter()
                self._stacked(params, inputs) if params is not None else call(self._single, inputs)
                torch.cuda.synchronize(self.device)
                if i:
                    best = min(best, time.perf_counter() - start)
        return best

    @torch.no_grad()
    def _compile_forward(self) -> None:
        """Compiles the forward in use and runs it on every distinct batch shape once, so all
        compilation happens here and is measured apart from the points."""
        started = time.perf_counter()
        k = self.points_per_forward or 1
        if k == 1:
            self._single = torch.compile(self.model, dynamic=False)
        else:
            self._stacked = torch.compile(self._stacked, dynamic=False)
        params = self.stacked_point_params([(0.0, 0.0)] * k) if k > 1 else None
        with self._autocast():
            for split in self.splits:
                shapes: dict[tuple[int, ...], torch.Tensor | dict[str, torch.Tensor]] = {}
                for inputs, _ in split.batches(self.batch_size):
                    shapes.setdefault(_shape(inputs), inputs)
                for inputs in shapes.values():
                    self._stacked(params, inputs) if params is not None else call(self._single, inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_seconds = time.perf_counter() - started
