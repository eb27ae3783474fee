"""What each ``directions.type`` is: one table of facts, read by the spec, the stages and the estimate.

A direction type decides how many target checkpoints the spec takes, whether the grid
may (or must) be 2-D, what ``dir_type``, ``norm`` and ``ignore`` default to and why,
how the axes are labelled, and what stands in for it when a point is only timed. Those
facts used to be spread over the spec parser, the prepare stage, the merge's labels and
the estimate; here they are data, so a new type is one entry (plus its builder in
``direction_builders``).

This module is the bottom floor: plain data, no torch, no project imports, so that
``spec`` (which everything imports) can read it. The builders, which need torch and the
model, live above in ``direction_builders``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``settings`` policies: how a type treats ``dir_type``, ``norm`` and ``ignore`` in the spec.
DEFAULTED = "defaulted"  # the user may set them; the defaults below fill what is left out
AS_WRITTEN = "as_written"  # the source fixes them (a direction file): setting any is an error
FORCED = "forced"  # only the values below are accepted, and they are stated in the normalised spec

#: ``ignore`` of a FORCED type that follows ``hessian.ignore`` instead of a fixed value.
FOLLOWS_HESSIAN_IGNORE = "<hessian.ignore>"

_TARGET_PHRASES = {
    0: "no targets",
    1: "one target checkpoint (x = target - model.checkpoint)",
    2: "two target checkpoints (x = t1 - model.checkpoint, y = t2 - model.checkpoint)",
}


@dataclass(frozen=True)
class DirectionType:
    """The facts of one direction type; see the module docstring for who reads which."""

    name: str
    #: How many ``directions.targets`` the type takes (checkpoints the directions point to).
    targets: int
    #: DEFAULTED, AS_WRITTEN or FORCED (see above).
    settings: str
    #: dir_type / norm / ignore when the spec leaves them out (or the only values accepted).
    dir_type: str
    norm: str
    ignore: str
    #: Why those defaults: the text of the spec's notes (DEFAULTED types).
    defaults_why: str = ""
    #: Per key, why a FORCED value is the only one accepted.
    forced_why: tuple[tuple[str, str], ...] = ()
    #: The spec's note for an AS_WRITTEN or FORCED type.
    note: str = ""
    #: Needs ``directions.file`` (and nothing else may set it).
    reads_file: bool = False
    #: Needs ``directions.trajectory`` (the training run's checkpoints).
    reads_trajectory: bool = False
    #: The grid's dimensionality when the type fixes it (None: 1-D or 2-D), and the grid.y error if not.
    ndim: int | None = None
    ndim_error: str = ""
    #: ``directions.same_dir`` (y = x) is for this type (random: two draws would differ otherwise).
    allows_same_dir: bool = False
    #: Why ``directions.orthogonalize`` is refused for this type ("" : allowed).
    orthogonalize_refused: str = ""
    #: Fixed axis labels (None: the generic "x (<type> direction, <norm>-normalised)").
    labels: tuple[str, str] | None = None
    #: Axis labels name the principal components and their share of the variance.
    labels_from_variance: bool = False
    #: Whose directions a timing run builds instead (a point costs the same along any
    #: direction; None: its own). Hessian eigenvectors need a Lanczos run of their own.
    estimate_as: str | None = None
    #: report.json gets the interpolation summary (the barrier between the two models).
    reports_interpolation: bool = False

    @property
    def targets_phrase(self) -> str:
        return _TARGET_PHRASES[self.targets]

    def forced_ignore(self, hessian_ignore: str) -> str:
        return hessian_ignore if self.ignore == FOLLOWS_HESSIAN_IGNORE else self.ignore

    def axis_labels(self, norm: str, explained_variance: list[float] | None = None) -> tuple[str, str]:
        """The surface's xlabel and ylabel (``explained_variance``: the PCA's, from the manifest)."""
        if self.labels_from_variance and explained_variance is not None:
            return (f"PC1 ({100 * explained_variance[0]:.1f}% of variance)",
                    f"PC2 ({100 * explained_variance[1]:.1f}% of variance)")
        if self.labels is not None:
            return self.labels
        normalised = "" if norm == "none" else f", {norm}-normalised"
        return f"x ({self.name} direction{normalised})", f"y ({self.name} direction{normalised})"


_FROM_CHECKPOINTS_WHY = "the difference of trained models, BN statistics included, unnormalised"

TYPES: dict[str, DirectionType] = {t.name: t for t in (
    DirectionType(
        name="random", targets=0, settings=DEFAULTED, dir_type="weights", norm="filter", ignore="biasbn",
        defaults_why="filter-normalised random directions of Li et al.", allows_same_dir=True),
    DirectionType(
        name="interpolate", targets=1, settings=DEFAULTED, dir_type="states", norm="none", ignore="none",
        defaults_why=_FROM_CHECKPOINTS_WHY, ndim=1,
        ndim_error="grid.y: an interpolation between two checkpoints is 1-D; remove grid.y, "
                   "or use directions.type: plane with two targets",
        labels=("interpolation α (0: model, 1: target)", ""), reports_interpolation=True),
    DirectionType(
        name="plane", targets=2, settings=DEFAULTED, dir_type="states", norm="none", ignore="none",
        defaults_why=_FROM_CHECKPOINTS_WHY, ndim=2,
        ndim_error="grid.y: a plane through three checkpoints is 2-D; add grid.y (e.g. \"-0.5:1.5:41\")",
        labels=("x (toward target 1)", "y (toward target 2)")),
    DirectionType(
        name="file", targets=0, settings=AS_WRITTEN, dir_type="weights", norm="none", ignore="none",
        note="directions read from the file as written; weights vs states follows the file's tensor count",
        reads_file=True),
    DirectionType(
        name="pca", targets=0, settings=DEFAULTED, dir_type="weights", norm="none", ignore="biasbn",
        defaults_why="principal directions of the trajectory's parameters, unnormalised",
        reads_trajectory=True, labels_from_variance=True),
    DirectionType(
        # Unit eigenvectors over parameters, used as computed; the normalised spec states
        # these forced values, so they are accepted when they match.
        name="hessian", targets=0, settings=FORCED, dir_type="weights", norm="none", ignore=FOLLOWS_HESSIAN_IGNORE,
        forced_why=(("dir_type", "the Hessian is over the parameters"),
                    ("norm", "eigenvectors are used as computed (unit norm)"),
                    ("ignore", "set hessian.ignore instead")),
        note="directions: the top eigenvector(s) of the Hessian at model.checkpoint (see hessian.*), unit norm",
        orthogonalize_refused="Hessian eigenvectors are orthogonal already", estimate_as="random"),
)}

#: The spec's choices for ``directions.type``, in the order its errors list them.
DIRECTION_TYPES = tuple(TYPES)


def direction_type(name: str) -> DirectionType:
    """The table's entry; a name outside it is a programming error (the spec has checked it)."""
    return TYPES[name]
