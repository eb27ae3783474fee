"""The look of every figure: sizes, colours, fonts, titles, and how a figure is saved.

Everything is drawn on ``NotebookFigure`` objects (a ``matplotlib.figure.Figure``) with
their own Agg canvas: no pyplot, no backend chosen, no global figure registry, so this is
safe in a pod and in a long-lived process, and the user's matplotlib backend is left as
it is. A ``NotebookFigure`` answers ``_repr_png_``, so Jupyter shows one inline with no
``%matplotlib`` line. Style settings live in an ``rc_context`` (``RC``) and are restored after.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from landscape_job.plots.options import PlotOptions

#: Figure sizes in inches; a PNG is ``round(dpi * size)`` pixels.
FIGSIZE_1D = (6.0, 4.2)
FIGSIZE_2D = (5.4, 4.5)
FIGSIZE_3D = (6.4, 5.2)

#: The 3-D surface is drawn on at most this many rows/columns (a 4096^2 grid is legal).
MAX_3D_CELLS = 120

LOSS_CMAP = "viridis"
ACC_CMAP = "magma"
#: Okabe-Ito blue / vermillion: distinguishable in colour-blind vision and in greyscale.
SPLIT_COLOURS = {"train": "#0072B2", "test": "#D55E00"}
MASKED_FACE = "0.88"
#: The colour map of each of the registry's colour kinds (``metrics.COLOURS``).
CMAPS = {"loss": LOSS_CMAP, "accuracy": ACC_CMAP, "plain": LOSS_CMAP}


RC = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.8,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable in a paper's figure
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "image.interpolation": "nearest",
}


def wrap(label: str | None, width: int = 24) -> str:
    """Wraps a long label at its parenthesis or at word breaks, onto two lines at most."""
    if not label or len(label) <= width:
        return label or ""
    head, sep, tail = label.partition(" (")
    if sep and 4 <= len(head) <= width and len(tail) < width:  # "x" alone on a line reads as a stray letter
        return f"{head}\n({tail}"
    lines = textwrap.wrap(label, width=max(width, (len(label) + 1) // 2 + 2))
    return "\n".join(lines[:2]) + (" …" if len(lines) > 2 else "")


class NotebookFigure(Figure):
    """A Figure that shows itself in a notebook (``_repr_png_``), whatever the kernel's backend.

    Where IPython's inline backend is active its own Figure formatter answers first (the
    same PNG); elsewhere (a fresh kernel, no ``%matplotlib``) this one does.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=min(self.dpi, 110), facecolor="white")
        return buffer.getvalue()


def new_figure(size: tuple[float, float], dpi: int, layout: str | None = "constrained") -> Figure:
    return NotebookFigure(figsize=size, dpi=dpi, layout=layout)


def note_masked(fig: Figure, count: int, total: int, what: str = "non-finite") -> None:
    if count:
        fig.supxlabel(
            f"{count} of {total} points {what} (masked)", fontsize=7.5, color="0.35", ha="right", x=0.99
        )


#: Per format, the metadata that keeps a file's bytes a function of its data alone.
_METADATA: dict[str, dict[str, object]] = {
    "pdf": {"Creator": "landscape", "CreationDate": None},
    "png": {"Software": "landscape"},
    "svg": {"Creator": "landscape", "Date": None},
    "ps": {"Creator": "landscape", "CreationDate": None},
    "eps": {"Creator": "landscape", "CreationDate": None},
}


def save(fig: Figure, out_dir: Path, stem: str, options: PlotOptions) -> list[Path]:
    """The one figure saver (a surface's and a series' figures): ``<stem>.<fmt>`` for each of
    ``options.formats``, at ``options.dpi``, reproducible: no creation date in a PDF, no
    matplotlib version in a PNG, so the same data give the same bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in options.formats:
        target = out_dir / f"{stem}.{fmt}"
        # matplotlib's SVG ids are random unless salted, and its SVG/PS carry a date unless told not to.
        with matplotlib.rc_context({"svg.hashsalt": stem}):
            fig.savefig(target, format=fmt, dpi=options.dpi, metadata=_METADATA.get(fmt), facecolor="white")
        written.append(target)
    fig.clear()
    return written


def outside_figure(fig: Figure, margin: float = 1.0) -> list[str]:
    """What does not lie wholly inside the (drawn) figure: each axes with its labels and tick
    labels (those drawn), and the figure's own texts. The check behind ``draw2d.fit_3d`` and its test."""
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    parts = [(f"axes {k}", ax.get_tightbbox(renderer)) for k, ax in enumerate(fig.axes)]
    parts += [(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts
              if t.get_visible() and t.get_text().strip()]
    parts += [(t.get_text(), t.get_window_extent(renderer)) for t in (fig._suptitle, fig._supxlabel)
              if t is not None and t.get_visible() and t.get_text().strip()]
    return [name for name, ext in parts if ext is not None and (
        ext.x0 < box.x0 - margin or ext.y0 < box.y0 - margin or ext.x1 > box.x1 + margin or ext.y1 > box.y1 + margin)]


def placeholder(fig: Figure, ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def placeholder_figure(size: tuple[float, float], dpi: int, title: str, message: str) -> Figure:
    fig = new_figure(size, dpi)
    ax = fig.add_subplot()
    ax.set_title(title)
    placeholder(fig, ax, message)
    return fig


def line_cmap() -> mcolors.Colormap:
    """viridis without its palest yellow, so the highest lines stay visible on white."""
    base = matplotlib.colormaps[LOSS_CMAP]
    return mcolors.ListedColormap(base(np.linspace(0.0, 0.85, 256)), name="viridis_lines")


def masked_invalid(values: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.masked_invalid(values)


#: The markers, one set for the figures and the viewer (``viewer.py`` hands these colours to
#: ``templates/viewer.js``): θ*, the centre every direction starts from (x = y = 0), a
#: white-edged black plus; a trajectory's path (dark, white-filled points), its start (green
#: square) and its end (vermillion star, the final model).
MARK_COLOURS = {"centre": "#111111", "path": "#222222", "start": "#009E73", "end": "#D55E00", "minimum": "#CC79A7"}
CENTRE_STYLE = {"marker": "P", "color": MARK_COLOURS["centre"], "mec": "white", "mew": 1.0, "ms": 9, "ls": "none"}
PATH_STYLE = {"color": MARK_COLOURS["path"], "lw": 1.3, "marker": "o", "ms": 3.2, "mfc": "white",
              "mec": MARK_COLOURS["path"], "mew": 0.8}
CENTRE_LABEL = "θ*"


def ends_at_centre(path: np.ndarray | None) -> bool:
    """Whether a training path ends at θ* (a PCA plane's centre is the final model): its
    end marker then stands for θ*, and the plus is left out rather than drawn over it."""
    return path is not None and path.ndim == 2 and len(path) > 0 and bool(np.allclose(path[-1], 0.0, atol=1e-9))


def mark_centre_2d(ax, x: np.ndarray, y: np.ndarray, path: np.ndarray | None = None) -> bool:
    """θ* at (0, 0) with its label, when the grid holds it; returns whether it was drawn."""
    if not (x.min() <= 0.0 <= x.max() and y.min() <= 0.0 <= y.max()):
        return False
    if not ends_at_centre(path):
        ax.plot([0.0], [0.0], zorder=6, label=CENTRE_LABEL, **CENTRE_STYLE)
    ax.annotate(CENTRE_LABEL, (0.0, 0.0), textcoords="offset points", xytext=(6, 5), fontsize=9,
                fontweight="bold", color="#111111", zorder=6,
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.7})
    return True


def mark_centre_1d(ax, x: np.ndarray) -> bool:
    """θ* at x = 0: a dotted vertical line labelled at the top, when the curve holds it."""
    if not x.min() <= 0.0 <= x.max():
        return False
    ax.axvline(0.0, color="0.35", lw=0.8, ls=":", zorder=1)
    ax.annotate(CENTRE_LABEL, (0.0, 1.0), xycoords=("data", "axes fraction"), textcoords="offset points",
                xytext=(3, -3), ha="left", va="top", fontsize=9, fontweight="bold", color="#111111",
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.8})
    return True


#: The lowest loss when it is not θ*: a white-edged reddish-purple diamond (Okabe-Ito), labelled "min".
MINIMUM_STYLE = {"marker": "D", "color": MARK_COLOURS["minimum"], "mec": "white", "mew": 0.9, "ms": 7, "ls": "none"}
MINIMUM_LABEL = "min"


def off_centre_minimum(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> tuple[float, float] | None:
    """(x, y) of the lowest finite value when it is not the grid point nearest θ* (0, 0); None otherwise."""
    finite = np.isfinite(values)
    if not finite.any():
        return None
    j, i = np.unravel_index(int(np.argmin(np.where(finite, values, np.inf))), values.shape)
    centre = (int(np.argmin(np.abs(y))), int(np.argmin(np.abs(x))))
    if (j, i) == centre or values[j, i] == values[centre]:  # a tie with θ* is no news
        return None
    return float(x[i]), float(y[j])


def mark_minimum(ax, x: np.ndarray, y: np.ndarray, values: np.ndarray) -> tuple[float, float] | None:
    """Marks the lowest point of a 2-D loss when it is off-centre (the range or resolution may
    be wrong, or θ* is not a minimum); returns where, or None."""
    where = off_centre_minimum(x, y, values)
    if where is None:
        return None
    ax.plot([where[0]], [where[1]], zorder=6, label=MINIMUM_LABEL, **MINIMUM_STYLE)
    ax.annotate(MINIMUM_LABEL, where, textcoords="offset points", xytext=(6, -10), fontsize=8,
                color="#111111", zorder=6, bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none",
                                                 "alpha": 0.7})
    return where


#: An interpolation's α = 1: the second model (the target), dashed, labelled at the top.
TARGET_LABEL = "α = 1"


def mark_target_1d(ax, x: np.ndarray) -> bool:
    """α = 1 on an interpolation, when the curve holds it: where the target model lies."""
    if not x.min() <= 1.0 <= x.max():
        return False
    ax.axvline(1.0, color="0.35", lw=0.8, ls="--", zorder=1, gid="target")
    ax.annotate(TARGET_LABEL, (1.0, 1.0), xycoords=("data", "axes fraction"), textcoords="offset points",
                xytext=(3, -3), ha="left", va="top", fontsize=9, color="#111111",
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.8})
    return True


def labels_inside(fig: Figure, ax, texts: list) -> list:
    """Drops the contour labels that do not lie wholly inside the axes' frame (a label placed on a
    line near the edge is cut by it); returns the labels kept."""
    fig.canvas.draw()  # places the axes (layout) and the labels
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    kept = []
    for text in texts:
        box = text.get_window_extent(renderer)
        if box.x0 >= frame.x0 and box.y0 >= frame.y0 and box.x1 <= frame.x1 and box.y1 <= frame.y1:
            kept.append(text)
        else:
            text.remove()
    return kept
