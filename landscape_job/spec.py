"""The surface spec: the one input of a run, parsed strictly into typed dataclasses.

Every mistake is reported as one ``UserError`` naming the key path
(``grid.y: expected "min:max:num", got "1:2"``), before anything is written. Relative
paths are resolved against the spec file's folder, so a spec means the same thing
whatever the current directory; the normalised spec (``Spec.to_dict``) holds absolute
paths and all defaults filled in, and is what a run stores as ``spec.yaml``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from landscape_job.errors import UserError
from landscape_job.grid import MAX_POINTS, Axis, Grid

DIRECTION_TYPES = ("random", "interpolate", "plane", "file")
DIR_TYPES = ("weights", "states")
NORMS = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
IGNORES = ("biasbn", "none")
LOSSES = ("cross_entropy", "mse")
PRECISIONS = ("fp32", "tf32", "bf16", "fp64")
DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("train", "test")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_REQUIRED = object()


_KIND_NAMES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null",
               object: "a string"}


def _type_name(value: object) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


class _Section:
    """A mapping in the spec being read: hands out typed values and rejects unknown keys."""

    def __init__(self, raw: object, path: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping, got {_type_name(raw)}")
        self.raw: dict[str, Any] = raw
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.seen.add(name)
        value = self.raw.get(name)
        if value is None:
            if default is _REQUIRED:
                raise UserError(f"{self.key(name)}: required key is missing")
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # YAML's 1 is an int; accept it where a float is asked for, but never a bool.
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise UserError(f"{self.key(name)}: expected {_KIND_NAMES[kinds[0]]}, got a boolean")
        if not isinstance(value, kinds):
            raise UserError(f"{self.key(name)}: expected {_KIND_NAMES[kinds[0]]}, got {_type_name(value)} {value!r}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> Any:
        value = self.get(name, str, default)
        if value is not None and value not in choices:
            raise UserError(f"{self.key(name)}: expected one of {', '.join(choices)}; got {value!r}")
        return value

    def integer(self, name: str, default: Any = _REQUIRED, minimum: int | None = None) -> Any:
        value = self.get(name, int, default)
        if value is not None and minimum is not None and value < minimum:
            raise UserError(f"{self.key(name)}: must be at least {minimum}, got {value}")
        return value

    def finish(self) -> None:
        unknown = [k for k in self.raw if k not in self.seen]
        if unknown:
            name = unknown[0]
            hint = difflib.get_close_matches(str(name), sorted(self.seen), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f"; expected one of {', '.join(sorted(self.seen))}"
            raise UserError(f"{self.key(str(name))}: unknown key{suggestion}")


def _path(section: _Section, name: str, base_dir: Path, must_exist: bool) -> str:
    value = section.get(name, str)
    return _resolve_file(value, section.key(name), base_dir, must_exist)


def _resolve_file(value: str, key: str, base_dir: Path, must_exist: bool) -> str:
    if value.startswith("file://"):
        value = value[len("file://"):]
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    if must_exist and not path.is_file():
        raise UserError(f"{key}: file not found: {path}")
    return str(path)


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

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec: every default filled in, paths absolute, re-parseable."""
        grid = {"x": str(self.grid.x)}
        if self.grid.y is not None:
            grid["y"] = str(self.grid.y)
        data = asdict(self.data)
        data["splits"] = list(self.data.splits)
        directions = asdict(self.directions)
        directions["targets"] = list(self.directions.targets)
        return {
            "name": self.name,
            "model": asdict(self.model),
            "data": data,
            "loss": self.loss,
            "directions": directions,
            "grid": grid,
            "compute": asdict(self.compute),
            "storage": {"url": self.storage, **self.storage_options} if self.storage_options else self.storage,
            "plot": asdict(self.plot),
            **({"kubernetes": self.kubernetes} if self.kubernetes else {}),
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
    top = _Section(raw, "")
    name = top.get("name", str, default_name)
    if not _NAME_RE.match(name):
        raise UserError(f"name: expected 1-40 lowercase letters, digits or '-', starting and ending "
                        f"with a letter or digit (it names Kubernetes objects); got {name!r}")
    model = _parse_model(_Section(top.get("model", dict), "model"), base_dir, check_files)
    data = _parse_data(_Section(top.get("data", dict), "data"), base_dir, check_files)
    loss = top.choice("loss", LOSSES, "cross_entropy")
    grid_section = _Section(top.get("grid", dict), "grid")
    grid = Grid(Axis.parse(grid_section.get("x", object), "grid.x"),
                Axis.parse(grid_section.get("y", object), "grid.y") if grid_section.has("y") else None)
    grid_section.finish()
    if grid.size > MAX_POINTS:
        raise UserError(f"grid: {grid.size:,} points is more than the {MAX_POINTS:,} supported; reduce grid.x/grid.y")
    directions, notes = _parse_directions(_Section(top.get("directions", dict, {}), "directions"), base_dir, grid,
                                          check_files)
    compute = _parse_compute(_Section(top.get("compute", dict, {}), "compute"), grid)
    storage, storage_options = _parse_storage(top, base_dir, storage_override)
    plot = _parse_plot(_Section(top.get("plot", dict, {}), "plot"))
    kubernetes = top.get("kubernetes", dict, {})
    top.finish()
    return Spec(name=name, model=model, data=data, loss=loss, directions=directions, grid=grid,
                compute=compute, storage=storage, plot=plot, storage_options=storage_options,
                kubernetes=kubernetes, notes=tuple(notes))


def _parse_model(s: _Section, base_dir: Path, check_files: bool) -> ModelSpec:
    arch = s.get("arch", str)
    checkpoint = _path(s, "checkpoint", base_dir, check_files)
    kwargs = s.get("kwargs", dict, {})
    s.finish()
    return ModelSpec(arch=arch, checkpoint=checkpoint, kwargs=kwargs)


def _parse_data(s: _Section, base_dir: Path, check_files: bool) -> DataSpec:
    dataset = s.get("dataset", str)
    root = s.get("root", str, None)
    if root is not None:
        root_path = Path(root).expanduser()
        root = str(root_path if root_path.is_absolute() else (base_dir / root_path).resolve())
        if check_files and not Path(root).is_dir():
            raise UserError(f"data.root: folder not found: {root}")
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
    s.finish()
    return DataSpec(dataset=dataset, root=root, splits=tuple(sorted(splits, key=SPLITS.index)),
                    subset=subset, subset_seed=subset_seed, options=options)


def _parse_directions(s: _Section, base_dir: Path, grid: Grid, check_files: bool) -> tuple[DirectionsSpec, list[str]]:
    kind = s.choice("type", DIRECTION_TYPES, "random")
    notes: list[str] = []
    targets_raw = s.get("targets", (list, str), [])
    targets_list = [targets_raw] if isinstance(targets_raw, str) else list(targets_raw)
    for i, target in enumerate(targets_list):
        if not isinstance(target, str):
            raise UserError(f"directions.targets[{i}]: expected a checkpoint path, got {_type_name(target)}")
    targets = tuple(_resolve_file(t, f"directions.targets[{i}]", base_dir, check_files)
                    for i, t in enumerate(targets_list))
    expected_targets = {"random": 0, "interpolate": 1, "plane": 2, "file": 0}[kind]
    if len(targets) != expected_targets:
        what = {0: "no targets", 1: "one target checkpoint (x = target - model.checkpoint)",
                2: "two target checkpoints (x = t1 - model.checkpoint, y = t2 - model.checkpoint)"}
        raise UserError(f"directions.targets: type {kind} takes {what[expected_targets]}, got {len(targets)}")
    file = _path(s, "file", base_dir, check_files) if kind == "file" else s.get("file", str, None)
    if kind != "file" and file is not None:
        raise UserError(f"directions.file: only used with type: file (type is {kind})")

    from_checkpoints = kind in ("interpolate", "plane")
    default_dir_type = "states" if from_checkpoints else "weights"
    default_norm = "none" if from_checkpoints else "filter"
    default_ignore = "none" if from_checkpoints else "biasbn"
    dir_type = s.choice("dir_type", DIR_TYPES, None)
    norm = s.choice("norm", NORMS, None)
    ignore = s.choice("ignore", IGNORES, None)
    why = ("the difference of trained models, BN statistics included, unnormalised"
           if from_checkpoints else "filter-normalised random directions of Li et al.")
    if kind == "file":
        for key, value in (("dir_type", dir_type), ("norm", norm), ("ignore", ignore)):
            if value is not None:
                raise UserError(f"directions.{key}: a direction file is used as written; remove this key")
        dir_type, norm, ignore = "weights", "none", "none"
        notes.append("directions read from the file as written; weights vs states follows the file's tensor count")
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
    if orthogonalize and same_dir:
        raise UserError("directions.orthogonalize: cannot orthogonalize y against x when same_dir is true")
    return DirectionsSpec(type=kind, targets=targets, file=file, dir_type=dir_type, norm=norm, ignore=ignore,
                          seed=seed, same_dir=same_dir, orthogonalize=orthogonalize), notes


def _parse_compute(s: _Section, grid: Grid) -> ComputeSpec:
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


def _auto_or_positive_int(s: _Section, name: str) -> int | str:
    s.seen.add(name)
    value = "auto" if s.raw.get(name) is None else s.raw[name]
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise UserError(f"{s.key(name)}: expected auto or a positive integer, got {_type_name(value)} {value!r}")


def _auto_or_bool(s: _Section, name: str) -> str | bool:
    s.seen.add(name)
    value = "auto" if s.raw.get(name) is None else s.raw[name]
    if value == "auto" or isinstance(value, bool):
        return value
    raise UserError(f"{s.key(name)}: expected auto, true or false, got {_type_name(value)} {value!r}")


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


def _parse_storage(top: _Section, base_dir: Path, override: str | None) -> tuple[str, dict[str, Any]]:
    """``storage`` is a URL, or a mapping with ``url`` and the S3 options; credentials never go here."""
    raw = top.get("storage", (str, dict), None)
    options: dict[str, Any] = {}
    if isinstance(raw, dict):
        section = _Section(raw, "storage")
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


def _parse_plot(s: _Section) -> PlotSpec:
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
    return lines
