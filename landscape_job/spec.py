"""The surface spec: the one input of a run, parsed strictly into typed dataclasses.

Every mistake is reported as one ``UserError`` naming the key path
(``grid.y: expected "min:max:num", got "1:2"``), before anything is written. Relative
paths are resolved against the spec file's folder, so a spec means the same thing
whatever the current directory; the normalised spec (``Spec.to_dict``) holds absolute
paths and all defaults filled in, and is what a run stores as ``spec.yaml``.

Inputs (checkpoints, direction files, data roots) may also be ``s3://`` or pinned
``https://`` URLs, or ``{url: ..., sha256: ...}``: the spec keeps them as given and each
stage fetches them (``landscape_job.inputs``). Keys added later (``data.classes``,
``data.download``, ``python``, pins) are written by ``to_dict`` only when set, so the
hash of an existing spec does not change.

A key is added in one place: a field of its section's record below, declared with
``schema.key`` (default, type, choices, bounds, description). The section's parser reads
it from there and ``launcher schema`` describes it; only a rule that ties keys together
is written by hand, in the parser. Input forms live in ``spec_inputs``, the model section
in ``spec_model``, ``storage`` in ``spec_storage``, the reading machinery in ``schema``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from landscape_job.direction_types import AS_WRITTEN, DIRECTION_TYPES, FORCED, direction_type
from landscape_job.errors import UserError, shown
from landscape_job.grid import AXIS_PATTERN, MAX_POINTS, Axis, Grid
from landscape_job.inputs import Fetcher
from landscape_job.location import StorageLocation, local_path
from landscape_job.metrics import METRIC_CHOICES, SPLITS  # the registry's: loss, accuracy, hessian, ...
from landscape_job.outputs import EXPORT_FORMATS, FIGURE_FORMATS, checked_outputs
from landscape_job.pyref import is_ref as is_python_ref
from landscape_job.pyref import split_ref
from landscape_job.schema import MAX_YAML_BYTES, Section, default_of, key, load_yaml, one_or_list, type_name
from landscape_job.spec_inputs import INPUT_SCHEMA, input_out, read_input, resolve_input
from landscape_job.spec_model import ModelSpec, model_out, parse_model
from landscape_job.spec_series import CHECKPOINT_SUFFIXES, SeriesSpec, list_checkpoints, parse_series, series_grid
from landscape_job.titles import MAX_TITLE_CHARS, checked_title

DIR_TYPES = ("weights", "states")
NORMS = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
IGNORES = ("biasbn", "none")
LOSSES = ("cross_entropy", "mse")
#: fp16 and auto came later: the stored value is the word itself, so existing specs keep their hash.
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp64", "auto")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_METRICS = ("loss", "accuracy")
#: Data sets torchvision can download (``data.download: true``), and those whose classes are fixed.
DOWNLOADABLE = ("cifar10", "cifar100", "mnist", "fashion_mnist")
FIXED_CLASSES = ("digits", "synthetic", *DOWNLOADABLE)
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


_STRINGS_SCHEMA = one_or_list({"type": "string", "minLength": 1}, choices=False)


@dataclass(frozen=True)
class DataSpec:
    dataset: str = key(description="digits | synthetic | cifar10 | cifar100 | mnist | fashion_mnist | "
                                   "imagefolder | tensors | python:package.module:function")
    root: str | None = key(None, kind=(str, dict), json=INPUT_SCHEMA,
                           description="a folder, an archive (.tar.gz, .zip), an s3:// prefix or archive")
    splits: tuple[str, ...] = key(SPLITS, kind=(list, str), json=one_or_list({"enum": list(SPLITS)}))
    subset: int | None = key(None, kind=int, minimum=1, description="a seeded random subset of each split")
    subset_seed: int = key(0, kind=int)
    options: dict[str, Any] = key(default_factory=dict, kind=dict,
                                  description="arguments of the data set (synthetic, imagefolder, python:)")
    #: Classes of a ``tensors`` or ``python:`` data set; None: the largest label + 1.
    classes: int | None = key(None, kind=int, minimum=2, description="tensors / imagefolder / python: the class "
                                                                     "count (default: largest label + 1)")
    #: Let torchvision download a missing built-in data set (clusters with internet only).
    download: bool = key(False, kind=bool, description="true: torchvision downloads a missing built-in set")


@dataclass(frozen=True)
class DirectionsSpec:
    type: str = key("random", choices=DIRECTION_TYPES)
    targets: tuple[str, ...] = key((), kind=(list, str, dict), json=one_or_list(INPUT_SCHEMA, choices=False),
                                   description="interpolate: [θ2] (x = θ2 − θ1); plane: [θ2, θ3]")
    file: str | None = key(None, kind=(str, dict), json=INPUT_SCHEMA,
                           description="type file: a direction file in the paper's layout")
    dir_type: str = key("weights", choices=DIR_TYPES, description="states also moves BN running statistics "
                                                                  "(default follows type)")
    norm: str = key("filter", choices=NORMS, description="default follows type")
    ignore: str = key("biasbn", choices=IGNORES, description="biasbn: zero bias/BN directions (default by type)")
    seed: int = key(0, kind=int)
    same_dir: bool = key(False, kind=bool, description="y = x")
    orthogonalize: bool = key(False, kind=bool, description="remove y's component along x, keep its norm")
    #: type pca: the training trajectory's checkpoints, in order (globs expanded when checked).
    trajectory: tuple[str, ...] = key((), kind=(list, str),
                                      json={"anyOf": [{"type": "string"}, {"type": "array", "items": INPUT_SCHEMA}]},
                                      description="type pca: the training run's checkpoints, a list or a glob")


@dataclass(frozen=True)
class ComputeSpec:
    shards: int = key(1, kind=int, minimum=1, description="the evaluate stage's parallel pieces")
    precision: str = key("fp32", choices=PRECISIONS, description="auto: bf16 on CUDA >= 8.0, fp16 on older "
                                                                 "CUDA, fp32 on CPU (decided by each worker)")
    batch_size: int | str = key(1024, kind=int, auto=True, description="auto: the largest batch whose forward "
                                                                       "fits the GPU (CPU: 1024)")
    device: str = key("auto", choices=DEVICES)
    checkpoint_every: int = key(64, kind=int, minimum=1, description="a worker saves its results every K points")
    checkpoint_seconds: float = key(60.0, kind=float, positive=True, description="... or T seconds, if sooner")
    #: Stretch the K-point interval (never the T-second one) while a save would cost more
    #: than 5% of the compute since the last: a cheap model's points come faster than saves.
    checkpoint_adapt: bool = key(True, kind=bool, description="save less often than every K points while a save "
                                 "costs over 5% of the compute (never less often than every T seconds)")
    #: "auto" or K: grid points evaluated together in one vmapped forward pass.
    points_per_forward: int | str = key("auto", kind=int, auto=True, description="grid points per vmapped "
                                        "forward pass (auto: timed on CUDA, 1 on CPU)")
    #: "auto", True or False: keep the data on the device, or stream it from pinned host memory.
    data_on_device: str | bool = key("auto", kind=bool, auto=True, description="false: stream from host memory")
    #: "auto", True or False: NHWC memory layout for image models.
    channels_last: str | bool = key("auto", kind=bool, auto=True, description="auto: on CUDA for 2-D conv models")
    #: torch.compile the forward pass (compile time is reported apart from the per-point time).
    compile: bool = key(False, kind=bool, description="torch.compile the forward")
    #: Record CUDA's allocation history and store it with each shard (for pytorch.org/memory_viz).
    memory_snapshot: bool = key(False, kind=bool, description="CUDA: store each shard's memory snapshot "
                                                              "(shards/*.memory.pickle)")


#: ``compute`` keys that change how fast the numbers come (or what is recorded beside them),
#: not the numbers beyond float rounding (summation order inside kernels): they are left
#: out of the spec hash, so a run resumed or re-sharded with other settings still merges.
#: ``precision`` changes the numbers and stays in. ``batch_size`` changes them by rounding
#: only, but was in the hash from the first release, so it stays (taking it out would
#: change every existing run's hash); an OOM's halving happens inside a worker and never
#: touches the spec.
SPEED_KEYS = ("points_per_forward", "data_on_device", "channels_last", "compile", "memory_snapshot",
              "checkpoint_adapt")


@dataclass(frozen=True)
class PlotSpec:
    vmin: float | None = key(None, kind=float)
    vmax: float | None = key(None, kind=float)
    vlevel: float | None = key(None, kind=float, positive=True, description="spacing of the contour levels")
    log: bool | None = key(None, kind=bool, description="log10 loss scale; null: when the loss spans decades")
    title: str | None = key(None, kind=str, json={"type": "string", "minLength": 1, "maxLength": MAX_TITLE_CHARS},
                            description="the figures' subject (default: model on data, or name)")
    formats: tuple[str, ...] | None = key(None, kind=(list, str),
                                          json=one_or_list({"enum": [*FIGURE_FORMATS, *EXPORT_FORMATS]}),
                                          description="merge's outputs (default png, pdf, vtp, html; "
                                                      "no pdf above 501 lines an axis)")


@dataclass(frozen=True)
class HessianSpec:
    """How the Hessian of the mean loss is probed (``metrics: [.., hessian]``, ``directions.type: hessian``).

    ``ignore: biasbn`` (the default, as in the paper's code) takes the Hessian over the
    tensors of dim > 1 only. ``tolerance`` bounds each extreme eigenvalue's error relative
    to the largest |eigenvalue| (a Lanczos residual bound); ``iterations`` caps the
    Hessian-vector products per point. ``subset`` (None: the loss's samples, i.e.
    ``data.subset``) trades accuracy for time: every product is a double-backward pass.
    """

    split: str = key("train", choices=SPLITS, description="the samples the Hessian is taken over")
    subset: int | None = key(None, kind=int, minimum=1, description="a seeded subset of that split "
                                                                    "(default: data.subset)")
    subset_seed: int = key(0, kind=int)
    iterations: int = key(100, kind=int, minimum=2, description="cap on Lanczos steps (Hessian-vector products) "
                                                                "per point")
    tolerance: float = key(1e-3, kind=float, json={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                           description="stop when both extreme Ritz residuals are <= tolerance · max|λ|")
    ignore: str = key("biasbn", choices=IGNORES, description="biasbn: tensors of dim > 1 only | none: all")
    trace_samples: int = key(20, kind=int, minimum=0, description="Hutchinson probes for tr(H) at the centre")
    seed: int = key(0, kind=int, description="Lanczos start vector and Hutchinson probes")
    batch_size: int | None = key(None, kind=int, minimum=1, description="default compute.batch_size")


@dataclass(frozen=True)
class PythonSpec:
    """Where the user's ``python:`` code comes from: folders (mounted volumes) and pip requirements."""

    path: tuple[str, ...] = key((), kind=(list, str), json=_STRINGS_SCHEMA,
                                description="folders put first on sys.path (relative to the spec file)")
    requirements: tuple[str, ...] = key((), kind=(list, str), json=_STRINGS_SCHEMA,
                                        description="pip requirements installed into the input cache")


_GRID_SCHEMA = {"type": "object", "properties": {
    "x": {"description": "min:max:num", "type": "string", "pattern": AXIS_PATTERN},
    "y": {"description": "min:max:num; omit for a 1-D curve", "type": ["string", "null"], "pattern": AXIS_PATTERN}},
    "required": ["x"], "additionalProperties": False}


@dataclass(frozen=True, kw_only=True)
class Spec:
    name: str = key(json={"type": "string", "pattern": _NAME_RE.pattern}, computed="the spec file's name",
                    description="lowercase, digits, '-'; names the run and its Kubernetes objects")
    model: ModelSpec = key(kind=ModelSpec)
    data: DataSpec = key(kind=DataSpec)
    loss: str = key("cross_entropy", kind=str,
                    json={"anyOf": [{"enum": list(LOSSES)}, {"type": "string", "pattern": "^python:"}]},
                    description="cross_entropy | mse (softmax vs one-hot, as in the paper) | python:pkg.mod:fn")
    directions: DirectionsSpec = key(default_factory=DirectionsSpec, kind=DirectionsSpec)
    grid: Grid = key(json=_GRID_SCHEMA, computed="with series: one point per checkpoint")
    compute: ComputeSpec = key(default_factory=ComputeSpec, kind=ComputeSpec)
    #: Where the run's results go: the URL and its options (S3 endpoint, region, ...).
    storage: StorageLocation = key(computed="./runs in the current directory",
                                   description="a folder, file:///path or s3://bucket/prefix, or {url: ..., S3 options}")
    plot: PlotSpec = key(default_factory=PlotSpec, kind=PlotSpec)
    #: The cluster settings; parsed by the launcher, which alone renders Kubernetes objects.
    kubernetes: dict[str, Any] = key(default_factory=dict, kind=dict,
                                     description="cluster settings, read only by the launcher")
    #: Why each direction default was chosen; shown by ``launcher validate``.
    notes: tuple[str, ...] = ()
    #: What each grid point computes: loss, accuracy (one forward pass), hessian (Lanczos).
    metrics: tuple[str, ...] = key(DEFAULT_METRICS, kind=(list, str), json=one_or_list(
        {"anyOf": [{"enum": list(METRIC_CHOICES)}, {"type": "string", "pattern": "^python:"}]}),
        description="add hessian for λmax/λmin at every point; python:pkg.mod:fn for your own")
    hessian: HessianSpec = key(HessianSpec(), kind=HessianSpec, description="only with metrics [.., hessian] or "
                                                                           "directions.type hessian")
    #: The user's code for ``python:`` models, data sets and losses.
    python: PythonSpec = key(default_factory=PythonSpec, kind=PythonSpec,
                             description="where python: models, data sets and losses come from")
    #: sha256 pins of inputs, by normalised URL (``{url: ..., sha256: ...}`` in the spec).
    pins: dict[str, str] = field(default_factory=dict)
    #: A series run over a training run's checkpoints instead of a grid (``spec_series``).
    series: SeriesSpec | None = key(None, kind=SeriesSpec, description="a run over checkpoints (sharpness, "
                                    "gradient spectrum, noise); replaces grid, directions and metrics")

    @property
    def uses_hessian(self) -> bool:
        """A series takes its curvature, gradient and noise over the ``hessian`` section's samples."""
        return "hessian" in self.metrics or self.directions.type == "hessian" or self.series is not None

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec: every default filled in, paths absolute, re-parseable."""
        grid = {"x": str(self.grid.x)}
        if self.grid.y is not None:
            grid["y"] = str(self.grid.y)
        data = asdict(self.data)
        data["splits"] = list(self.data.splits)
        data["root"] = input_out(self.data.root, self.pins)
        # Keys added after the first release are written only when set, so the spec
        # (and its hash) of an existing run stays exactly what it was.
        for name in ("classes", "download"):
            if data[name] == default_of(DataSpec, name):
                del data[name]
        directions = asdict(self.directions)
        directions["targets"] = [input_out(t, self.pins) for t in self.directions.targets]
        directions["trajectory"] = [input_out(t, self.pins) for t in self.directions.trajectory]
        if not directions["trajectory"]:
            del directions["trajectory"]  # written only for pca, so older specs keep their hash
        directions["file"] = input_out(self.directions.file, self.pins)
        model = model_out(self.model, self.pins)
        if self.series is not None and self.model.checkpoint == self.series.checkpoints[-1]:
            del model["checkpoint"]  # the default, taken again once a glob left for the pods is expanded
        python = {k: list(v) for k, v in asdict(self.python).items() if v}
        if self.directions.type == "file":
            # A direction file is used as written: these keys are refused for it on re-reading.
            for name in ("dir_type", "norm", "ignore"):
                directions.pop(name)
        # A series has no grid, directions or per-point metrics: its checkpoints are the grid.
        layout = ({"series": self.series.to_dict(self.pins)} if self.series is not None else
                  {"directions": directions, "grid": grid})
        return {
            "name": self.name,
            "model": model,
            "data": data,
            "loss": self.loss,
            **layout,
            "compute": asdict(self.compute),
            "storage": self.storage.to_spec(),
            "plot": {k: v for k, v in asdict(self.plot).items() if v is not None or k != "formats"},
            **({"metrics": list(self.metrics)} if self.series is None else {}),
            # Only where it is used: an unused hessian section is refused by parse_spec.
            **({"hessian": asdict(self.hessian)} if self.uses_hessian else {}),
            **({"kubernetes": self.kubernetes} if self.kubernetes else {}),
            **({"python": python} if python else {}),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def hash(self) -> str:
        """Identity of the computation: everything that changes the numbers.

        Storage, plot and cluster options are left out: moving a run, re-plotting it or
        running it elsewhere does not make its shards foreign.
        """
        content = {k: v for k, v in self.to_dict().items() if k not in ("storage", "plot", "name", "kubernetes")}
        if tuple(content.get("metrics", DEFAULT_METRICS)) == DEFAULT_METRICS:
            content.pop("metrics", None)  # so the hash of every spec from before metrics existed is unchanged
        content["compute"] = {k: v for k, v in content["compute"].items() if k not in SPEED_KEYS}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


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
    """Validates a spec mapping; relative paths are taken against ``base_dir``."""
    top = Section(raw, "")
    name = top.get("name", str, default_name)
    if not _NAME_RE.match(name):
        raise UserError(f"name: expected 1-40 lowercase letters, digits or '-', starting and ending "
                        f"with a letter or digit (it names Kubernetes objects); got {shown(name)}")
    pins: dict[str, str] = {}
    python = _parse_python(top.section(Spec, "python"), base_dir, check_files)
    storage = StorageLocation.from_spec(top.get("storage", (str, dict), None), base_dir, storage_override)
    series = _series_layout(top, base_dir, check_files, pins, storage)
    model_section = top.section(Spec, "model")
    if series is not None and not model_section.has("checkpoint"):
        model_section.raw = {**model_section.raw, "checkpoint": series.checkpoints[-1]}  # the last: fits the arch
    model = parse_model(model_section, base_dir, check_files, pins)
    data = _parse_data(top.section(Spec, "data"), base_dir, check_files, pins)
    loss = _parse_loss(top)
    if series is not None:
        grid = series_grid(series)
    else:
        grid_section = top.section(Spec, "grid")
        grid = Grid(Axis.parse(grid_section.get("x", object), "grid.x"),
                    Axis.parse(grid_section.get("y", object), "grid.y") if grid_section.has("y") else None)
        grid_section.finish()
    if grid.size > MAX_POINTS:
        raise UserError(f"grid: {grid.size:,} points is more than the {MAX_POINTS:,} supported; reduce grid.x/grid.y")
    metrics = _parse_metrics(top.read(Spec, "metrics"))
    hessian_raw = top.get("hessian", dict, None)
    hessian = _parse_hessian(Section(hessian_raw, "hessian"))
    if series is not None and "hessian" in series.metrics and hessian.iterations <= series.top_k:
        raise UserError(f"hessian.iterations: {hessian.iterations} Lanczos steps cannot give series.top_k = "
                        f"{series.top_k} eigenpairs; use at least {2 * series.top_k}")
    directions, notes = _parse_directions(top.section(Spec, "directions"), base_dir, grid,
                                          check_files, pins, hessian)
    if directions.type == "pca" and check_files:
        _check_trajectory_size(directions.trajectory, model.checkpoint, grid)
    if hessian_raw is not None and "hessian" not in metrics and directions.type != "hessian" and series is None:
        raise UserError("hessian: only used with metrics: [..., hessian] or directions.type: hessian; "
                        "add one of them or remove this section")
    # A series' glob left for the pods to expand (files not checked here) has no count yet.
    compute = _parse_compute(top.section(Spec, "compute"), grid, series is None or series.listed)
    plot = _parse_plot(top.section(Spec, "plot"))
    kubernetes = top.read(Spec, "kubernetes")
    top.finish()
    return Spec(name=name, model=model, data=data, loss=loss, directions=directions, grid=grid,
                compute=compute, storage=storage, plot=plot,
                kubernetes=kubernetes, notes=tuple(notes) if series is None else (), metrics=metrics, hessian=hessian,
                python=python, pins=pins, series=series)


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


def _named_metrics() -> list[str]:
    """The registry's choices a spec names by word (the python: ones this process registered left out)."""
    return [c for c in METRIC_CHOICES if not is_python_ref(c)]


def _parse_metrics(raw: list | tuple | str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise UserError(f"metrics: name at least one of {', '.join(_named_metrics())}")
    for i, item in enumerate(items):
        if is_python_ref(item):
            split_ref(item, f"metrics[{i}]")
        elif item not in METRIC_CHOICES:
            raise UserError(f"metrics[{i}]: expected one of {', '.join(_named_metrics())} or "
                            f"python:package.module:function; got {shown(item)}")
    if len(set(items)) != len(items):
        raise UserError(f"metrics: a metric is listed twice: {items}")
    # The registry's order, then the user's metrics in the order given (registered or not yet).
    return tuple(m for m in METRIC_CHOICES if m in items and not is_python_ref(m)) + \
        tuple(m for m in items if is_python_ref(m))


def _parse_hessian(s: Section) -> HessianSpec:
    values = s.read_all(HessianSpec)
    s.finish()
    tolerance = values["tolerance"]
    if not 0 < tolerance < 1:
        raise UserError(f"hessian.tolerance: expected a number between 0 and 1 (relative), got {tolerance}")
    return HessianSpec(**values)


def _parse_loss(top: Section) -> str:
    """A built-in loss, or ``python:package.module:function`` (see landscape_job.losses)."""
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
    requirements = strings("requirements")
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
    subset, subset_seed, options, classes, download = s.read_all(
        DataSpec, ("subset", "subset_seed", "options", "classes", "download")).values()
    s.finish()
    if download and dataset not in DOWNLOADABLE:
        raise UserError(f"data.download: only for {', '.join(DOWNLOADABLE)} (torchvision's downloads), "
                        f"not {shown(dataset)}; remove it")
    if classes is not None and dataset in FIXED_CLASSES:
        raise UserError(f"data.classes: {dataset} has a fixed number of classes; remove it (it is for "
                        "tensors, imagefolder and python: data sets)")
    return DataSpec(dataset=dataset, root=root, splits=tuple(sorted(splits, key=SPLITS.index)),
                    subset=subset, subset_seed=subset_seed, options=options, classes=classes, download=download)


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
    s.finish()

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
                          seed=seed, same_dir=same_dir, orthogonalize=orthogonalize, trajectory=trajectory), notes


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
    return plot


def spec_from_yaml(text: str, source: str) -> Spec:
    """Re-reads a normalised spec stored in a run; its paths are already absolute."""
    return parse_spec(load_yaml(text, source), base_dir=Path("/"))
