"""The ``series:`` section of a spec: a run over a training run's checkpoints instead of a grid.

A series evaluates each checkpoint once (loss, accuracy, the top of the Hessian's
spectrum, the gradient's components on it, the gradient noise's tail index) and shards
the checkpoints over the same Indexed Job as a surface's grid points: the checkpoint
list *is* a 1-D grid of indices 0..n−1 (``series_grid``), so shards, resume, merge,
``launcher submit --local`` and the cluster's rendering work unchanged.

Checkpoints are listed as the PCA trajectory lists them (``list_checkpoints``, shared
with ``directions.trajectory``): paths, URLs and local globs expanded in natural order
(``epoch_2`` before ``epoch_10``), and for a series an S3 prefix (``s3://bucket/run/``,
the trailing slash makes it one: its checkpoint objects, ``CHECKPOINT_SUFFIXES``).
A glob or prefix is listed where files are checked (``launcher validate``, ``submit
--local``, every pod); a cluster spec keeps it for the pods, which list it again, and a
pod whose listing differs from prepare's stops (``series_evaluator``). Each has a training step: the last number in its file
name, or ``series.steps`` given alongside. Rows are kept in step order.

The optimiser's learning rate η and heavy-ball momentum β fix the stability threshold
of full-batch GD on a quadratic, (2 + 2β)/η (Cohen et al., ICLR 2021): the line the
top eigenvalue rises to at the edge of stability.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from landscape_job.base.errors import UserError, shown
from landscape_job.spec.grid import Axis, Grid
from landscape_job.base.schema import Section, key, one_or_list, type_name
from landscape_job.spec.series_metrics import DEFAULT_SERIES_METRICS, SERIES_CHOICES, needs_of
from landscape_job.spec.inputs import INPUT_SCHEMA, input_out, resolve_file, resolve_input

#: The most top eigenpairs a series takes per checkpoint: each costs a stored vector per Lanczos step.
MAX_TOP_K = 64
#: Checkpoints of one series: far more is a glob that matched the wrong folder.
MAX_CHECKPOINTS = 100_000
#: The objects an S3 prefix (``s3://bucket/run/ckpt/``) contributes: checkpoint files by their suffix.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar", ".safetensors")

#: Lists an S3 prefix: (url, key for messages) -> object URLs (``inputs.Fetcher.list_files``).
Lister = Callable[[str, str], list[str]]


def is_prefix(entry: str) -> bool:
    """``s3://bucket/some/folder/``: every checkpoint under it (a trailing slash says "a folder")."""
    return entry.startswith("s3://") and entry.endswith("/")

#: How the tail index is estimated (``series_probe``, ``tail_index``): today's default, or the seed's code exactly.
NOISE_ESTIMATORS = ("default", "reference")

_CHECKPOINTS_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "array", "items": INPUT_SCHEMA, "minItems": 1}]}
_INTS_SCHEMA = {"type": "array", "items": {"type": "integer", "minimum": 0}}


@dataclass(frozen=True, kw_only=True)
class SeriesSpec:
    """What a series run measures at each checkpoint, and the optimiser that made them."""

    checkpoints: tuple[str, ...] = key(kind=(list, str), json=_CHECKPOINTS_SCHEMA,
                                       description="the training run's checkpoints: a list, a glob in natural "
                                                   "order (\"ckpt/step_*.pt\") or an S3 prefix (\"s3://b/run/\")")
    steps: tuple[int, ...] = key((), kind=list, json=_INTS_SCHEMA,
                                 description="each checkpoint's training step (default: the last number in its "
                                             "file name)")
    lr: float = key(kind=float, positive=True, description="the optimiser's learning rate η")
    momentum: float = key(0.0, kind=float, description="heavy-ball momentum β (threshold (2 + 2β)/η)")
    metrics: tuple[str, ...] = key(DEFAULT_SERIES_METRICS, kind=(list, str),
                                   json=one_or_list({"enum": list(SERIES_CHOICES)}),
                                   description="per checkpoint: loss, accuracy, hessian (top-k, λmin), gradient "
                                               "(norm, components on the top-k), noise (tail index α)")
    top_k: int = key(10, kind=int, minimum=1, description=f"top Hessian eigenpairs per checkpoint (at most "
                                                          f"{MAX_TOP_K})")
    noise_batch_size: int = key(32, kind=int, minimum=1, description="noise: the minibatch size of the "
                                                                     "stochastic gradients")
    noise_batches: int | None = key(None, kind=int, minimum=2, description="noise: minibatches drawn "
                                                                           "(default: all of the samples, once)")
    noise_seed: int = key(0, kind=int, description="noise: the shuffle that forms the minibatches")
    noise_per_layer: bool = key(False, kind=bool, description="noise: also α of each parameter tensor")
    noise_estimator: str = key("default", choices=NOISE_ESTIMATORS,
                               description="noise: default (shuffled minibatches minus the full gradient; zeros "
                                           "left out, a near-prime count cut) | reference (the seed's code: "
                                           "batches in order, the last partial one kept, centred on their mean)")
    plot_steps: tuple[int, ...] = key((), kind=list, json=_INTS_SCHEMA,
                                      description="steps whose eigenvalue spectrum is drawn (default: first, "
                                                  "middle, last)")

    @property
    def listed(self) -> bool:
        """Every checkpoint is known: no glob is left for the pods to expand (an unchecked cluster spec)."""
        return not any(is_prefix(c) or ("://" not in c and glob.has_magic(c)) for c in self.checkpoints)

    @property
    def threshold(self) -> float:
        """(2 + 2β)/η: the largest stable curvature of (heavy-ball) GD on a quadratic."""
        return (2.0 + 2.0 * self.momentum) / self.lr

    def to_dict(self, pins: dict[str, str]) -> dict[str, Any]:
        return {"checkpoints": [input_out(c, pins) for c in self.checkpoints], "steps": list(self.steps),
                "lr": self.lr, "momentum": self.momentum, "metrics": list(self.metrics), "top_k": self.top_k,
                "noise_batch_size": self.noise_batch_size, "noise_batches": self.noise_batches,
                "noise_seed": self.noise_seed, "noise_per_layer": self.noise_per_layer,
                "plot_steps": list(self.plot_steps),
                # Written only when set: the hashes of runs made before the key existed stay as they were.
                **({"noise_estimator": self.noise_estimator} if self.noise_estimator != "default" else {})}


def series_grid(series: SeriesSpec) -> Grid:
    """The checkpoints as a 1-D grid of their indices 0..n−1: point p is checkpoint p."""
    n = len(series.checkpoints)
    return Grid(Axis(0.0, float(max(n - 1, 0)), n))


def natural_key(path: str) -> list[object]:
    """Sort key that orders digit runs by value, so epoch_2 comes before epoch_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def list_checkpoints(raw: object, name: str, base_dir: Path, check_files: bool, pins: dict[str, str],
                     lister: Lister | None = None) -> list[str]:
    """Checkpoint paths, URLs and/or local globs, in training order (``directions.trajectory``, ``series.checkpoints``).

    A glob is expanded (in natural order) when files are checked, so the stored spec
    names the very files used; unchecked (a cluster's paths) it is kept as an absolute
    pattern and expanded by the pod that parses it. With a ``lister``, an S3 prefix
    (``s3://bucket/folder/``) is listed the same way (its checkpoint objects in natural
    order); without one it is kept, for the pods to list.
    """
    entries = [raw] if isinstance(raw, str) else list(raw)  # type: ignore[arg-type]
    paths: list[str] = []
    for i, entry in enumerate(entries):
        where = f"{name}[{i}]" if isinstance(raw, list) else name
        if isinstance(entry, str) and is_prefix(entry):
            paths.extend(sorted(lister(entry, where), key=natural_key) if lister is not None and check_files else [entry])
            continue
        if isinstance(entry, dict) or (isinstance(entry, str) and "://" in entry and not entry.startswith("file://")):
            paths.append(resolve_input(entry, where, base_dir, check_files, pins))  # a URL: never a glob
            continue
        if not isinstance(entry, str):
            raise UserError(f"{where}: expected a checkpoint path, URL or glob, got {type_name(entry)}")
        if not glob.has_magic(entry):
            paths.append(resolve_file(entry, where, base_dir, check_files))
            continue
        pattern = resolve_file(entry, where, base_dir, must_exist=False)
        if not check_files:
            paths.append(pattern)
            continue
        matches = sorted((m for m in glob.glob(pattern) if Path(m).is_file()), key=natural_key)
        if not matches:
            raise UserError(f"{where}: no checkpoint file matches {pattern}")
        paths.extend(_inside_glob_folder(pattern, matches, where))
    return paths


def _inside_glob_folder(pattern: str, matches: list[str], where: str) -> list[str]:
    """The matches, each checked to resolve inside the glob's folder (the pattern's part before its first
    wildcard): a symlink there is followed only when its target stays inside; one that leads out is refused
    in one line, never read (a glob in a spec from elsewhere must not reach files its folder does not hold)."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    folder = os.path.realpath(Path(*parts[:fixed]))
    for match in matches:
        real = os.path.realpath(match)
        if os.path.commonpath([folder, real]) != folder:
            raise UserError(f"{where}: {shown(match, 200)} matches {shown(pattern, 200)} but resolves to {shown(real, 200)}, outside "
                            f"the glob's folder {shown(folder, 200)} (a symlink leading out is refused); list the file "
                            f"explicitly if it is meant")
    return matches


def step_of(path: str, where: str) -> int:
    """The training step in a checkpoint's file name: its last run of digits (``step_0120.pt`` -> 120)."""
    stem = path.rstrip("/").rsplit("/", 1)[-1]
    numbers = re.findall(r"\d+", stem.rsplit(".", 1)[0] if "." in stem else stem)
    if not numbers:
        raise UserError(f"{where}: no step number in the file name {shown(stem)}; list series.steps")
    return int(numbers[-1])


def _integers(s: Section, name: str) -> list[int]:
    values = s.read(SeriesSpec, name)
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"series.{name}[{i}]: expected a step (an integer >= 0), got {shown(value)}")
    return list(values)


def _metrics(raw: object) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else list(raw)  # type: ignore[arg-type]
    if not items:
        raise UserError(f"series.metrics: name at least one of {', '.join(SERIES_CHOICES)}")
    for i, item in enumerate(items):
        if item not in SERIES_CHOICES:
            raise UserError(f"series.metrics[{i}]: expected one of {', '.join(SERIES_CHOICES)}; got {shown(item)}")
    if len(set(items)) != len(items):
        raise UserError("series.metrics: a metric is listed twice")
    return tuple(m for m in SERIES_CHOICES if m in items)


def parse_series(s: Section, base_dir: Path, check_files: bool, pins: dict[str, str],
                 lister: Lister | None = None) -> SeriesSpec:
    """``series:``: the checkpoints in step order with their steps, and what to measure."""
    raw = s.read(SeriesSpec, "checkpoints")
    if isinstance(raw, list) and not raw:
        raise UserError("series.checkpoints: list at least one checkpoint, or give a glob")
    paths = list_checkpoints(raw, "series.checkpoints", base_dir, check_files, pins, lister)
    if len(paths) > MAX_CHECKPOINTS:
        raise UserError(f"series.checkpoints: {len(paths):,} checkpoints is more than the {MAX_CHECKPOINTS:,} "
                        "a series takes")
    steps = _integers(s, "steps")
    expanded = not any(is_prefix(p) or ("://" not in p and glob.has_magic(p)) for p in paths)
    if steps and expanded and len(steps) != len(paths):
        raise UserError(f"series.steps: {len(steps)} steps for {len(paths)} checkpoints; give one per checkpoint "
                        "(or none: the step is read from each file name)")
    if not steps and expanded:
        steps = [step_of(p, f"series.checkpoints[{i}]") for i, p in enumerate(paths)]
    if expanded:
        if len(set(steps)) != len(steps):
            raise UserError("series.steps: two checkpoints have the same step; list series.steps")
        order = sorted(range(len(paths)), key=lambda i: steps[i])  # rows in step order
        paths, steps = [paths[i] for i in order], [steps[i] for i in order]
    if len(set(paths)) != len(paths):
        raise UserError("series.checkpoints: a checkpoint is listed twice")
    values = s.read_all(SeriesSpec, ("lr", "momentum", "top_k", "noise_batch_size", "noise_batches", "noise_seed",
                                     "noise_per_layer", "noise_estimator"))
    metrics = _metrics(s.read(SeriesSpec, "metrics"))
    plot_steps = _integers(s, "plot_steps")
    s.finish()
    if not 0.0 <= values["momentum"] < 1.0:
        raise UserError(f"series.momentum: expected 0 <= β < 1, got {values['momentum']}")
    if values["top_k"] > MAX_TOP_K:
        raise UserError(f"series.top_k: at most {MAX_TOP_K}, got {values['top_k']}")
    if values["noise_estimator"] == "reference" and values["noise_batches"] is not None:
        raise UserError("series.noise_batches: the reference estimator takes every batch once, in order "
                        "(noise_seed is unused too); drop it")
    for choice in metrics:
        missing = [n for n in needs_of(choice) if n not in metrics]
        if missing and choice == "gradient":
            continue  # the gradient's norm alone; its components come with hessian
        if missing:
            raise UserError(f"series.metrics: {choice} needs {', '.join(missing)}; add it")
    return SeriesSpec(checkpoints=tuple(paths), steps=tuple(steps), metrics=metrics, plot_steps=tuple(plot_steps),
                      **values)
