"""Random directions that never touch disk: a recipe, regenerated per tensor in every pod.

A 7B-parameter model's two directions are 56 GB of float32: written by prepare, uploaded
once and downloaded by every evaluate pod. ``directions.storage: seeded`` stores the
recipe instead (seed, normalisation, the tensors' names and shapes, the parameter
selection) and each pod regenerates the values one tensor at a time, straight onto its
device, holding no more than one tensor's draw in host memory.

**The scheme.** Tensor ``name`` of direction ``axis`` (``x`` or ``y``) is drawn by
``torch.randn`` on the CPU from its own ``torch.Generator`` (MT19937), seeded with the first
63 bits of ``sha256("landscape-directions|<seed>|<axis>|<name>")``. Why so:

* per tensor, from its name: the draw of one tensor does not depend on the others, so a
  pod can generate in any order, one tensor at a time, and a tensor left out by
  ``directions.params`` does not shift the others;
* on the CPU, then moved: the CPU generator gives the same bits on every machine and
  thread count, while CUDA's Philox stream differs from it, and a counter-based scheme
  written with torch ops would need ``log``/``cos``/``sqrt`` (Box-Muller), whose last bit
  differs between CPU and GPU math libraries. Bit-identical values on any device type are
  worth the CPU's draw (about 0.1-0.2 s per 10^8 values, once per pod);
* filter normalisation in float64, against θ* as loaded (before any ``compute.weights``
  cast), then cast: the same values whichever dtype the device holds.

Every pod hashes the values it generated (``direction_hash``): the manifest's hash, taken by
prepare over the same stream, must match, or the pod stops, so shards can never be
computed with different directions (a different torch whose generator changed, say).

Filter normalisation of transformer tensors (``norm: filter``): a tensor of dim > 1 is
normalised row by row (slices on dim 0): a ``Linear`` weight (out, in) per output unit, an
``Embedding`` (vocabulary, width) per token vector, a convolution per filter. Tensors of
dim <= 1 (biases, LayerNorm and BatchNorm scales) follow ``ignore``: zero under ``biasbn``,
else a copy of θ* (the paper's rule for random directions).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from landscape_job.base.errors import StageError, UserError
from landscape_job.spec.sections import DirectionsSpec, ParamsSpec
from landscape_job.surface.directions import Directions, named_tensors, normalize_tensor

#: The generator's name in a recipe: a pod that does not know it refuses the recipe.
GENERATOR = "cpu-mt19937-randn-per-tensor-v1"
#: ``directions.storage: auto`` stores the recipe when the value file would be larger than this.
AUTO_SEEDED_BYTES = 1 << 30
_EPS = 1e-10


def tensor_seed(seed: int, axis: str, name: str) -> int:
    """The generator seed of one tensor of one direction: a stable hash, never Python's ``hash``."""
    digest = hashlib.sha256(f"landscape-directions|{seed}|{axis}|{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class SeededRecipe:
    """What ``directions.h5`` holds for seeded directions: enough to regenerate every value."""

    seed: int
    dir_type: str
    norm: str
    ignore: str
    two_d: bool
    same_dir: bool
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: ``orthogonalize``: y = (y − c·x)·s with (c, s) found by prepare over all tensors; None: as drawn.
    orthogonal: tuple[float, float] | None = None
    generator: str = GENERATOR

    @property
    def params(self) -> ParamsSpec:
        return ParamsSpec(include=self.include, exclude=self.exclude)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> "SeededRecipe":
        try:
            raw = json.loads(text)
            raw["names"] = tuple(raw["names"])
            raw["shapes"] = tuple(tuple(int(n) for n in s) for s in raw["shapes"])
            raw["include"], raw["exclude"] = tuple(raw["include"]), tuple(raw["exclude"])
            raw["orthogonal"] = None if raw["orthogonal"] is None else tuple(float(v) for v in raw["orthogonal"])
            recipe = cls(**raw)
        except (KeyError, TypeError, ValueError) as err:
            raise StageError(f"{source}: damaged seeded-direction recipe ({err})") from None
        if recipe.generator != GENERATOR:
            raise StageError(f"{source}: directions from generator {recipe.generator!r}; this version knows "
                             f"{GENERATOR!r} (run evaluate with the version that ran prepare)")
        return recipe


def direction_values(spec: DirectionsSpec, model: nn.Module, two_d: bool) -> int:
    """How many values the direction file would hold: one or two directions of every tensor."""
    count = sum(t.numel() for _, t in named_tensors(model, spec.dir_type))
    return count * (2 if two_d and not spec.same_dir else 1)


def uses_seeded(spec: DirectionsSpec, model: nn.Module, two_d: bool) -> bool:
    """``directions.storage`` decided for this model: seeded, or the paper's file of values."""
    if spec.type != "random" or spec.storage == "file":
        return False
    return spec.storage == "seeded" or direction_values(spec, model, two_d) * 4 > AUTO_SEEDED_BYTES


def recipe_for(spec: DirectionsSpec, model: nn.Module, two_d: bool) -> SeededRecipe:
    named = named_tensors(model, spec.dir_type)
    params = spec.params or ParamsSpec()
    return SeededRecipe(seed=spec.seed, dir_type=spec.dir_type, norm=spec.norm, ignore=spec.ignore, two_d=two_d,
                        same_dir=spec.same_dir, names=tuple(n for n, _ in named),
                        shapes=tuple(tuple(t.shape) for _, t in named), include=params.include,
                        exclude=params.exclude)


def _wide(w: torch.Tensor) -> torch.dtype:
    return torch.float64 if w.dtype == torch.float64 else torch.float32


def draw(recipe: SeededRecipe, axis: str, name: str, weight: torch.Tensor) -> torch.Tensor:
    """One tensor of one direction, normalised, on the CPU (before any orthogonalisation)."""
    weight = weight.detach().cpu()
    wide = _wide(weight)
    if not torch.is_floating_point(weight) or not recipe.params.selects(name):
        return torch.zeros(weight.shape, dtype=wide)
    if weight.dim() <= 1:
        return torch.zeros(weight.shape, dtype=wide) if recipe.ignore == "biasbn" else weight.to(wide, copy=True)
    generator = torch.Generator(device="cpu").manual_seed(tensor_seed(recipe.seed, axis, name))
    values = torch.randn(weight.shape, generator=generator, dtype=torch.float32).to(wide)
    return normalize_tensor(values, weight, recipe.norm)


def _pairs(recipe: SeededRecipe, model: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(x, y) of each tensor in the recipe's order, y orthogonalised as the recipe says; y None for 1-D."""
    named = named_tensors(model, recipe.dir_type)
    found = tuple((n, tuple(t.shape)) for n, t in named)
    if found != tuple(zip(recipe.names, recipe.shapes)):
        raise StageError("seeded directions: the model's tensors (names, shapes) are not those prepare "
                         "recorded; the run's model changed after prepare")
    for name, weight in named:
        x = draw(recipe, "x", name, weight)
        if not recipe.two_d:
            yield x, None
            continue
        y = x.clone() if recipe.same_dir else draw(recipe, "y", name, weight)
        if recipe.orthogonal is not None:
            coef, scale = recipe.orthogonal
            y = ((y.double() - coef * x.double()) * scale).to(x.dtype)
        yield x, y


@dataclass
class _Stream:
    """The running hash and dot products over a recipe's tensors."""

    recipe: SeededRecipe
    digest: "hashlib._Hash" = field(init=False)
    xx: float = 0.0
    xy: float = 0.0
    yy: float = 0.0

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256(b"seeded|" + self.recipe.to_json().encode())

    def add(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        for t in (x, y):
            if t is not None:
                self.digest.update(t.contiguous().numpy().tobytes())
        self.xx += float(torch.sum(x.double() ** 2))
        if y is not None:
            self.xy += float(torch.sum(x.double() * y.double()))
            self.yy += float(torch.sum(y.double() ** 2))

    @property
    def cosine(self) -> float | None:
        return self.xy / (np.sqrt(self.xx * self.yy) + _EPS) if self.recipe.two_d else None


@dataclass(frozen=True)
class SeededSummary:
    """What prepare records of seeded directions without keeping them: the recipe, its hash, counts."""

    recipe: SeededRecipe
    hash: str
    cosine: float | None
    tensors: int
    parameters: int
    perturbed: int


def final_recipe(spec: DirectionsSpec, model: nn.Module, two_d: bool) -> SeededRecipe:
    """The recipe of ``spec``'s directions at the model's θ*. ``orthogonalize`` takes one pass over
    the tensors (host memory: one tensor): y's coefficient along x needs all of them."""
    recipe = recipe_for(spec, model, two_d)
    _check_selection(recipe)
    if not (spec.orthogonalize and two_d):
        return recipe
    stream = _Stream(recipe)
    for x, y in _pairs(recipe, model):
        stream.add(x, y)
    coef = stream.xy / (stream.xx + _EPS)
    remaining = max(stream.yy - 2 * coef * stream.xy + coef * coef * stream.xx, 0.0)
    return _replace(recipe, orthogonal=(coef, float(np.sqrt(stream.yy) / (np.sqrt(remaining) + _EPS))))


def summarize(spec: DirectionsSpec, model: nn.Module, two_d: bool) -> SeededSummary:
    """What prepare records: the recipe and the hash of the values, streamed tensor by tensor."""
    recipe = final_recipe(spec, model, two_d)
    stream = _Stream(recipe)
    perturbed = 0
    for x, y in _pairs(recipe, model):
        stream.add(x, y)
        perturbed += x.numel() if bool(x.any()) or (y is not None and bool(y.any())) else 0
    return SeededSummary(recipe=recipe, hash=stream.digest.hexdigest(), cosine=stream.cosine,
                         tensors=len(recipe.names), parameters=sum(int(np.prod(s)) for s in recipe.shapes),
                         perturbed=perturbed)


def _replace(recipe: SeededRecipe, **changes: object) -> SeededRecipe:
    from dataclasses import replace

    return replace(recipe, **changes)


def _check_selection(recipe: SeededRecipe) -> None:
    if not any(recipe.params.selects(n) for n in recipe.names):
        raise UserError(f"directions.params: {recipe.params.describe()} matches none of the model's "
                        f"{len(recipe.names)} tensors (e.g. {', '.join(recipe.names[:3])})")


def materialize(recipe: SeededRecipe, model: nn.Module, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> Directions:
    """The directions of a recipe, generated tensor by tensor and moved to ``device`` as each is made
    (cast to ``dtype`` there: ``compute.weights``); their hash is that of the values generated."""
    stream = _Stream(recipe)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for x, y in _pairs(recipe, model):
        stream.add(x, y)
        xs.append(x.to(device, dtype or x.dtype))
        if y is not None:
            ys.append(y.to(device, dtype or y.dtype))
    return Directions(dir_type=recipe.dir_type, names=list(recipe.names), x=xs, y=ys if recipe.two_d else None,
                      known_hash=stream.digest.hexdigest())


def recipe_file_bytes(summary: SeededSummary, attrs: dict[str, object]) -> bytes:
    """``directions.h5`` for seeded directions: attributes only (no values); readers of the
    paper's layout find no ``xdirection`` group and say so."""
    from landscape_job.storage import h5_bytes

    def write(handle) -> None:  # noqa: ANN001 - an h5py.File
        handle.attrs["storage"] = "seeded"
        handle.attrs["recipe"] = summary.recipe.to_json()
        handle.attrs["dir_type"] = summary.recipe.dir_type
        handle.attrs["names"] = json.dumps(list(summary.recipe.names))
        handle.attrs["direction_hash"] = summary.hash
        if summary.cosine is not None:
            handle.attrs["cosine_xy"] = summary.cosine
        for key, value in attrs.items():
            handle.attrs[key] = value

    return h5_bytes(write)


def read_recipe(data: bytes, source: str) -> SeededRecipe | None:
    """The recipe of a seeded ``directions.h5``; None for a file of values."""
    from landscape_job.storage import h5_attrs, open_h5

    try:
        with open_h5(data) as handle:
            attrs = h5_attrs(handle)
    except OSError:
        return None  # load_directions names what is wrong with it
    if attrs.get("storage") != "seeded":
        return None
    return SeededRecipe.from_json(str(attrs.get("recipe", "")), source)
