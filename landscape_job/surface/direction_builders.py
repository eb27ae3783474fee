"""Builds the directions of each ``directions.type``: one builder per entry of ``direction_types.TYPES``.

The facts about a type (targets, defaults, labels) are data in ``direction_types``;
how its directions are made is here, above the modules that hold the mathematics
(``directions`` for random and checkpoint differences and the file format, ``pca`` for
the trajectory's principal plane). This module is the only one that dispatches on the
type, so ``directions`` and ``pca`` need not know each other's callers, and no import
circle forms.

Hessian eigenvectors come out of the centre's Lanczos run (``curvature.centre_analysis``),
which also gives the manifest's sharpness: the prepare stage runs it once and hands the
eigenvectors in, so its builder only checks that it was given them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from landscape_job.spec.direction_types import DIRECTION_TYPES
from landscape_job.base.errors import UserError
from landscape_job.spec.sections import DirectionsSpec
from landscape_job.surface.directions import (
    Directions,
    named_tensors,
    normalize_direction,
    orthogonalize,
    random_direction,
    read_direction_file,
    target_direction,
)
from landscape_job.surface.seeded import SeededRecipe, final_recipe, materialize, uses_seeded

if TYPE_CHECKING:  # a PCA's module (checkpoints, the model zoo) is imported by its builder alone
    from landscape_job.surface.pca import PcaPlane


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need beyond the spec and the centre model."""

    two_d: bool
    #: θ*'s checkpoint file, so PCA does not load it again as a trajectory point (None: unknown).
    final: str | None = None
    #: The Hessian's top eigenvectors at θ*, as directions (type hessian; from the centre analysis).
    eigen: Directions | None = None


@dataclass(frozen=True)
class BuiltDirections:
    directions: Directions
    #: The principal plane and the trajectory's path in it (type pca): the manifest records them.
    pca: PcaPlane | None = None
    #: Seeded random directions: the recipe every pod regenerates them from.
    recipe: SeededRecipe | None = None


Builder = Callable[[DirectionsSpec, nn.Module, BuildContext], BuiltDirections]


def _centre(model: nn.Module, dir_type: str) -> tuple[list[str], list[torch.Tensor]]:
    named = named_tensors(model, dir_type)
    return [n for n, _ in named], [t.detach().cpu().clone() for _, t in named]


def _finish(spec: DirectionsSpec, names: list[str], centre: list[torch.Tensor], x: list[torch.Tensor],
            y: list[torch.Tensor] | None, two_d: bool, small_from_weights: bool) -> BuiltDirections:
    """Normalisation, ``same_dir`` and ``orthogonalize``, in that order, for random and target directions."""
    x = normalize_direction(x, centre, spec.norm, spec.ignore, small_from_weights)
    if y is not None:
        y = normalize_direction(y, centre, spec.norm, spec.ignore, small_from_weights)
    if spec.params is not None:
        keep = _selected(spec, names)
        for direction in (x, y or []):
            for moved, d in zip(keep, direction):
                if not moved:
                    d.zero_()
    if two_d and spec.same_dir:
        y = [t.clone() for t in x]
    if y is not None and spec.orthogonalize:
        y = orthogonalize(x, y)
    return BuiltDirections(Directions(dir_type=spec.dir_type, names=names, x=x, y=y))


def _selected(spec: DirectionsSpec, names: list[str]) -> list[bool]:
    """Which tensors ``directions.params`` moves; none at all is the user's mistake, named."""
    keep = [spec.params.selects(n) for n in names] if spec.params is not None else [True] * len(names)
    if not any(keep):
        raise UserError(f"directions.params: {spec.params.describe()} matches none of the model's {len(names)} "
                        f"tensors (e.g. {', '.join(names[:3])})")
    return keep


def _random(spec: DirectionsSpec, model: nn.Module, ctx: BuildContext) -> BuiltDirections:
    """Gaussian draws seeded by the spec; dim <= 1 tensors copy the weights unless ignored (the paper's rule).

    Seeded storage (``surface.seeded``): one generator per tensor, from (seed, name); here
    materialised on the CPU (the Python API, which keeps nothing on disk anyway).
    """
    if uses_seeded(spec, model, ctx.two_d):
        recipe = final_recipe(spec, model, ctx.two_d)
        return BuiltDirections(materialize(recipe, model), recipe=recipe)
    names, centre = _centre(model, spec.dir_type)
    generator = torch.Generator(device="cpu").manual_seed(spec.seed)
    x = random_direction(centre, generator)
    y = random_direction(centre, generator) if ctx.two_d and not spec.same_dir else None
    return _finish(spec, names, centre, x, y, ctx.two_d, small_from_weights=True)


def _targets(spec: DirectionsSpec, model: nn.Module, ctx: BuildContext) -> BuiltDirections:
    """x = target 1 − θ* (and y = target 2 − θ* for a plane); dim <= 1 tensors keep the difference."""
    names, centre = _centre(model, spec.dir_type)
    x = target_direction(model, centre, spec.targets[0], spec.dir_type)
    y = target_direction(model, centre, spec.targets[1], spec.dir_type) if len(spec.targets) > 1 else None
    return _finish(spec, names, centre, x, y, ctx.two_d, small_from_weights=False)


def _file(spec: DirectionsSpec, model: nn.Module, ctx: BuildContext) -> BuiltDirections:
    return BuiltDirections(read_direction_file(spec.file, model, ctx.two_d))


def _pca(spec: DirectionsSpec, model: nn.Module, ctx: BuildContext) -> BuiltDirections:
    from landscape_job.surface.pca import build_pca

    plane = build_pca(spec, model, ctx.two_d, final=ctx.final)
    return BuiltDirections(plane.directions, pca=plane)


def _hessian(spec: DirectionsSpec, model: nn.Module, ctx: BuildContext) -> BuiltDirections:
    if ctx.eigen is None:
        raise ValueError("hessian directions need the data: the prepare stage builds them (curvature.centre_analysis)")
    return BuiltDirections(ctx.eigen)


BUILDERS: dict[str, Builder] = {
    "random": _random,
    "interpolate": _targets,
    "plane": _targets,
    "file": _file,
    "pca": _pca,
    "hessian": _hessian,
}
if set(BUILDERS) != set(DIRECTION_TYPES):  # a type added to the table needs its builder here
    raise ImportError(f"direction builders {sorted(BUILDERS)} != direction types {sorted(DIRECTION_TYPES)}")


def build(spec: DirectionsSpec, model: nn.Module, ctx: BuildContext) -> BuiltDirections:
    """The directions a spec asks for, at the centre the model currently holds (the model is left as it was)."""
    return BUILDERS[spec.type](spec, model, ctx)


def build_directions(spec: DirectionsSpec, model: nn.Module, two_d: bool) -> Directions:
    """The x (and y) directions of any type that needs only the model and files (not hessian)."""
    return build(spec, model, BuildContext(two_d=two_d)).directions
