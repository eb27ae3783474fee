"""Which figures a surface gets: one table, walked by ``plot_surface``.

Each row names a figure (its file stem), the grid dimension it is for, the datasets it
needs and the function that draws it. After the table, every field no row names (a
metric registered later, or a dataset the registry does not know) gets a generic
figure: ``<name>_2d_contourf`` on a 2-D grid, ``1d_<quantity>`` (one curve per split)
on a 1-D one. So a new metric is drawn without a line here, and adding a figure is one row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from landscape_job.spec import metrics as registry
from landscape_job.plots.draw1d import plot_1d, plot_1d_curvature, plot_1d_fields
from landscape_job.plots.draw2d import fig_3d, fig_contour, fig_contourf, fig_heat
from landscape_job.plots.fields import loss_field, value_field
from landscape_job.plots.levels import convexity_ratio
from landscape_job.plots.options import PlotOptions
from landscape_job.plots.style import CMAPS, FIGSIZE_2D, FIGSIZE_3D, LOSS_CMAP, RC, placeholder_figure, save
from landscape_job.surface.file import Surface, load_surface
from landscape_job.spec.titles import figure_title

__all__ = ["FigureKind", "FIGURES", "figures", "planned", "plot_surface"]

#: draw(surface, options, split): split is None for a figure that is not per split.
Draw = Callable[[Surface, PlotOptions, "str | None"], Figure]


@dataclass(frozen=True)
class FigureKind:
    """One row of the table: a figure ``plot_surface`` draws when the surface has what it needs.

    ``{split}`` in ``stem`` and ``needs`` makes one figure per split. ``any_of``: one of
    ``needs`` is enough (the 1-D curves draw whichever of loss and accuracy there is).
    """

    stem: str
    dims: int
    needs: tuple[str, ...]
    draw: Draw
    any_of: bool = False

    def splits(self) -> tuple[str | None, ...]:
        return registry.SPLITS if "{split}" in self.stem else (None,)

    def needed(self, split: str | None) -> tuple[str, ...]:
        return tuple(n.format(split=split) for n in self.needs) if split else self.needs

    def covers(self) -> set[str]:
        """Every dataset this row draws, over all splits: those get no generic figure."""
        return {n for split in self.splits() for n in self.needed(split)}

    def applies(self, surface: Surface, split: str | None) -> bool:
        present = [n in surface.metrics for n in self.needed(split)]
        return any(present) if self.any_of else all(present)


# --------------------------------------------------------------------------- the drawings


def _loss_figure(kind: str, surface: Surface, options: PlotOptions, split: str | None) -> Figure:
    """One of the four loss figures of a split, or its placeholder when no value can be drawn."""
    title = figure_title(f"{split} loss", surface.attrs)
    if kind == "3d" and options.log is None:  # a height reads best in loss units: log only when asked for
        options = replace(options, log=False)
    field = loss_field(surface, surface.metrics[f"{split}_loss"], options)
    if field is None:
        note = "no finite, positive loss values" if options.log else "no finite loss values"
        return placeholder_figure(FIGSIZE_3D if kind == "3d" else FIGSIZE_2D, options.dpi, title, note)
    if kind == "contour":
        return fig_contour(surface, field, title, options.dpi)
    if kind == "contourf":
        return fig_contourf(surface, field, title, options.dpi, LOSS_CMAP)
    if kind == "heat":
        return fig_heat(surface, field, title, options.dpi)
    return fig_3d(surface, field, title, options.dpi)


def _field_contourf(name: str, empty: str, surface: Surface, options: PlotOptions, split: str | None = None) -> Figure:
    """A filled contour of one field over its own range, coloured and labelled as its metric says."""
    described = registry.describe(name.format(split=split) if split else name)
    metric = described.metric
    title = figure_title(described.title, surface.attrs)
    field = value_field(surface, surface.metrics[described.name], label=metric.with_unit)
    if field is None:
        return placeholder_figure(FIGSIZE_2D, options.dpi, title, empty)
    return fig_contourf(surface, field, title, options.dpi, CMAPS[metric.colours])


def _convexity_heat(surface: Surface, options: PlotOptions, _split: str | None) -> Figure:
    """|λmin/λmax| (Li et al., Fig. 7), coloured from 0 (convex) to 1 (negative curvature as
    strong as the positive); a larger ratio takes the top colour, as the paper's maps do."""
    ratio = convexity_ratio(surface.metrics["max_eig"], surface.metrics["min_eig"])
    field = value_field(surface, ratio, label="|λmin / λmax|")
    title = figure_title("convexity |λmin/λmax|", surface.attrs)
    if field is None:
        return placeholder_figure(FIGSIZE_2D, options.dpi, title, "no finite eigenvalues")
    field.lo, field.hi = 0.0, max(min(field.hi, 1.0), 1e-6)
    return fig_heat(surface, field, title, options.dpi)


_LOSS_AND_ACC = ("train_loss", "train_acc", "test_loss", "test_acc")
_EIGENVALUES = ("max_eig", "min_eig")

#: The figures, in no particular order (``plot_surface`` returns the paths sorted).
FIGURES: tuple[FigureKind, ...] = (
    FigureKind("1d_loss", 1, _LOSS_AND_ACC, lambda s, o, _: plot_1d(s, o, log=False), any_of=True),
    FigureKind("1d_loss_log", 1, _LOSS_AND_ACC, lambda s, o, _: plot_1d(s, o, log=True), any_of=True),
    FigureKind("1d_hessian", 1, _EIGENVALUES, lambda s, o, _: plot_1d_curvature(s, o)),
    FigureKind("convexity_2d_heat", 2, _EIGENVALUES, _convexity_heat),
    FigureKind("max_eig_2d_contourf", 2, _EIGENVALUES, partial(_field_contourf, "max_eig", "no finite eigenvalues")),
    FigureKind("min_eig_2d_contourf", 2, _EIGENVALUES, partial(_field_contourf, "min_eig", "no finite eigenvalues")),
    *(FigureKind(f"{{split}}_loss_{stem}", 2, ("{split}_loss",), partial(_loss_figure, kind))
      for kind, stem in (("contour", "2d_contour"), ("contourf", "2d_contourf"), ("heat", "2d_heat"),
                         ("3d", "3d_surface"))),
    FigureKind("{split}_acc_2d_contourf", 2, ("{split}_acc",),
               partial(_field_contourf, "{split}_acc", "no finite accuracy values")),
)


# --------------------------------------------------------------------------- the walk


def _generic(surface: Surface, covered: set[str]) -> list[tuple[str, Callable[[Surface, PlotOptions], Figure]]]:
    """A figure for every field the table leaves out: per field in 2-D, per quantity in 1-D."""
    fields = [f for f in surface.fields() if f.name not in covered]
    if surface.is_2d:
        return [(f"{f.name}_2d_contourf", partial(_field_contourf, f.name, "no finite values")) for f in fields]
    by_quantity: dict[str, list[registry.Field]] = {}
    for f in fields:
        by_quantity.setdefault(f.quantity, []).append(f)
    return [(f"1d_{quantity}", partial(plot_1d_fields, fields=group)) for quantity, group in by_quantity.items()]


def _bound(draw: Draw, split: str | None) -> Callable[[Surface, PlotOptions], Figure]:
    return lambda surface, options: draw(surface, options, split)


def planned(surface: Surface) -> list[tuple[str, Callable[[Surface, PlotOptions], Figure]]]:
    """(stem, draw) of every figure this surface gets: the table's rows that apply, then the generic ones."""
    dims = 2 if surface.is_2d else 1
    rows = [kind for kind in FIGURES if kind.dims == dims]
    plan: list[tuple[str, Callable[[Surface, PlotOptions], Figure]]] = [
        (kind.stem.format(split=split) if split else kind.stem, _bound(kind.draw, split))
        for kind in rows for split in kind.splits() if kind.applies(surface, split)]
    covered = set().union(*(kind.covers() for kind in rows))
    return plan + _generic(surface, covered)


#: The most grid lines per axis a 2-D figure is drawn from. A figure is 6-8 inches at
#: 150 dpi, under 1,200 pixels: a finer grid adds no visible detail, only time (contourf
#: and the 3-D surface of a 1001x1001 grid: most of a 14 s merge) and PDF megabytes.
MAX_DRAWN = 501


def _every(n: int) -> np.ndarray:
    """Indices of at most ``MAX_DRAWN`` evenly strided grid lines, both ends kept."""
    step = -(-n // MAX_DRAWN)
    return np.unique(np.r_[np.arange(0, n, step), n - 1])


def drawn(surface: Surface) -> Surface:
    """The surface as the 2-D figures draw it: thinned to ``MAX_DRAWN`` lines per axis when
    larger (surface.h5 and the exports keep every point)."""
    if not surface.is_2d or max(len(surface.x), len(surface.y)) <= MAX_DRAWN:
        return surface
    ix, iy = _every(len(surface.x)), _every(len(surface.y))
    return replace(surface, x=surface.x[ix], y=surface.y[iy],
                   metrics={k: v[np.ix_(iy, ix)] for k, v in surface.metrics.items()})


def figures(surface: Surface, options: PlotOptions = PlotOptions()) -> Iterator[tuple[str, Figure]]:
    """(stem, figure) of every figure the surface gets, drawn one at a time (thinned by ``drawn``).

    ``plot_surface`` saves each as it comes; the Python API (``Landscape.plot``) returns
    them. Drawn inside ``matplotlib.rc_context(style.RC)`` they have the house style.
    """
    surface = drawn(surface)
    if options.title:  # the caller's title wins over the one the run recorded
        surface = replace(surface, attrs={**surface.attrs, "title": options.title})
    for stem, draw in planned(surface):
        yield stem, draw(surface, options)


def plot_surface(surface_path: str | Path, out_dir: str | Path, options: PlotOptions = PlotOptions()) -> list[Path]:
    """Writes all plots for the file, returns the paths written (sorted).

    1-D: ``1d_loss`` and ``1d_loss_log``. 2-D, per split with a loss:
    ``<split>_loss_2d_contour``, ``_2d_contourf``, ``_2d_heat``, ``_3d_surface``; per
    split with an accuracy: ``<split>_acc_2d_contourf``. With ``max_eig``/``min_eig``
    datasets: ``1d_hessian`` (1-D), or ``convexity_2d_heat``, ``max_eig_2d_contourf`` and
    ``min_eig_2d_contourf`` (2-D). Any other field: ``<name>_2d_contourf`` or
    ``1d_<quantity>``. Each in every ``options.formats``. A grid over ``MAX_DRAWN`` lines
    a side is drawn thinned (``drawn``).
    """
    if not isinstance(options, PlotOptions):
        raise TypeError(f"options must be PlotOptions, got {type(options).__name__}")
    surface = load_surface(surface_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with matplotlib.rc_context(RC):
        for stem, figure in figures(surface, options):
            written += save(figure, out, stem, options)
    return sorted(written)
