"""Reading a spec: a YAML file or a dict becomes a checked ``Spec``, or one line naming the key.

The sections' dataclasses declare each key once (``sections``); this module walks the
document section by section and applies the rules that cross keys (a grid too large for
the shards, a trajectory that does not fit the grid, metrics that need a hessian section).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

from landscape_job.base import pyref
from landscape_job.base.errors import UserError, shown
from landscape_job.base.pyref import is_ref as is_python_ref
from landscape_job.base.pyref import split_ref
from landscape_job.base.schema import MAX_YAML_BYTES, Section, load_yaml, type_name
from landscape_job.inputs.fetch import Fetcher
from landscape_job.spec.direction_types import AS_WRITTEN, FORCED, direction_type
from landscape_job.spec.grid import MAX_POINTS, Axis, Grid
from landscape_job.spec.mistakes import Mistakes

#: plots.levels.MAX_LEVELS (a higher floor): the most contour levels a figure draws.
MAX_PLOT_LEVELS = 500
from landscape_job.spec.inputs import read_input, resolve_input
from landscape_job.spec.metrics import METRIC_CHOICES, SPLITS  # the registry's: loss, accuracy, hessian, ...
from landscape_job.spec.metrics import use_language_metrics
from landscape_job.spec.model import parse_model
from landscape_job.spec.outputs import checked_outputs
from landscape_job.spec.sections import (
    _NAME_RE,
    DIR_TYPES,
    DOWNLOADABLE,
    FIXED_CLASSES,
    IGNORES,
    LOSSES,
    NORMS,
    TOKEN_METRICS,
    TOKEN_TASKS,
    ComputeSpec,
    DataSpec,
    DirectionsSpec,
    HessianSpec,
    ParamsSpec,
    PlotSpec,
    PythonSpec,
    Spec,
)
from landscape_job.spec.series import CHECKPOINT_SUFFIXES, SeriesSpec, list_checkpoints, parse_series, series_grid
from landscape_job.spec.titles import checked_title
from landscape_job.storage.location import StorageLocation, local_path



def load_spec(path: str | Path, storage_override: str | None = None, check_files: bool = True) -> Spec:
    """Reads and validates a spec file, naming the file on any read or YAML error.

    ``check_files=False`` skips the existence checks of checkpoints, direction files and
    data roots: for a cluster they are paths on the pods' volumes, which the pods check
    (exit code 2) when they read the same spec.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: spec file not found")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise UserError(f"{path}: {path.stat().st_size:,} bytes is more than the {MAX_YAML_BYTES:,} "
                            "a spec may have")
        raw = load_yaml(path.read_text(), str(path))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read spec file: {shown(str(err))}") from None
    default_name = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")[:40] or "surface"
    return parse_spec(raw, base_dir=path.parent.resolve(), default_name=default_name,
                      storage_override=storage_override, check_files=check_files)


def parse_spec(raw: object, base_dir: Path, default_name: str = "surface",
               storage_override: str | None = None, check_files: bool = True) -> Spec:
    """Validates a spec mapping; relative paths are taken against ``base_dir``.

    Every section is checked even after one fails, and all their mistakes raised together
    (``UserErrors``, one line each): a section that needs a failed one (directions and
    compute need the grid; the grid of a series needs the series) is skipped and named.
    """
    top = Section(raw, "")
    found = Mistakes()
    name = found.check(lambda: _parse_name(top, default_name))
    pins: dict[str, str] = {}
    python = found.check(lambda: _parse_python(top.section(Spec, "python"), base_dir, check_files))
    storage = found.check(lambda: StorageLocation.from_spec(top.get("storage", (str, dict), None), base_dir,
                                                           storage_override))
    series_failed = False
    series: SeriesSpec | None = None
    if top.has("series") and storage is None:
        found.skip("series", ["storage"])
        series_failed = True
    elif top.has("series"):
        series = found.check(lambda: _series_layout(top, base_dir, check_files, pins, storage))
        series_failed = series is None
    top.seen.add("series")
    model_section = found.check(lambda: top.section(Spec, "model"))
    model = None
    if model_section is not None:
        if series is not None and not model_section.has("checkpoint"):
            model_section.raw = {**model_section.raw, "checkpoint": series.checkpoints[-1]}  # the last: fits the arch
        if series_failed and not model_section.has("checkpoint"):
            found.skip("model", ["series"])  # its checkpoint defaults to the series' last
        else:
            model = found.check(lambda: parse_model(model_section, base_dir, check_files, pins))
    data = found.check(lambda: _parse_data(top.section(Spec, "data"), base_dir, check_files, pins))
    loss = found.check(lambda: _parse_loss(top))
    task = found.check(lambda: top.read(Spec, "task"))
    grid = None
    if series is not None:
        grid = series_grid(series)
    elif not series_failed:
        grid = found.check(lambda: _parse_grid(top))
    else:
        top.seen.add("grid")
    if task in TOKEN_TASKS:
        use_language_metrics()
    metrics = found.check(lambda: _parse_metrics(top.read(Spec, "metrics") if top.has("metrics")
                                                 or task not in TOKEN_TASKS else TOKEN_METRICS, task))
    needed = [n for n, v in (("task", task), ("model", model), ("data", data), ("loss", loss), ("metrics", metrics))
              if v is None]
    if not needed:
        found.check(lambda: _check_task(task, model, data, loss, metrics, series is not None))
    hessian = found.check(lambda: _parse_hessian(Section(top.get("hessian", dict, None), "hessian")))
    hessian_raw = top.raw.get("hessian")
    if series is not None and hessian is not None and "density" in series.metrics and hessian.density_steps == 0:
        found.errors.append(UserError("hessian.density_steps: series.metrics has density; set the Lanczos steps per "
                                      "probe (60-100 resolve a network's outliers)"))
    if series is not None and hessian is not None and "hessian" in series.metrics \
            and hessian.iterations <= series.top_k:
        found.errors.append(UserError(
            f"hessian.iterations: {hessian.iterations} Lanczos steps cannot give series.top_k = "
            f"{series.top_k} eigenpairs; use at least {2 * series.top_k}"))
    directions = notes = None
    failed = [n for n, v in (("grid", grid), ("hessian", hessian)) if v is None]
    if failed:
        found.skip("directions", failed)
        top.seen.add("directions")
    else:
        parsed = found.check(lambda: _parse_directions(top.section(Spec, "directions"), base_dir, grid,
                                                       check_files, pins, hessian))
        if parsed is not None:
            directions, notes = parsed
    if task is not None and task != "classification" and directions is not None and metrics is not None \
            and ("hessian" in metrics or directions.type == "hessian"):
        found.errors.append(UserError(f"metrics: the Hessian is not yet computed for task {task}; remove hessian"))
    if directions is not None and directions.type == "pca" and check_files and model is not None:
        found.check(lambda: _check_trajectory_size(directions.trajectory, model.checkpoint, grid))
    if hessian_raw is not None and metrics is not None and directions is not None and "hessian" not in metrics \
            and directions.type != "hessian" and series is None:
        found.errors.append(UserError("hessian: only used with metrics: [..., hessian] or directions.type: hessian; "
                                      "add one of them or remove this section"))
    compute = None
    if grid is None:
        found.skip("compute", ["series" if series_failed else "grid"])
        top.seen.add("compute")
    else:
        # A series' glob left for the pods to expand (files not checked here) has no count yet.
        compute = found.check(lambda: _parse_compute(top.section(Spec, "compute"), grid,
                                                     series is None or series.listed))
    plot = found.check(lambda: _parse_plot(top.section(Spec, "plot")))
    kubernetes = found.check(lambda: top.read(Spec, "kubernetes"))
    slurm = found.check(lambda: top.read(Spec, "slurm"))
    found.check(top.finish)
    found.raise_if_any()
    return Spec(name=name, model=model, data=data, task=task, loss=loss, directions=directions, grid=grid,
                compute=compute, storage=storage, plot=plot,
                kubernetes=kubernetes, slurm=slurm, notes=tuple(notes) if series is None else (), metrics=metrics, hessian=hessian,
                python=python, pins=pins, series=series)


def _parse_name(top: Section, default_name: str) -> str:
    name = top.get("name", str, default_name)
    if not _NAME_RE.match(name):
        raise UserError(f"name: expected 1-40 lowercase letters, digits or '-', starting and ending "
                        f"with a letter or digit (it names Kubernetes objects); got {shown(name)}")
    return name


def _parse_grid(top: Section) -> Grid:
    """``grid.x`` and ``grid.y`` (each checked, both named when both are wrong), and the size bound."""
    grid_section = top.section(Spec, "grid")
    found = Mistakes()
    x = found.check(lambda: Axis.parse(grid_section.get("x", object), "grid.x"))
    y = found.check(lambda: Axis.parse(grid_section.get("y", object), "grid.y")) if grid_section.has("y") else None
    found.check(grid_section.finish)
    found.raise_if_any()
    if grid_section.has("y") and y is None or x is None:
        raise AssertionError("unreachable: a failed axis raised above")
    grid = Grid(x, y)
    if grid.size > MAX_POINTS:
        raise UserError(f"grid: {grid.size:,} points is more than the {MAX_POINTS:,} supported; reduce grid.x/grid.y")
    return grid


def _series_layout(top: Section, base_dir: Path, check_files: bool, pins: dict[str, str],
                   storage: StorageLocation) -> SeriesSpec | None:
    """``series:`` (``spec_series``), which stands in for grid, directions and metrics; None without it.
    An S3 prefix among its checkpoints is listed with the storage's S3 options."""
    if not top.has("series"):
        return None
    for name in ("grid", "directions", "metrics"):
        if top.has(name):
            raise UserError(f"{name}: a series run evaluates each of series.checkpoints; remove {name}")
    return parse_series(top.section(Spec, "series"), base_dir, check_files, pins, lambda url, where:
                        Fetcher(s3_options=storage.options).list_files(url, where, CHECKPOINT_SUFFIXES))


def _named_metrics(task: str = "classification") -> list[str]:
    """The registry's choices a spec names by word for ``task`` (the python: ones this process
    registered left out)."""
    refused = (*_PER_SAMPLE_ONLY, "hessian") if task in TOKEN_TASKS else _PER_TOKEN_ONLY
    return [c for c in METRIC_CHOICES if not is_python_ref(c) and c not in refused]


def _parse_metrics(raw: list | tuple | str, task: str = "classification") -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise UserError(f"metrics: name at least one of {', '.join(_named_metrics(task))}")
    for i, item in enumerate(items):
        if is_python_ref(item):
            split_ref(item, f"metrics[{i}]")
        elif item not in METRIC_CHOICES:
            raise UserError(f"metrics[{i}]: expected one of {', '.join(_named_metrics(task))} or "
                            f"python:package.module:function; got {shown(item)}")
    if len(set(items)) != len(items):
        raise UserError(f"metrics: a metric is listed twice: {items}")
    # The registry's order, then the user's metrics in the order given (registered or not yet).
    return tuple(m for m in METRIC_CHOICES if m in items and not is_python_ref(m)) + \
        tuple(m for m in items if is_python_ref(m))


#: Metrics of one sample each: meaningless per token (accuracy), and per token for samples (token_accuracy).
_PER_SAMPLE_ONLY, _PER_TOKEN_ONLY = ("accuracy",), ("perplexity", "token_accuracy")


def _check_task(task: str, model, data: DataSpec, loss: str, metrics: tuple[str, ...], series: bool) -> None:
    """The rules that tie ``task`` to the data, the model, the loss and the metrics."""
    tokens = task in TOKEN_TASKS
    if data.dataset == "tokens" and task == "classification":
        raise UserError("task: data.dataset tokens is token data; set task to causal_lm, masked_lm or "
                        "sequence_classification")
    if model.hf is not None and task == "classification":
        raise UserError("task: model.hf needs a language-model task (causal_lm, masked_lm or "
                        "sequence_classification); add task")
    if tokens and loss != "cross_entropy":
        raise UserError(f"loss: task {task} is next-token (or masked-token) cross entropy; remove loss "
                        f"({shown(loss)})")
    wrong = [m for m in metrics if m in (_PER_SAMPLE_ONLY if tokens else _PER_TOKEN_ONLY)]
    if wrong:
        raise UserError(f"metrics: {wrong[0]} is not computed for task {task}; choose from "
                        f"{', '.join(_named_metrics(task))}")
    if (tokens or task == "sequence_classification") and series:
        raise UserError(f"series: not yet for task {task}; use grid and directions")


def _parse_hessian(s: Section) -> HessianSpec:
    values = s.read_all(HessianSpec)
    s.finish()
    tolerance = values["tolerance"]
    if not 0 < tolerance < 1:
        raise UserError(f"hessian.tolerance: expected a number between 0 and 1 (relative), got {tolerance}")
    return HessianSpec(**values)


def _parse_loss(top: Section) -> str:
    """A built-in loss, or ``python:package.module:function`` (see landscape_job.surface.losses)."""
    loss = top.read(Spec, "loss")
    if is_python_ref(loss):
        split_ref(loss, "loss")
        return loss
    if loss not in LOSSES:
        raise UserError(f"loss: expected one of {', '.join(LOSSES)}; got {shown(loss)} (or python:package.module:function)")
    return loss


def _parse_python(s: Section, base_dir: Path, check_files: bool) -> PythonSpec:
    """Folders are resolved like every path; requirements are pip requirement strings."""
    def strings(name: str) -> list[str]:
        raw = s.read(PythonSpec, name)
        items = [raw] if isinstance(raw, str) else list(raw)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise UserError(f"python.{name}[{i}]: expected a non-empty string, got {type_name(item)}")
        return items

    paths = []
    for i, item in enumerate(strings("path")):
        folder = Path(local_path(item)).expanduser()
        folder = folder if folder.is_absolute() else (base_dir / folder).resolve()
        if check_files and not folder.is_dir():
            raise UserError(f"python.path[{i}]: folder not found: {folder}")
        paths.append(str(folder))
    requirements = [pyref.check_requirement(item, f"python.requirements[{i}]")
                    for i, item in enumerate(strings("requirements"))]
    s.finish()
    return PythonSpec(path=tuple(paths), requirements=tuple(requirements))


def _parse_data(s: Section, base_dir: Path, check_files: bool, pins: dict[str, str]) -> DataSpec:
    dataset = s.read(DataSpec, "dataset")
    if is_python_ref(dataset):
        split_ref(dataset, "data.dataset")
    root = s.read(DataSpec, "root")
    if root is not None:
        root = resolve_input(root, "data.root", base_dir, check_files, pins, folder=True)
    splits_raw = s.read(DataSpec, "splits")
    splits = (splits_raw,) if isinstance(splits_raw, str) else tuple(splits_raw)
    if not splits:
        raise UserError("data.splits: name at least one of train, test")
    for split in splits:
        if split not in SPLITS:
            raise UserError(f"data.splits: expected train and/or test, got {shown(split)}")
    if len(set(splits)) != len(splits):
        raise UserError(f"data.splits: a split is listed twice: {list(splits)}")
    subset, subset_seed, options, classes, download, context, sequences = s.read_all(
        DataSpec, ("subset", "subset_seed", "options", "classes", "download", "context", "sequences")).values()
    s.finish()
    if dataset != "tokens":
        for name, value in (("context", context), ("sequences", sequences)):
            if value is not None:
                raise UserError(f"data.{name}: only for data.dataset tokens (token data); remove it")
    elif subset is not None:
        raise UserError("data.subset: token data takes data.sequences (a seeded selection of sequences); "
                        "use that instead")
    if download and dataset not in DOWNLOADABLE:
        raise UserError(f"data.download: only for {', '.join(DOWNLOADABLE)} (torchvision's downloads), "
                        f"not {shown(dataset)}; remove it")
    if classes is not None and dataset in FIXED_CLASSES:
        raise UserError(f"data.classes: {dataset} has a fixed number of classes; remove it (it is for "
                        "tensors, imagefolder and python: data sets)")
    return DataSpec(dataset=dataset, root=root, splits=tuple(sorted(splits, key=SPLITS.index)),
                    subset=subset, subset_seed=subset_seed, options=options, classes=classes, download=download,
                    context=context, sequences=sequences)


def _parse_directions(s: Section, base_dir: Path, grid: Grid, check_files: bool,
                      pins: dict[str, str], hessian: HessianSpec = HessianSpec()) -> tuple[DirectionsSpec, list[str]]:
    """``directions``: what each type needs and defaults to comes from ``direction_types.TYPES``."""
    kind = s.read(DirectionsSpec, "type")
    facts = direction_type(kind)
    notes: list[str] = []
    targets_raw = s.read(DirectionsSpec, "targets")
    targets_list = [targets_raw] if isinstance(targets_raw, (str, dict)) else list(targets_raw)
    for i, target in enumerate(targets_list):
        if not isinstance(target, (str, dict)):
            raise UserError(f"directions.targets[{i}]: expected a checkpoint path, got {type_name(target)}")
    targets = tuple(resolve_input(t, f"directions.targets[{i}]", base_dir, check_files, pins)
                    for i, t in enumerate(targets_list))
    if len(targets) != facts.targets:
        raise UserError(f"directions.targets: type {kind} takes {facts.targets_phrase}, got {len(targets)}")
    file = read_input(s, "file", base_dir, check_files, pins) if facts.reads_file else s.read(DirectionsSpec, "file")
    if not facts.reads_file and file is not None:
        raise UserError(f"directions.file: only used with type: file (type is {kind})")

    trajectory = _parse_trajectory(s, kind, base_dir, check_files, pins)

    chosen = {"dir_type": s.choice("dir_type", DIR_TYPES, None), "norm": s.choice("norm", NORMS, None),
              "ignore": s.choice("ignore", IGNORES, None)}
    defaults = {"dir_type": facts.dir_type, "norm": facts.norm, "ignore": facts.forced_ignore(hessian.ignore)}
    if facts.settings == AS_WRITTEN:
        for name, value in chosen.items():
            if value is not None:
                raise UserError(f"directions.{name}: a direction file is used as written; remove this key")
        notes.append(facts.note)
    elif facts.settings == FORCED:
        for name, why_forced in facts.forced_why:
            if chosen[name] is not None and chosen[name] != defaults[name]:
                raise UserError(f"directions.{name}: type {kind} takes {name} {defaults[name]} ({why_forced}); "
                                f"got {shown(chosen[name])}")
        notes.append(facts.note)
    else:
        for name, value in chosen.items():
            if value is None:
                notes.append(f"directions.{name}: {defaults[name]} (default for type {kind}: {facts.defaults_why})")
        defaults.update({name: value for name, value in chosen.items() if value is not None})
    dir_type, norm, ignore = defaults["dir_type"], defaults["norm"], defaults["ignore"]

    seed = s.read(DirectionsSpec, "seed")
    same_dir = s.read(DirectionsSpec, "same_dir")
    orthogonalize = s.read(DirectionsSpec, "orthogonalize")
    storage = s.read(DirectionsSpec, "storage")
    params = _parse_params(s.read(DirectionsSpec, "params"), kind)
    s.finish()
    if storage == "seeded" and kind != "random":
        raise UserError(f"directions.storage: seeded regenerates random directions from their seed; type {kind} "
                        "has values only a file can hold (use file or auto)")

    if facts.ndim is not None and grid.ndim != facts.ndim:
        raise UserError(facts.ndim_error)
    if same_dir and (not facts.allows_same_dir or grid.y is None):
        raise UserError("directions.same_dir: only for 2-D random directions (y = x)")
    if orthogonalize and grid.y is None:
        raise UserError("directions.orthogonalize: needs a second direction; add grid.y")
    if orthogonalize and facts.orthogonalize_refused:
        raise UserError(f"directions.orthogonalize: {facts.orthogonalize_refused}; remove this key")
    if orthogonalize and same_dir:
        raise UserError("directions.orthogonalize: cannot orthogonalize y against x when same_dir is true")
    return DirectionsSpec(type=kind, targets=targets, file=file, dir_type=dir_type, norm=norm, ignore=ignore,
                          seed=seed, same_dir=same_dir, orthogonalize=orthogonalize, trajectory=trajectory,
                          storage=storage, params=params), notes


#: The direction types whose tensors ``directions.params`` can leave at θ* (a file, PCA and the
#: Hessian's eigenvectors are over the tensors as computed).
_PARAMS_TYPES = ("random", "interpolate", "plane")


def _parse_params(raw: dict | None, kind: str) -> ParamsSpec | None:
    """``directions.params``: ``{include: globs, exclude: globs}``, each a string or a list of strings."""
    if raw is None:
        return None
    if kind not in _PARAMS_TYPES:
        raise UserError(f"directions.params: type {kind} uses its directions as computed; params is for "
                        f"{', '.join(_PARAMS_TYPES)}")
    unknown = sorted(set(raw) - {"include", "exclude"})
    if unknown:
        raise UserError(f"directions.params.{unknown[0]}: unknown key; expected include and/or exclude")
    patterns: dict[str, tuple[str, ...]] = {}
    for name in ("include", "exclude"):
        value = raw.get(name) or []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(p, str) and p.strip() for p in items):
            raise UserError(f"directions.params.{name}: expected glob patterns on tensor names (a string or a "
                            f"list of strings), got {shown(value)}")
        patterns[name] = tuple(items)
    if not patterns["include"] and not patterns["exclude"]:
        raise UserError("directions.params: give include and/or exclude patterns, or remove the key")
    return ParamsSpec(**patterns)


def _check_trajectory_size(trajectory: tuple[str, ...], final: str, grid: Grid) -> None:
    """PCA needs as many checkpoints other than θ_final as the plot has axes."""
    others = set(trajectory) - {final}
    needed = grid.ndim
    if len(others) < needed:
        raise UserError(f"directions.trajectory: a {grid.ndim}-D PCA plot needs at least {needed} trajectory "
                        f"checkpoint(s) besides model.checkpoint; got {len(others)}")


def _parse_trajectory(s: Section, kind: str, base_dir: Path, check_files: bool,
                      pins: dict[str, str]) -> tuple[str, ...]:
    """``directions.trajectory``: listed as ``spec_series.list_checkpoints`` lists a series' checkpoints."""
    raw = s.read(DirectionsSpec, "trajectory")
    entries = [raw] if isinstance(raw, str) else list(raw)
    if kind != "pca":
        if entries:
            raise UserError(f"directions.trajectory: only used with type: pca (type is {kind})")
        return ()
    if not entries:
        raise UserError("directions.trajectory: type pca needs the training trajectory's checkpoints, "
                        "a list of paths or a glob such as \"checkpoints/epoch_*.pt\"")
    return tuple(list_checkpoints(raw, "directions.trajectory", base_dir, check_files, pins))


def _parse_compute(s: Section, grid: Grid, counted: bool = True) -> ComputeSpec:
    values = s.read_all(ComputeSpec)
    s.finish()
    if values["weights"] != "fp32" and values["precision"] == "fp64":
        raise UserError(f"compute.weights: {values['weights']} weights cannot compute in precision fp64; "
                        "use weights fp32 or another precision")
    shards = values["shards"]
    if shards > grid.size and counted:
        raise UserError(f"compute.shards: {shards} shards for a grid of {grid.size} points; "
                        f"use at most {grid.size} (one point a shard)")
    return ComputeSpec(**values)


def _parse_plot(s: Section) -> PlotSpec:
    plot = PlotSpec(**s.read_all(PlotSpec))
    s.finish()
    formats = None if plot.formats is None else checked_outputs(plot.formats)
    plot = replace(plot, title=checked_title(plot.title), formats=formats)
    if plot.vmin is not None and plot.vmax is not None and plot.vmin >= plot.vmax:
        raise UserError(f"plot.vmin: must be below plot.vmax ({plot.vmin} >= {plot.vmax})")
    # What merge's PlotOptions would refuse after the compute is refused now (validate = run).
    for name in ("vmin", "vmax"):
        value = getattr(plot, name)
        if plot.log and value is not None and value <= 0:
            raise UserError(f"plot.{name}: must be positive with plot.log (log10 of the loss), got {value:g}")
    if plot.vlevel is not None and plot.vmin is not None and plot.vmax is not None:
        span = math.log10(plot.vmax / plot.vmin) if plot.log else plot.vmax - plot.vmin
        if span / plot.vlevel > MAX_PLOT_LEVELS:
            raise UserError(f"plot.vlevel: {plot.vlevel:g} would draw {span / plot.vlevel:.3g} contour levels between "
                            f"plot.vmin and plot.vmax (at most {MAX_PLOT_LEVELS}); use a larger plot.vlevel")
    return plot


def spec_from_yaml(text: str, source: str) -> Spec:
    """Re-reads a normalised spec stored in a run; its paths are already absolute."""
    return parse_spec(load_yaml(text, source), base_dir=Path("/"))
