"""A surface: evaluating a model at the points of a grid around θ* (the evaluator, the data
feed, the centre, directions and their builders, PCA, Hessian and curvature probes) and the
surface file it ends in.

The face names the file's reader, imported on first use (``load_surface`` needs no torch).
"""

from typing import TYPE_CHECKING

from landscape_job.base.lazy import lazy_names

_LAZY = {name: "file" for name in ("Surface", "load_surface", "surface_from_bytes")}

if TYPE_CHECKING:  # pragma: no cover
    from landscape_job.surface.file import Surface, load_surface, surface_from_bytes

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
