"""The surface spec: the one input of a run, parsed strictly into typed dataclasses.

Every mistake is reported as one ``UserError`` naming the key path
(``grid.y: expected "min:max:num", got "1:2"``), before anything is written. Relative
paths are resolved against the spec file's folder, so a spec means the same thing
whatever the current directory; the normalised spec (``Spec.to_dict``) holds absolute
paths and all defaults filled in, and is what a run stores as ``spec.yaml``.

Inputs (checkpoints, direction files, data roots) may also be ``s3://`` or pinned
``https://`` URLs, or ``{url: ..., sha256: ...}``: the spec keeps them as given and each
stage fetches them (``landscape_job.inputs.fetch``). Keys added later (``data.classes``,
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
from dataclasses import asdict, dataclass, field
from typing import Any

from landscape_job.base.schema import default_of, key, one_or_list
from landscape_job.base.pyref import REQUIREMENT_PATTERN
from landscape_job.spec.direction_types import DIRECTION_TYPES
from landscape_job.spec.grid import AXIS_PATTERN, Grid
from landscape_job.spec.inputs import INPUT_SCHEMA, input_out
from landscape_job.spec.metrics import METRIC_CHOICES, SPLITS  # the registry's: loss, accuracy, hessian, ...
from landscape_job.spec.metrics import LANGUAGE_METRICS  # perplexity, token_accuracy: registered for a token task
from landscape_job.spec.model import ModelSpec, model_out
from landscape_job.spec.outputs import EXPORT_FORMATS, FIGURE_FORMATS
from landscape_job.spec.series import SeriesSpec
from landscape_job.spec.titles import MAX_TITLE_CHARS
from landscape_job.storage.location import StorageLocation

DIR_TYPES = ("weights", "states")
NORMS = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
IGNORES = ("biasbn", "none")
#: ``directions.storage``: file (the paper's directions.h5 of values), seeded (the recipe only: each
#: pod regenerates the values per tensor from (seed, tensor name)), auto (seeded above a size).
STORAGES = ("auto", "file", "seeded")
#: ``compute.weights``: the dtype the model, θ* and the directions are held in on the device.
WEIGHTS = ("fp32", "bf16", "fp16")
LOSSES = ("cross_entropy", "mse")
#: What the model is asked to do: ``classification`` (today's: class labels, or float targets for
#: regression), or a language-model task on token data (docs/language-models.md).
TASKS = ("classification", "causal_lm", "masked_lm", "sequence_classification")
#: The tasks whose loss and metrics are per predicted token, not per sample.
TOKEN_TASKS = ("causal_lm", "masked_lm")
#: The metrics a token task computes when the spec names none.
TOKEN_METRICS = ("loss", "perplexity", "token_accuracy")
#: fp16 and auto came later: the stored value is the word itself, so existing specs keep their hash.
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp64", "auto")
#: What each precision means, as ``launcher validate`` says it (it runs off the cluster, so ``auto``
#: is the rule each worker will apply, ``runtime.precision.resolve_precision``; the worker logs and
#: records its choice and reason). Here with the names, not with that rule: validate --static needs no torch.
PRECISION_DESCRIPTIONS = {
    "auto": "auto: decided by each worker for its device: bf16 on CUDA with compute capability >= 8.0 "
            "(A100, H100, L4), fp16 on older CUDA (V100, T4), fp32 on CPU",
    "fp16": "fp16: float16 autocast (for GPUs before Ampere: V100, T4), loss and accuracy summed in float32; "
            "a point whose logits overflow float16 is NaN and reported",
    "bf16": "bf16: bfloat16 autocast; needs CUDA compute capability >= 8.0 (a worker on an older GPU stops "
            "with one line: use fp16 or auto); very slow on most CPUs",
    "tf32": "tf32: float32 storage, TF32 matmuls and convolutions on Ampere and later",
    "fp32": "fp32: float32 throughout (TF32 off)",
    "fp64": "fp64: float64 throughout",
}

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_METRICS = ("loss", "accuracy")
#: Data sets torchvision can download (``data.download: true``), and those whose classes are fixed.
DOWNLOADABLE = ("cifar10", "cifar100", "mnist", "fashion_mnist")
FIXED_CLASSES = ("digits", "synthetic", *DOWNLOADABLE)
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


def describe_precision(precision: str) -> str:
    """``compute.precision`` as ``launcher validate`` says it (the name itself where none is known)."""
    return PRECISION_DESCRIPTIONS.get(precision, precision)


_STRINGS_SCHEMA = one_or_list({"type": "string", "minLength": 1}, choices=False)
_REQUIREMENTS_SCHEMA = one_or_list({"type": "string", "minLength": 1, "pattern": REQUIREMENT_PATTERN}, choices=False)


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
    #: Token data (``dataset: tokens``): the tokens of one sequence; a flat stream is cut into such windows.
    context: int | None = key(None, kind=int, minimum=2, description="tokens: tokens per sequence (a flat .bin/.npy/"
                                                                       ".txt stream is cut into windows of this many)")
    #: Token data: a seeded selection (``subset_seed``) of this many sequences per split.
    sequences: int | None = key(None, kind=int, minimum=1, description="tokens: a seeded selection of this many "
                                                                       "sequences per split (default: all)")


_PATTERNS_SCHEMA = one_or_list({"type": "string", "minLength": 1}, choices=False)
_PARAMS_SCHEMA = {"type": "object", "properties": {"include": _PATTERNS_SCHEMA, "exclude": _PATTERNS_SCHEMA},
                  "additionalProperties": False}


@dataclass(frozen=True)
class ParamsSpec:
    """``directions.params``: the tensors the directions move, by ``fnmatch`` globs on their names
    (``named_parameters()`` or ``state_dict()`` names, as ``dir_type`` says). A tensor moves when it
    matches an ``include`` pattern (none given: every tensor) and no ``exclude`` pattern."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def selects(self, name: str) -> bool:
        from fnmatch import fnmatchcase

        included = not self.include or any(fnmatchcase(name, p) for p in self.include)
        return included and not any(fnmatchcase(name, p) for p in self.exclude)

    def describe(self) -> str:
        """For titles and logs: "only attn.*; not *.wte.*"."""
        parts = ([f"only {', '.join(self.include)}"] if self.include else []) + \
                ([f"not {', '.join(self.exclude)}"] if self.exclude else [])
        return "; ".join(parts)


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
    #: Where the directions live between prepare and evaluate (docs/directions.md).
    storage: str = key("auto", choices=STORAGES, description="file: directions.h5 holds the values (the paper's "
                       "layout) | seeded: it holds the recipe, each pod regenerates the values (type random) | "
                       "auto: seeded when the file would exceed 1 GiB")
    #: Which parameters the directions move (glob patterns on tensor names); None: all.
    params: ParamsSpec | None = key(None, kind=dict, json=_PARAMS_SCHEMA,
                                    description="{include: [globs], exclude: [globs]} on tensor names; "
                                                "the others stay at θ*")


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
    #: bf16/fp16 hold model, θ* and directions in half the memory; the loss is still summed in float64.
    weights: str = key("fp32", choices=WEIGHTS, description="the dtype of the weights, θ* and directions on the "
                        "device (bf16/fp16: half the memory; logits cast to fp32 for the loss)")


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
    density_steps: int = key(0, kind=int, minimum=0, description="eigenvalue density by stochastic Lanczos "
                                                                 "quadrature at the centre: Lanczos steps per probe "
                                                                 "(0: none; 60-100 resolve a network's outliers)")
    density_probes: int = key(4, kind=int, minimum=1, description="density: random probe vectors averaged")

    def to_dict(self) -> dict[str, Any]:
        """Every key, less the density's at their defaults: runs made before those keys keep their hashes."""
        out = asdict(self)
        for name, default in (("density_steps", 0), ("density_probes", 4)):
            if out[name] == default:
                del out[name]
        return out


@dataclass(frozen=True)
class PythonSpec:
    """Where the user's ``python:`` code comes from: folders (mounted volumes) and pip requirements."""

    path: tuple[str, ...] = key((), kind=(list, str), json=_STRINGS_SCHEMA,
                                description="folders put first on sys.path (relative to the spec file)")
    requirements: tuple[str, ...] = key((), kind=(list, str), json=_REQUIREMENTS_SCHEMA,
                                        description="pip requirement specifiers (name[extras] version ; marker) "
                                                    "installed into the input cache; no options, URLs or paths")


#: An axis as text ("-1:1:51") or as a list ([-1, 1, 51]: min, max and a whole count).
_AXIS_TEXT = {"type": "string", "pattern": AXIS_PATTERN}
_AXIS_LIST = {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}, {"type": "integer", "minimum": 1}],
              "minItems": 3, "maxItems": 3}
_GRID_SCHEMA = {"type": "object", "properties": {
    "x": {"description": "min:max:num, or [min, max, num]", "anyOf": [_AXIS_TEXT, _AXIS_LIST]},
    "y": {"description": "min:max:num, or [min, max, num]; omit for a 1-D curve",
          "anyOf": [_AXIS_TEXT, _AXIS_LIST, {"type": "null"}]}},
    "required": ["x"], "additionalProperties": False}


@dataclass(frozen=True, kw_only=True)
class Spec:
    name: str = key(json={"type": "string", "pattern": _NAME_RE.pattern}, computed="the spec file's name",
                    description="lowercase, digits, '-'; names the run and its Kubernetes objects")
    model: ModelSpec = key(kind=ModelSpec)
    data: DataSpec = key(kind=DataSpec)
    task: str = key("classification", choices=TASKS,
                    description="classification (class labels, or float targets: regression) | causal_lm | "
                                "masked_lm | sequence_classification (docs/language-models.md)")
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
    #: The Slurm settings (``launcher submit --slurm``); parsed by the launcher alone, as ``kubernetes``.
    slurm: dict[str, Any] = key(default_factory=dict, kind=dict,
                                description="Slurm settings (partitions, account, code mode), read only by the launcher")
    #: Why each direction default was chosen; shown by ``launcher validate``.
    notes: tuple[str, ...] = ()
    #: What each grid point computes: loss, accuracy (one forward pass), hessian (Lanczos).
    metrics: tuple[str, ...] = key(DEFAULT_METRICS, kind=(list, str), json=one_or_list(
        {"anyOf": [{"enum": list(dict.fromkeys([*METRIC_CHOICES, *(m.choice for m in LANGUAGE_METRICS)]))},
                   {"type": "string", "pattern": "^python:"}]}),
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
        for name in ("classes", "download", "context", "sequences"):
            if data[name] == default_of(DataSpec, name):
                del data[name]
        directions = asdict(self.directions)
        directions["targets"] = [input_out(t, self.pins) for t in self.directions.targets]
        directions["trajectory"] = [input_out(t, self.pins) for t in self.directions.trajectory]
        if not directions["trajectory"]:
            del directions["trajectory"]  # written only for pca, so older specs keep their hash
        for name in ("storage", "params"):  # later keys: written only when set
            if directions[name] == default_of(DirectionsSpec, name):
                del directions[name]
        if self.directions.params is not None:
            directions["params"] = {k: list(v) for k, v in directions["params"].items() if v}
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
            **({"task": self.task} if self.task != default_of(Spec, "task") else {}),
            "loss": self.loss,
            **layout,
            "compute": _compute_out(self.compute),
            "storage": self.storage.to_spec(),
            "plot": {k: list(v) if k == "formats" else v for k, v in asdict(self.plot).items()
                     if v is not None or k != "formats"},
            **({"metrics": list(self.metrics)} if self.series is None else {}),
            # Only where it is used: an unused hessian section is refused by parse_spec.
            **({"hessian": self.hessian.to_dict()} if self.uses_hessian else {}),
            **({"kubernetes": self.kubernetes} if self.kubernetes else {}),
            **({"slurm": self.slurm} if self.slurm else {}),
            **({"python": python} if python else {}),
        }

    def to_yaml(self) -> str:
        import yaml  # here, not at the top: the Python API's specs are never written as YAML

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def hash(self) -> str:
        """Identity of the computation: everything that changes the numbers.

        Storage, plot and cluster options are left out: moving a run, re-plotting it or
        running it elsewhere does not make its shards foreign.
        """
        content = {k: v for k, v in self.to_dict().items() if k not in ("storage", "plot", "name", "kubernetes", "slurm")}
        if tuple(content.get("metrics", DEFAULT_METRICS)) == DEFAULT_METRICS:
            content.pop("metrics", None)  # so the hash of every spec from before metrics existed is unchanged
        content["compute"] = {k: v for k, v in content["compute"].items() if k not in SPEED_KEYS}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _compute_out(compute: ComputeSpec) -> dict[str, Any]:
    """The compute section; ``weights`` (a later key) only when set, so older hashes stay."""
    out = asdict(compute)
    if out["weights"] == default_of(ComputeSpec, "weights"):
        del out["weights"]
    return out
