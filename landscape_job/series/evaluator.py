"""A series' evaluator: the evaluate stage's worker for checkpoints instead of grid points.

The evaluate stage (``stages/evaluate_stage``) shards, checkpoints, resumes and finishes
a series exactly as a surface: it asks its evaluator for the column names, then for the
values at points of the grid, which for a series are checkpoint indices
(``spec_series.series_grid``). This class answers with ``series_probe.measure`` at
each checkpoint, which it fetches (a URL into the input cache) and checks against the
sha256 prepare recorded in the manifest, so a checkpoint rewritten during the run is one
line naming it, never a row from another model.

Precision: fp64 when the spec says so, else fp32: a Hessian through bf16/fp16
rounding is noise (the convexity maps take the same view).
"""

from __future__ import annotations

import torch

from landscape_job.base.errors import StageError, UserError
from landscape_job.inputs.fetch import Fetcher
from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.run.records import Manifest
from landscape_job.runtime.precision import PrecisionChoice
from landscape_job.series.probe import measure, row_width
from landscape_job.spec.localize import localize
from landscape_job.spec.sections import Spec
from landscape_job.spec.series_metrics import column_name, selected
from landscape_job.surface.centre import build_centre_model, check_outputs, load_splits
from landscape_job.surface.curvature import hessian_parameters, hessian_split
from landscape_job.surface.feed import ResidentSplit
from landscape_job.surface.point_evaluator import HowEvaluated


def series_columns(spec: Spec, layers: int) -> list[str]:
    """The shard columns a series computes, in registry order (``layers``: tensors of the Hessian)."""
    assert spec.series is not None
    names: list[str] = []
    for metric in selected(spec.series.metrics):
        if metric.shape == "split":
            names += [f"{s}_{metric.key}" for s in spec.data.splits]
        elif metric.shape == "scalar":
            names.append(metric.key)
        elif metric.shape == "layers" and metric.source == "noise" and not spec.series.noise_per_layer:
            continue  # the noise's per tensor only on request
        else:
            names += [column_name(metric.key, i) for i in range(row_width(metric.shape, spec.series, spec.hessian,
                                                                             layers))]
    return names


def layer_names(model: torch.nn.Module, spec: Spec) -> list[str]:
    """The parameter tensors the Hessian, gradient and noise are taken over, by name."""
    names = [n for n, _ in model.named_parameters()]
    return [names[i] for i in hessian_parameters(model, spec.hessian.ignore)]


#: The noise matrix (minibatches x parameters, float64) a shard may hold: the estimator reads it whole.
MAX_NOISE_BYTES = 4 << 30


def check_noise_memory(spec: Spec, model: torch.nn.Module, samples: int) -> None:
    """Refuses, before the first checkpoint, a noise matrix too large to hold (one line naming the keys)."""
    assert spec.series is not None
    params = dict(model.named_parameters())
    width = sum(params[n].numel() for n in layer_names(model, spec))
    batch = min(spec.series.noise_batch_size, samples)
    rows = spec.series.noise_batches or max(samples // batch, 2)
    size = rows * width * 8
    if size > MAX_NOISE_BYTES:
        raise UserError(f"series.noise_batches: {rows} minibatches x {width:,} parameters is {size / 2**30:.1f} GiB "
                        f"of noise, more than the {MAX_NOISE_BYTES >> 30} GiB a shard holds; set series.noise_batches "
                        f"(or hessian.subset) lower, or hessian.ignore: biasbn")


class SeriesEvaluator:
    """Measures checkpoints by index; the attributes are those the evaluate stage reads and records."""

    #: One checkpoint at a time, the whole batch always (no halving): the ``PointEvaluator`` counts.
    oom_halvings = 0

    def __init__(self, spec: Spec, manifest: Manifest, device: torch.device):
        if spec.series is None:
            raise ValueError("SeriesEvaluator needs a series spec")
        self.spec, self.series, self.manifest, self.device = spec, spec.series, manifest, device
        listed = (manifest.series or {}).get("checkpoints")
        if listed is not None and list(listed) != list(spec.series.checkpoints):
            raise StageError("series.checkpoints: the checkpoints listed now differ from those prepare listed "
                             "(did a glob match new files?); start a new run")
        local = localize(spec)
        self.fetcher = Fetcher(s3_options=spec.storage.options)
        fp64 = spec.compute.precision == "fp64"
        self.precision = "fp64" if fp64 else "fp32"
        self.precision_choice = PrecisionChoice(self.precision, "as the spec says" if spec.compute.precision
                                                in ("fp64", "fp32") else "series: fp32 (a Hessian through "
                                                "reduced precision is noise)")
        self.dtype = torch.float64 if fp64 else torch.float32
        self.model = build_centre_model(local).to(device, self.dtype).eval()
        splits = load_splits(local)
        check_outputs(self.model, splits[0], local)
        # Held whole, as the surface's evaluator holds data on the device (its ``size`` for the estimate).
        self.splits = [ResidentSplit(s.name, s.inputs, s.labels) for s in splits]
        self.samples = hessian_split(local)
        self.batch_size = spec.hessian.batch_size or (spec.compute.batch_size
                                                      if isinstance(spec.compute.batch_size, int) else 1024)
        self.columns = series_columns(spec, len(layer_names(self.model, spec)))
        if "noise" in spec.series.metrics:
            check_noise_memory(spec, self.model, len(self.samples.labels))
        self.keys = {m.key for m in selected(spec.series.metrics)}
        self.eigensolve = "top_eigenvalues" in self.keys
        self.unconverged = 0
        self.nonfinite: list[tuple[float, float, int]] = []

    def resident_bytes(self) -> int:
        """The model's tensors and every split's samples, held for the whole shard (``launcher estimate``)."""
        tensors = [*self.model.parameters(), *self.model.buffers(),
                   *(t for s in (*self.splits, self.samples) for t in (s.inputs, s.labels))]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def metric_names(self) -> list[str]:
        return list(self.columns)

    def warm_up(self) -> None:
        """Nothing to choose or compile: one checkpoint is one measurement."""

    def how(self) -> HowEvaluated:
        return HowEvaluated(precision=self.precision, precision_reason=self.precision_choice.reason)

    def unconverged_points(self) -> int | None:
        return self.unconverged if self.eigensolve else None

    def load(self, index: int) -> None:
        """The weights of checkpoint ``index`` in the model, from a file whose sha256 is the manifest's."""
        url = self.series.checkpoints[index]
        where = f"series.checkpoints[{index}]"
        path = self.fetcher.file(url, where, self.spec.pins.get(url) or self.manifest.checkpoints.get(url))
        load_into(self.model, load_state_dict(path), f"{where} {url}")  # copied into the model's device and dtype

    def evaluate_many(self, points: list[tuple[float, float]]) -> list[dict[str, float]]:
        out = []
        for a, _ in points:
            self.load(int(round(a)))
            values = measure(self.model, self.splits, self.samples, self.series, self.spec.hessian, self.spec.loss,
                             self.batch_size, self.keys)
            if self.eigensolve and values.get("lanczos_converged", 1.0) < 1.0:
                self.unconverged += 1
            out.append({name: values.get(name, float("nan")) for name in self.columns})
        return out
