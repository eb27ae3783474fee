"""What the Python API returns: a surface in memory, its arrays with their coordinates.

A ``Landscape`` holds the bytes of the very ``surface.h5`` a run's merge writes (the
paper's layout, with provenance attributes), read back with ``surface.surface_from_bytes``;
so ``save`` gives the file the CLI would, and ``plot`` draws the figures the merge stage
draws, as matplotlib figures instead of files. A run pulled from storage
(``launcher.api``) comes back as one too. ``Series`` is a series run's ``series.h5`` the same way.

In a notebook both show themselves: a cell ending in one shows a summary and the
self-contained viewer (``surface.html``, the series page) inline (``_repr_html_``); a
cell ending in ``.plot()`` shows every figure; ``.show()`` does the same from anywhere
in a cell, or opens the viewer in a browser outside a notebook.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from landscape_job.api.display import Figures, in_kernel
from landscape_job.surface.file import Surface, surface_from_bytes

__all__ = ["Landscape", "Series"]

#: The viewer's height inline in a notebook (pixels).
VIEWER_HEIGHT = 620


def _table(rows: list[tuple[str, str]]) -> str:
    import html

    return "<table>" + "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                               f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _inline_page(page: str) -> str:
    """A self-contained page in an iframe (its script and styles stay out of the notebook's)."""
    import html

    return (f"<iframe srcdoc=\"{html.escape(page, quote=True)}\" style='width:100%;height:{VIEWER_HEIGHT}px;"
            "border:1px solid #ddd' sandbox='allow-scripts'></iframe>")


def _open_page(page: str, name: str) -> Path:
    """Outside a notebook: the page in a temporary file, opened in the browser; returns its path."""
    import tempfile
    import webbrowser

    path = Path(tempfile.mkdtemp(prefix="landscape-view-")) / name
    path.write_text(page, encoding="utf-8")
    webbrowser.open(path.as_uri())
    return path


def _range(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    return f"{finite.min():.4g} … {finite.max():.4g}" if finite.size else "no finite values"


@dataclass(frozen=True)
class Landscape:
    """A loss surface (2-D) or curve (1-D): ``x``, ``y`` and one array per metric.

    ``values["train_loss"]`` (or ``landscape["train_loss"]``) is ``(ny, nx)`` on a plane
    with ``Z[j, i] = f(x[i], y[j])``, ``(nx,)`` on a line. ``attrs`` is the file's
    provenance (spec hash, direction hash, precision, ...); ``hessian`` the Hessian at θ*
    (sharpness, λmin, trace) when it was computed.
    """

    surface: Surface
    hessian: dict[str, Any] | None = None
    #: ``surface.h5``'s bytes as read, or (a surface the API computed) their writer, called on first use
    #: of ``data``: a plane that is never saved imports no h5py.
    _file: bytes | Callable[[], bytes] = field(default=b"", repr=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "surface.h5", hessian: dict[str, Any] | None = None) -> Landscape:
        return cls(surface=surface_from_bytes(data, name), hessian=hessian, _file=data)

    @functools.cached_property
    def data(self) -> bytes:
        """The ``surface.h5`` file's bytes, exactly as a run's merge writes them (written on first use)."""
        return self._file if isinstance(self._file, bytes) else self._file()

    @classmethod
    def load(cls, path: str | os.PathLike) -> Landscape:
        """A surface file from disk (``launcher pull``'s, or one the paper's code wrote)."""
        p = Path(path)
        return cls.from_bytes(p.read_bytes(), str(p))

    @property
    def x(self) -> np.ndarray:
        return self.surface.x

    @property
    def y(self) -> np.ndarray | None:
        return self.surface.y

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Every metric's array, by its name in the file (``train_loss``, ``test_acc``, ``max_eig``, ...)."""
        return self.surface.metrics

    @property
    def attrs(self) -> dict[str, str]:
        return self.surface.attrs

    @property
    def is_2d(self) -> bool:
        return self.surface.is_2d

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise KeyError(f"{name!r}: this surface has {', '.join(self.values)}")
        return self.values[name]

    def __repr__(self) -> str:
        shape = f"{len(self.x)}x{len(self.y)}" if self.y is not None else f"{len(self.x)} points"
        return f"Landscape({shape}: {', '.join(self.values)})"

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the surface file (the paper's layout; ``launcher plot`` and the paper's tools read it)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(self.data)
        return p

    def plot(self, options: Any = None, **settings: Any) -> Figures:
        """The figures a run's merge draws, as ``{stem: matplotlib Figure}`` (``train_loss_2d_contour``, ``1d_loss``, ...).

        ``options`` is a ``plots.PlotOptions``, or give its fields as keywords
        (``vmin=0, vmax=5, vlevel=0.25, log=True``); nothing is written to disk. The dict
        shows as its figures in a notebook; each figure shows inline on its own too.
        """
        import matplotlib

        from landscape_job.plots import PlotOptions
        from landscape_job.plots.figures import figures
        from landscape_job.plots.style import RC

        chosen = options if options is not None else PlotOptions(**settings)
        with matplotlib.rc_context(RC):
            return Figures(figures(self.surface, chosen))

    def summary(self) -> list[tuple[str, str]]:
        """(what, value) rows: the grid, each metric's range, the directions, the run's hashes."""
        shape = f"{len(self.x)} × {len(self.y)} plane" if self.y is not None else f"{len(self.x)}-point line"
        rows = [("grid", shape), ("directions", str(self.attrs.get("direction_type", "—")))]
        rows += [(name, _range(values)) for name, values in self.values.items()]
        if self.hessian:
            rows.append(("sharpness at θ*", f"{self.hessian.get('max_eig', float('nan')):.4g}"))
        rows += [(k, str(self.attrs[k])[:16]) for k in ("spec_hash", "direction_hash") if k in self.attrs]
        return rows

    def viewer_html(self) -> str:
        """The self-contained viewer page (``surface.html``) of this surface."""
        from landscape_job.outputs.viewer import read_extras, viewer_html, viewer_payload

        return viewer_html(viewer_payload(self.surface, read_extras(self.surface)))

    def _repr_html_(self) -> str:
        return f"<div><b>{self!r}</b>{_table(self.summary())}{_inline_page(self.viewer_html())}</div>"

    def show(self) -> Path | None:
        """In a notebook: the summary, the viewer and the figures, wherever in the cell; elsewhere the
        viewer in a browser (returns the page's path)."""
        if in_kernel():
            from IPython.display import display

            display(self, self.plot())
            return None
        return _open_page(self.viewer_html(), "surface.html")


@dataclass(frozen=True)
class Series:
    """A series run's ``series.h5``: per checkpoint the loss, the top of the Hessian's spectrum, the
    gradient, the tail index, the eigenvalue density (``data[name]``, ``steps``)."""

    series: Any  # landscape_job.series.file.Series
    name: str = "series.h5"

    @classmethod
    def load(cls, path: str | os.PathLike) -> Series:
        from landscape_job.series.file import load_series

        return cls(load_series(path), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "series.h5") -> Series:
        """A series run's ``series.h5`` as read from its storage (``launcher.api.Run.pull``)."""
        from landscape_job.series.file import series_from_bytes

        return cls(series_from_bytes(data, name), name)

    @property
    def steps(self) -> np.ndarray:
        return self.series.steps

    @property
    def data(self) -> dict[str, np.ndarray]:
        return self.series.data

    @property
    def attrs(self) -> dict[str, object]:
        return self.series.attrs

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.data:
            raise KeyError(f"{name!r}: this series has {', '.join(self.data)}")
        return self.data[name]

    def __repr__(self) -> str:
        return f"Series({len(self.steps)} checkpoints: {', '.join(self.data)})"

    def plot(self) -> Figures:
        """The series figures a merge draws (sharpness flow, spectrum, tail index, density, ...), by stem."""
        import json

        from landscape_job.series import figures as f

        s, plot_steps = self.series, list(json.loads(str(self.attrs.get("plot_steps", "[]"))))
        out = Figures()
        if s.has("top_eigenvalues"):
            out["series_sharpness_flow"] = f.sharpness_flow(s)
            out["series_spectrum"] = f.spectrum_figure(s, plot_steps)
        if s.has("tail_index"):
            out["series_tail_index"] = f.tail_index_figure(s)
        if s.has("top_k_share"):
            out["series_gradient_share"] = f.gradient_share_figure(s)
        if s.has("density_nodes"):
            out["series_density"] = f.density_flow(s)
            out["series_density_steps"] = f.density_steps_figure(s, plot_steps)
        if s.has("trace"):
            out["series_trace"] = f.trace_figure(s)
        return out

    def summary(self) -> list[tuple[str, str]]:
        steps = self.steps
        rows = [("checkpoints", f"{len(steps)} (steps {int(steps[0])} … {int(steps[-1])})" if len(steps) else "0")]
        rows += [(name, _range(values)) for name, values in self.data.items() if values.ndim == 1]
        if "hessian_ignore" in self.attrs:
            rows.append(("Hessian over", f"hessian.ignore: {self.attrs['hessian_ignore']}"))
        return rows

    def viewer_html(self) -> str:
        from landscape_job.series.page import series_html

        return series_html(self.series)

    def _repr_html_(self) -> str:
        return f"<div><b>{self!r}</b>{_table(self.summary())}{_inline_page(self.viewer_html())}</div>"

    def show(self) -> Path | None:
        if in_kernel():
            from IPython.display import display

            display(self, self.plot())
            return None
        return _open_page(self.viewer_html(), "series.html")
