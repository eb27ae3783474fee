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
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from landscape_job.errors import UserError
from landscape_job.grid import MAX_POINTS, Axis, Grid
from landscape_job.inputs import check_sha256, check_url, is_archive, is_remote
from landscape_job.pyref import is_ref as is_python_ref
from landscape_job.pyref import split_ref
from landscape_job.schema import Section, type_name

DIRECTION_TYPES = ("random", "interpolate", "plane", "file", "pca", "hessian")
DIR_TYPES = ("weights", "states")
NORMS = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
IGNORES = ("biasbn", "none")
LOSSES = ("cross_entropy", "mse")
PRECISIONS = ("fp32", "tf32", "bf16", "fp64")
DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("train", "test")
#: Items of the top-level ``metrics`` list; loss and accuracy come from one pass, hessian from Lanczos.
METRIC_CHOICES = ("loss", "accuracy", "hessian")
DEFAULT_METRICS = ("loss", "accuracy")
#: Data sets torchvision can download (``data.download: true``), and those whose classes are fixed.
DOWNLOADABLE = ("cifar10", "cifar100", "mnist", "fashion_mnist")
FIXED_CLASSES = ("digits", "synthetic", *DOWNLOADABLE)
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


def _path(section: Section, name: str, base_dir: Path, must_exist: bool, pins: dict[str, str]) -> str:
    value = section.get(name, (str, dict))
    return _resolve_input(value, section.key(name), base_dir, must_exist, pins)


def _resolve_file(value: str, key: str, base_dir: Path, must_exist: bool, folder: bool = False) -> str:
    if value.startswith("file://"):
        value = value[len("file://"):]
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    if must_exist and folder and not (path.is_dir() or (is_archive(str(path)) and path.is_file())):
        raise UserError(f"{key}: folder not found: {path}")
    if must_exist and not folder and not path.is_file():
        raise UserError(f"{key}: file not found: {path}")
    return str(path)


def _resolve_input(value: object, key: str, base_dir: Path, must_exist: bool, pins: dict[str, str],
                   folder: bool = False) -> str:
    """An input: a path, ``file://``, ``s3://`` or ``https://`` URL, or ``{url: ..., sha256: ...}``.

    Remote URLs are kept as given (each stage fetches them into its cache); a pin is
    recorded in ``pins`` under the normalised URL, so ``to_dict`` writes it back.
    """
    sha256 = None
    if isinstance(value, dict):
        section = Section(value, key)
        url = section.get("url", str)
        if isinstance(value.get("sha256"), (int, float)) and not isinstance(value.get("sha256"), bool):
            raise UserError(f"{key}.sha256: YAML read the hash as a number; put it in quotes")
        raw_pin = section.get("sha256", str, None)
        section.finish()
        sha256 = None if raw_pin is None else check_sha256(raw_pin, f"{key}.sha256")
    elif isinstance(value, str):
        url = value
    else:
        raise UserError(f"{key}: expected a path, a URL or {{url: ..., sha256: ...}}, got {type_name(value)}")
    if "://" in url and not url.startswith("file://"):
        if not is_remote(url):
            raise UserError(f"{key}: expected a path, file://, s3:// or https:// URL; got {url!r}")
        check_url(url, key, sha256)
        resolved = url
    else:
        resolved = _resolve_file(url, key, base_dir, must_exist, folder)
    if sha256 is not None:
        pins[resolved] = sha256
    return resolved


def _input_out(url: str | None, pins: Mapping[str, str]) -> Any:
    """An input as ``to_dict`` writes it: the URL, or the mapping form when it is pinned."""
    return {"url": url, "sha256": pins[url]} if url is not None and url in pins else url


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    checkpoint: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    root: str | None = None
    splits: tuple[str, ...] = SPLITS
    subset: int | None = None
    subset_seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    #: Classes of a ``tensors`` or ``python:`` data set; None: the largest label + 1.
    classes: int | None = None
    #: Let torchvision download a missing built-in data set (clusters with internet only).
    download: bool = False


@dataclass(frozen=True)
class DirectionsSpec:
    type: str = "random"
    targets: tuple[str, ...] = ()
    file: str | None = None
    dir_type: str = "weights"
    norm: str = "filter"
    ignore: str = "biasbn"
    seed: int = 0
    same_dir: bool = False
    orthogonalize: bool = False
    #: type pca: the training trajectory's checkpoints, in order (globs expanded when checked).
    trajectory: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComputeSpec:
    shards: int = 1
    precision: str = "fp32"
    batch_size: int = 1024
    device: str = "auto"
    checkpoint_every: int = 64
    checkpoint_seconds: float = 60.0
    #: "auto" or K: grid points evaluated together in one vmapped forward pass.
    points_per_forward: int | str = "auto"
    #: "auto", True or False: keep the data on the device, or stream it from pinned host memory.
    data_on_device: str | bool = "auto"
    #: "auto", True or False: NHWC memory layout for image models.
    channels_last: str | bool = "auto"
    #: torch.compile the forward pass (compile time is reported apart from the per-point time).
    compile: bool = False


#: ``compute`` keys that change how fast the numbers come, not the numbers beyond float
#: rounding (summation order inside kernels): they are left out of the spec hash, so a
#: run resumed or re-sharded with other settings still merges. ``precision`` changes the
#: numbers and stays in.
SPEED_KEYS = ("points_per_forward", "data_on_device", "channels_last", "compile")


@dataclass(frozen=True)
class PlotSpec:
    vmin: float | None = None
    vmax: float | None = None
    vlevel: float | None = None
    log: bool = False


@dataclass(frozen=True)
class HessianSpec:
    """How the Hessian of the mean loss is probed (``metrics: [.., hessian]``, ``directions.type: hessian``).

    ``ignore: biasbn`` (the default, as in the paper's code) takes the Hessian over the
    tensors of dim > 1 only. ``tolerance`` bounds each extreme eigenvalue's error relative
    to the largest |eigenvalue| (a Lanczos residual bound); ``iterations`` caps the
    Hessian-vector products per point. ``subset`` (None: the loss's samples, i.e.
    ``data.subset``) trades accuracy for time: every product is a double-backward pass.
    """

    split: str = "train"
    subset: int | None = None
    subset_seed: int = 0
    iterations: int = 100
    tolerance: float = 1e-3
    ignore: str = "biasbn"
    trace_samples: int = 20
    seed: int = 0
    batch_size: int | None = None


@dataclass(frozen=True)
class PythonSpec:
    """Where the user's ``python:`` code comes from: folders (mounted volumes) and pip requirements."""

    path: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    name: str
    model: ModelSpec
    data: DataSpec
    loss: str
    directions: DirectionsSpec
    grid: Grid
    compute: ComputeSpec
    storage: str
    plot: PlotSpec
    #: Options of the storage backend (S3 endpoint, region, addressing style, checksums).
    storage_options: dict[str, Any] = field(default_factory=dict)
    #: The cluster settings; parsed by the launcher, which alone renders Kubernetes objects.
    kubernetes: dict[str, Any] = field(default_factory=dict)
    #: Why each direction default was chosen; shown by ``launcher validate``.
    notes: tuple[str, ...] = ()
    #: What each grid point computes: loss, accuracy (one forward pass), hessian (Lanczos).
    metrics: tuple[str, ...] = DEFAULT_METRICS
    hessian: HessianSpec = HessianSpec()
    #: The user's code for ``python:`` models, data sets and losses.
    python: PythonSpec = field(default_factory=PythonSpec)
    #: sha256 pins of inputs, by normalised URL (``{url: ..., sha256: ...}`` in the spec).
    pins: dict[str, str] = field(default_factory=dict)

    @property
    def uses_hessian(self) -> bool:
        return "hessian" in self.metrics or self.directions.type == "hessian"

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec: every default filled in, paths absolute, re-parseable."""
        grid = {"x": str(self.grid.x)}
        if self.grid.y is not None:
            grid["y"] = str(self.grid.y)
        data = asdict(self.data)
        data["splits"] = list(self.data.splits)
        data["root"] = _input_out(self.data.root, self.pins)
        # Keys added after the first release are written only when set, so the spec
        # (and its hash) of an existing run stays exactly what it was.
        for key, default in (("classes", None), ("download", False)):
            if data[key] == default:
                del data[key]
        directions = asdict(self.directions)
        directions["targets"] = [_input_out(t, self.pins) for t in self.directions.targets]
        directions["trajectory"] = [_input_out(t, self.pins) for t in self.directions.trajectory]
        if not directions["trajectory"]:
            del directions["trajectory"]  # written only for pca, so older specs keep their hash
        directions["file"] = _input_out(self.directions.file, self.pins)
        model = asdict(self.model)
        model["checkpoint"] = _input_out(self.model.checkpoint, self.pins)
        python = {k: list(v) for k, v in asdict(self.python).items() if v}
        if self.directions.type == "file":
            # A direction file is used as written: these keys are refused for it on re-reading.
            for key in ("dir_type", "norm", "ignore"):
                directions.pop(key)
        return {
            "name": self.name,
            "model": model,
            "data": data,
            "loss": self.loss,
            "directions": directions,
            "grid": grid,
            "compute": asdict(self.compute),
            "storage": {"url": self.storage, **self.storage_options} if self.storage_options else self.storage,
            "plot": asdict(self.plot),
            "metrics": list(self.metrics),
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
        if tuple(content["metrics"]) == DEFAULT_METRICS:
            del content["metrics"]  # so the hash of every spec from before metrics existed is unchanged
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
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read spec file: {err}") from None
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
                        f"with a letter or digit (it names Kubernetes objects); got {name!r}")
    pins: dict[str, str] = {}
    python = _parse_python(Section(top.get("python", dict, {}), "python"), base_dir, check_files)
    model = _parse_model(Section(top.get("model", dict), "model"), base_dir, check_files, pins)
    data = _parse_data(Section(top.get("data", dict), "data"), base_dir, check_files, pins)
    loss = _parse_loss(top)
    grid_section = Section(top.get("grid", dict), "grid")
    grid = Grid(Axis.parse(grid_section.get("x", object), "grid.x"),
                Axis.parse(grid_section.get("y", object), "grid.y") if grid_section.has("y") else None)
    grid_section.finish()
    if grid.size > MAX_POINTS:
        raise UserError(f"grid: {grid.size:,} points is more than the {MAX_POINTS:,} supported; reduce grid.x/grid.y")
    metrics = _parse_metrics(top.get("metrics", (list, str), list(DEFAULT_METRICS)))
    hessian_raw = top.get("hessian", dict, None)
    hessian = _parse_hessian(Section(hessian_raw, "hessian"))
    directions, notes = _parse_directions(Section(top.get("directions", dict, {}), "directions"), base_dir, grid,
                                          check_files, pins, hessian)
    if directions.type == "pca" and check_files:
        _check_trajectory_size(directions.trajectory, model.checkpoint, grid)
    if hessian_raw is not None and "hessian" not in metrics and directions.type != "hessian":
        raise UserError("hessian: only used with metrics: [..., hessian] or directions.type: hessian; "
                        "add one of them or remove this section")
    compute = _parse_compute(Section(top.get("compute", dict, {}), "compute"), grid)
    storage, storage_options = _parse_storage(top, base_dir, storage_override)
    plot = _parse_plot(Section(top.get("plot", dict, {}), "plot"))
    kubernetes = top.get("kubernetes", dict, {})
    top.finish()
    return Spec(name=name, model=model, data=data, loss=loss, directions=directions, grid=grid,
                compute=compute, storage=storage, plot=plot, storage_options=storage_options,
                kubernetes=kubernetes, notes=tuple(notes), metrics=metrics, hessian=hessian,
                python=python, pins=pins)


def _parse_metrics(raw: list | str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise UserError(f"metrics: name at least one of {', '.join(METRIC_CHOICES)}")
    for i, item in enumerate(items):
        if item not in METRIC_CHOICES:
            raise UserError(f"metrics[{i}]: expected one of {', '.join(METRIC_CHOICES)}; got {item!r}")
    if len(set(items)) != len(items):
        raise UserError(f"metrics: a metric is listed twice: {items}")
    return tuple(m for m in METRIC_CHOICES if m in items)


def _parse_hessian(s: Section) -> HessianSpec:
    split = s.choice("split", SPLITS, "train")
    subset = s.integer("subset", None, minimum=1)
    subset_seed = s.integer("subset_seed", 0)
    iterations = s.integer("iterations", 100, minimum=2)
    tolerance = s.get("tolerance", float, 1e-3)
    if not 0 < tolerance < 1:
        raise UserError(f"hessian.tolerance: expected a number between 0 and 1 (relative), got {tolerance}")
    ignore = s.choice("ignore", IGNORES, "biasbn")
    trace_samples = s.integer("trace_samples", 20, minimum=0)
    seed = s.integer("seed", 0)
    batch_size = s.integer("batch_size", None, minimum=1)
    s.finish()
    return HessianSpec(split=split, subset=subset, subset_seed=subset_seed, iterations=iterations,
                       tolerance=tolerance, ignore=ignore, trace_samples=trace_samples, seed=seed,
                       batch_size=batch_size)


def _parse_loss(top: Section) -> str:
    """A built-in loss, or ``python:package.module:function`` (see landscape_job.losses)."""
    loss = top.get("loss", str, "cross_entropy")
    if is_python_ref(loss):
        split_ref(loss, "loss")
        return loss
    if loss not in LOSSES:
        raise UserError(f"loss: expected one of {', '.join(LOSSES)}; got {loss!r} (or python:package.module:function)")
    return loss


def _parse_python(s: Section, base_dir: Path, check_files: bool) -> PythonSpec:
    """Folders are resolved like every path; requirements are pip requirement strings."""
    def strings(name: str) -> list[str]:
        raw = s.get(name, (list, str), [])
        items = [raw] if isinstance(raw, str) else list(raw)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise UserError(f"python.{name}[{i}]: expected a non-empty string, got {type_name(item)}")
        return items

    paths = []
    for i, item in enumerate(strings("path")):
        folder = Path(item[len("file://"):] if item.startswith("file://") else item).expanduser()
        folder = folder if folder.is_absolute() else (base_dir / folder).resolve()
        if check_files and not folder.is_dir():
            raise UserError(f"python.path[{i}]: folder not found: {folder}")
        paths.append(str(folder))
    requirements = strings("requirements")
    s.finish()
    return PythonSpec(path=tuple(paths), requirements=tuple(requirements))


def _parse_model(s: Section, base_dir: Path, check_files: bool, pins: dict[str, str]) -> ModelSpec:
    arch = s.get("arch", str)
    checkpoint = _path(s, "checkpoint", base_dir, check_files, pins)
    kwargs = s.get("kwargs", dict, {})
    s.finish()
    return ModelSpec(arch=arch, checkpoint=checkpoint, kwargs=kwargs)


def _parse_data(s: Section, base_dir: Path, check_files: bool, pins: dict[str, str]) -> DataSpec:
    dataset = s.get("dataset", str)
    if is_python_ref(dataset):
        split_ref(dataset, "data.dataset")
    root = s.get("root", (str, dict), None)
    if root is not None:
        root = _resolve_input(root, "data.root", base_dir, check_files, pins, folder=True)
    splits_raw = s.get("splits", (list, str), list(SPLITS))
    splits = (splits_raw,) if isinstance(splits_raw, str) else tuple(splits_raw)
    if not splits:
        raise UserError("data.splits: name at least one of train, test")
    for split in splits:
        if split not in SPLITS:
            raise UserError(f"data.splits: expected train and/or test, got {split!r}")
    if len(set(splits)) != len(splits):
        raise UserError(f"data.splits: a split is listed twice: {list(splits)}")
    subset = s.integer("subset", None, minimum=1)
    subset_seed = s.integer("subset_seed", 0)
    options = s.get("options", dict, {})
    classes = s.integer("classes", None, minimum=2)
    download = s.get("download", bool, False)
    s.finish()
    if download and dataset not in DOWNLOADABLE:
        raise UserError(f"data.download: only for {', '.join(DOWNLOADABLE)} (torchvision's downloads), "
                        f"not {dataset!r}; remove it")
    if classes is not None and dataset in FIXED_CLASSES:
        raise UserError(f"data.classes: {dataset} has a fixed number of classes; remove it (it is for "
                        "tensors, imagefolder and python: data sets)")
    return DataSpec(dataset=dataset, root=root, splits=tuple(sorted(splits, key=SPLITS.index)),
                    subset=subset, subset_seed=subset_seed, options=options, classes=classes, download=download)


def _parse_directions(s: Section, base_dir: Path, grid: Grid, check_files: bool,
                      pins: dict[str, str], hessian: HessianSpec = HessianSpec()) -> tuple[DirectionsSpec, list[str]]:
    kind = s.choice("type", DIRECTION_TYPES, "random")
    notes: list[str] = []
    targets_raw = s.get("targets", (list, str, dict), [])
    targets_list = [targets_raw] if isinstance(targets_raw, (str, dict)) else list(targets_raw)
    for i, target in enumerate(targets_list):
        if not isinstance(target, (str, dict)):
            raise UserError(f"directions.targets[{i}]: expected a checkpoint path, got {type_name(target)}")
    targets = tuple(_resolve_input(t, f"directions.targets[{i}]", base_dir, check_files, pins)
                    for i, t in enumerate(targets_list))
    expected_targets = {"random": 0, "interpolate": 1, "plane": 2, "file": 0, "pca": 0, "hessian": 0}[kind]
    if len(targets) != expected_targets:
        what = {0: "no targets", 1: "one target checkpoint (x = target - model.checkpoint)",
                2: "two target checkpoints (x = t1 - model.checkpoint, y = t2 - model.checkpoint)"}
        raise UserError(f"directions.targets: type {kind} takes {what[expected_targets]}, got {len(targets)}")
    file = _path(s, "file", base_dir, check_files, pins) if kind == "file" else s.get("file", (str, dict), None)
    if kind != "file" and file is not None:
        raise UserError(f"directions.file: only used with type: file (type is {kind})")

    trajectory = _parse_trajectory(s, kind, base_dir, check_files, pins)

    from_checkpoints = kind in ("interpolate", "plane")
    default_dir_type = "states" if from_checkpoints else "weights"
    default_norm = "none" if from_checkpoints or kind == "pca" else "filter"
    default_ignore = "none" if from_checkpoints else "biasbn"
    dir_type = s.choice("dir_type", DIR_TYPES, None)
    norm = s.choice("norm", NORMS, None)
    ignore = s.choice("ignore", IGNORES, None)
    why = ("the difference of trained models, BN statistics included, unnormalised" if from_checkpoints
           else "principal directions of the trajectory's parameters, unnormalised" if kind == "pca"
           else "filter-normalised random directions of Li et al.")
    if kind == "file":
        for key, value in (("dir_type", dir_type), ("norm", norm), ("ignore", ignore)):
            if value is not None:
                raise UserError(f"directions.{key}: a direction file is used as written; remove this key")
        dir_type, norm, ignore = "weights", "none", "none"
        notes.append("directions read from the file as written; weights vs states follows the file's tensor count")
    elif kind == "hessian":
        # Unit eigenvectors over parameters, used as computed; the normalised spec
        # states these forced values, so they are accepted when they match.
        for key, value, forced, why_forced in (
                ("dir_type", dir_type, "weights", "the Hessian is over the parameters"),
                ("norm", norm, "none", "eigenvectors are used as computed (unit norm)"),
                ("ignore", ignore, hessian.ignore, "set hessian.ignore instead")):
            if value is not None and value != forced:
                raise UserError(f"directions.{key}: type hessian takes {key} {forced} ({why_forced}); "
                                f"got {value!r}")
        dir_type, norm, ignore = "weights", "none", hessian.ignore
        notes.append("directions: the top eigenvector(s) of the Hessian at model.checkpoint (see hessian.*), "
                     "unit norm")
    else:
        for key, value, default in (("dir_type", dir_type, default_dir_type), ("norm", norm, default_norm),
                                    ("ignore", ignore, default_ignore)):
            if value is None:
                notes.append(f"directions.{key}: {default} (default for type {kind}: {why})")
        dir_type = dir_type or default_dir_type
        norm = norm or default_norm
        ignore = ignore or default_ignore

    seed = s.integer("seed", 0)
    same_dir = s.get("same_dir", bool, False)
    orthogonalize = s.get("orthogonalize", bool, False)
    s.finish()

    if kind == "interpolate" and grid.y is not None:
        raise UserError("grid.y: an interpolation between two checkpoints is 1-D; remove grid.y, "
                        "or use directions.type: plane with two targets")
    if kind == "plane" and grid.y is None:
        raise UserError("grid.y: a plane through three checkpoints is 2-D; add grid.y (e.g. \"-0.5:1.5:41\")")
    if same_dir and (kind != "random" or grid.y is None):
        raise UserError("directions.same_dir: only for 2-D random directions (y = x)")
    if orthogonalize and grid.y is None:
        raise UserError("directions.orthogonalize: needs a second direction; add grid.y")
    if orthogonalize and kind == "hessian":
        raise UserError("directions.orthogonalize: Hessian eigenvectors are orthogonal already; remove this key")
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


def natural_key(path: str) -> list[object]:
    """Sort key that orders digit runs by value, so epoch_2 comes before epoch_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _parse_trajectory(s: Section, kind: str, base_dir: Path, check_files: bool,
                      pins: dict[str, str]) -> tuple[str, ...]:
    """``directions.trajectory``: checkpoint paths, URLs and/or local globs, in training order.

    A glob is expanded (in natural order) when files are checked, so the stored spec
    names the very files the directions came from; unchecked (a cluster's paths) it is
    kept as an absolute pattern and expanded by the pod that parses it.
    """
    raw = s.get("trajectory", (list, str), [])
    entries = [raw] if isinstance(raw, str) else list(raw)
    if kind != "pca":
        if entries:
            raise UserError(f"directions.trajectory: only used with type: pca (type is {kind})")
        return ()
    if not entries:
        raise UserError("directions.trajectory: type pca needs the training trajectory's checkpoints, "
                        "a list of paths or a glob such as \"checkpoints/epoch_*.pt\"")
    paths: list[str] = []
    for i, entry in enumerate(entries):
        key = f"directions.trajectory[{i}]" if isinstance(raw, list) else "directions.trajectory"
        if isinstance(entry, dict) or (isinstance(entry, str) and "://" in entry and not entry.startswith("file://")):
            paths.append(_resolve_input(entry, key, base_dir, check_files, pins))  # a URL: never a glob
            continue
        if not isinstance(entry, str):
            raise UserError(f"{key}: expected a checkpoint path, URL or glob, got {type_name(entry)}")
        if not glob.has_magic(entry):
            paths.append(_resolve_file(entry, key, base_dir, check_files))
            continue
        pattern = _resolve_file(entry, key, base_dir, must_exist=False)
        if not check_files:
            paths.append(pattern)
            continue
        matches = sorted((m for m in glob.glob(pattern) if Path(m).is_file()), key=natural_key)
        if not matches:
            raise UserError(f"{key}: no checkpoint file matches {pattern}")
        paths.extend(matches)
    return tuple(paths)


def _parse_compute(s: Section, grid: Grid) -> ComputeSpec:
    shards = s.integer("shards", 1, minimum=1)
    if shards > grid.size:
        raise UserError(f"compute.shards: {shards} shards for a grid of {grid.size} points; "
                        f"use at most {grid.size} (one point a shard)")
    precision = s.choice("precision", PRECISIONS, "fp32")
    batch_size = s.integer("batch_size", 1024, minimum=1)
    device = s.choice("device", DEVICES, "auto")
    every = s.integer("checkpoint_every", 64, minimum=1)
    seconds = s.get("checkpoint_seconds", float, 60.0)
    if seconds <= 0:
        raise UserError(f"compute.checkpoint_seconds: must be positive, got {seconds}")
    points = _auto_or_positive_int(s, "points_per_forward")
    on_device = _auto_or_bool(s, "data_on_device")
    channels_last = _auto_or_bool(s, "channels_last")
    compile_ = s.get("compile", bool, False)
    s.finish()
    return ComputeSpec(shards=shards, precision=precision, batch_size=batch_size, device=device,
                       checkpoint_every=every, checkpoint_seconds=seconds, points_per_forward=points,
                       data_on_device=on_device, channels_last=channels_last, compile=compile_)


def _auto_or_positive_int(s: Section, name: str) -> int | str:
    s.seen.add(name)
    value = "auto" if s.raw.get(name) is None else s.raw[name]
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise UserError(f"{s.key(name)}: expected auto or a positive integer, got {type_name(value)} {value!r}")


def _auto_or_bool(s: Section, name: str) -> str | bool:
    s.seen.add(name)
    value = "auto" if s.raw.get(name) is None else s.raw[name]
    if value == "auto" or isinstance(value, bool):
        return value
    raise UserError(f"{s.key(name)}: expected auto, true or false, got {type_name(value)} {value!r}")


#: Keys of the mapping form of ``storage``, besides ``url``; the S3 backend reads them.
STORAGE_OPTIONS = ("endpoint_url", "region", "addressing_style", "request_checksum")


def check_storage_options(url: str, options: Mapping[str, Any] | None) -> dict[str, str]:
    """The options that are set, checked: a typo is a user error, not a silent default."""
    chosen = {k: str(v) for k, v in (options or {}).items() if v not in (None, "")}
    for key in chosen:
        if key not in STORAGE_OPTIONS:
            raise UserError(f"storage.{key}: unknown S3 option for {url}; "
                            f"expected one of {', '.join(STORAGE_OPTIONS)}")
    endpoint = chosen.get("endpoint_url")
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise UserError(f"storage.endpoint_url: expected http(s)://host[:port], got {endpoint!r}")
    if chosen.get("addressing_style", "auto") not in ("auto", "path", "virtual"):
        raise UserError(f"storage.addressing_style: expected one of auto, path, virtual; "
                        f"got {chosen['addressing_style']!r}")
    if chosen.get("request_checksum", "when_supported") not in ("when_supported", "when_required"):
        raise UserError(f"storage.request_checksum: expected when_supported or when_required; "
                        f"got {chosen['request_checksum']!r}")
    return chosen


def _parse_storage(top: Section, base_dir: Path, override: str | None) -> tuple[str, dict[str, Any]]:
    """``storage`` is a URL, or a mapping with ``url`` and the S3 options; credentials never go here."""
    raw = top.get("storage", (str, dict), None)
    options: dict[str, Any] = {}
    if isinstance(raw, dict):
        section = Section(raw, "storage")
        url = section.get("url", str)
        for key in STORAGE_OPTIONS:
            value = section.get(key, str, None)
            if value is not None:
                options[key] = value
        for key in section.raw:
            if any(word in key.lower() for word in ("secret", "access_key", "password", "token")):
                raise UserError(f"storage.{key}: credentials never go in the spec; set AWS_ACCESS_KEY_ID/"
                                f"AWS_SECRET_ACCESS_KEY in the environment or name a Kubernetes Secret")
        section.finish()
        options = check_storage_options(url, options)
    else:
        url = raw
    value = override if override is not None else url
    if value is None:
        return "file://" + str(Path.cwd() / "runs"), options
    if value.startswith("s3://"):
        if len(value) <= len("s3://") or value[len("s3://"):].startswith("/"):
            raise UserError(f"storage: expected s3://bucket/prefix, got {value!r}")
        return value.rstrip("/"), options
    if "://" in value and not value.startswith("file://"):
        raise UserError(f"storage: expected a folder, file:///path or s3://bucket/prefix; got {value!r}")
    if options:
        raise UserError(f"storage.{next(iter(options))}: only for s3:// storage")
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() if override is not None else base_dir) / path
    return "file://" + str(path.resolve()), options


def _parse_plot(s: Section) -> PlotSpec:
    vmin = s.get("vmin", float, None)
    vmax = s.get("vmax", float, None)
    vlevel = s.get("vlevel", float, None)
    log = s.get("log", bool, False)
    s.finish()
    if vmin is not None and vmax is not None and vmin >= vmax:
        raise UserError(f"plot.vmin: must be below plot.vmax ({vmin} >= {vmax})")
    if vlevel is not None and vlevel <= 0:
        raise UserError(f"plot.vlevel: must be positive, got {vlevel}")
    return PlotSpec(vmin=vmin, vmax=vmax, vlevel=vlevel, log=log)


def spec_from_yaml(text: str, source: str) -> Spec:
    """Re-reads a normalised spec stored in a run; its paths are already absolute."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{source}: not valid YAML: {err}") from None
    return parse_spec(raw, base_dir=Path("/"))


def describe_work(spec: Spec, data_sizes: Mapping[str, int] | None = None) -> list[str]:
    """The work a spec implies, in the lines ``launcher validate`` prints."""
    grid, shards = spec.grid, spec.compute.shards
    per_shard = -(-grid.size // shards)
    dims = f"{grid.nx}" if grid.ndim == 1 else f"{grid.nx} x {grid.ny}"
    lines = [
        f"grid: {dims} = {grid.size} points ({grid.ndim}-D)",
        f"shards: {shards} ({per_shard} points per shard at most)",
        f"passes over the data: {grid.size} per split, splits: {', '.join(spec.data.splits)}",
    ]
    if data_sizes:
        samples = sum(data_sizes.values())
        lines.append(f"forward samples: {grid.size} x {samples:,} = {grid.size * samples:,}")
    if spec.uses_hessian:
        h = spec.hessian
        where = f"{grid.size} points and the centre" if "hessian" in spec.metrics else "the centre only"
        lines.append(f"hessian: up to {h.iterations} Hessian-vector products (each about 3 passes over "
                     f"the {h.split} split{f', {h.subset} samples' if h.subset else ''}) at {where}")
    return lines
