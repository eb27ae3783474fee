"""The Python API: loss landscapes of an in-memory model, from a notebook.

    from landscape_job import api as ls
    plane = ls.plane(model, {"train": (X, y)}, x="-1:1:21", y="-1:1:21")

The functions live in ``compute`` and the result in ``result``; this face imports them on
first use, so ``import landscape_job.api`` costs nothing until a function is called.
"""

from typing import TYPE_CHECKING

from landscape_job.base.lazy import lazy_names

_LAZY = {**dict.fromkeys(("hessian", "interpolate", "line", "plane", "surface"), "compute"),
         **dict.fromkeys(("Landscape", "Series"), "result"), **dict.fromkeys(("Curvature", "Density"), "curvature"),
         "compare": "compare"}

if TYPE_CHECKING:  # pragma: no cover
    from landscape_job.api.compare import compare
    from landscape_job.api.compute import hessian, interpolate, line, plane, surface
    from landscape_job.api.curvature import Curvature, Density
    from landscape_job.api.result import Landscape, Series

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
