"""What the Python API returns: a surface in memory, its arrays with their coordinates.

A ``Landscape`` holds the bytes of the very ``surface.h5`` a run's merge writes (the
paper's layout, with provenance attributes), read back with ``surface.surface_from_bytes``;
so ``save`` gives the file the CLI would, and ``plot`` draws the figures the merge stage
draws, as matplotlib figures instead of files. A run pulled from storage
(``launcher.api``) comes back as one too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape_job.surface.file import Surface, surface_from_bytes

__all__ = ["Landscape"]


@dataclass(frozen=True)
class Landscape:
    """A loss surface (2-D) or curve (1-D): ``x``, ``y`` and one array per metric.

    ``values["train_loss"]`` (or ``landscape["train_loss"]``) is ``(ny, nx)`` on a plane
    with ``Z[j, i] = f(x[i], y[j])``, ``(nx,)`` on a line. ``attrs`` is the file's
    provenance (spec hash, direction hash, precision, ...); ``hessian`` the Hessian at θ*
    (sharpness, λmin, trace) when it was computed.
    """

    surface: Surface
    data: bytes = field(repr=False)
    hessian: dict[str, Any] | None = None

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "surface.h5", hessian: dict[str, Any] | None = None) -> Landscape:
        return cls(surface=surface_from_bytes(data, name), data=data, hessian=hessian)

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

    def plot(self, options: Any = None, **settings: Any) -> dict[str, Any]:
        """The figures a run's merge draws, as ``{stem: matplotlib Figure}`` (``train_loss_2d_contour``, ``1d_loss``, ...).

        ``options`` is a ``plots.PlotOptions``, or give its fields as keywords
        (``vmin=0, vmax=5, vlevel=0.25, log=True``); nothing is written to disk.
        """
        import matplotlib

        from landscape_job.plots import PlotOptions
        from landscape_job.plots.figures import figures
        from landscape_job.plots.style import RC

        chosen = options if options is not None else PlotOptions(**settings)
        with matplotlib.rc_context(RC):
            return dict(figures(self.surface, chosen))
