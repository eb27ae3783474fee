"""The Python API: loss landscapes of an in-memory model, from a notebook.

    from landscape_job import api as ls
    plane = ls.plane(model, {"train": (X, y)}, x="-1:1:21", y="-1:1:21")

The functions live in ``compute`` and the result in ``result``; this face imports them on
first use, so ``import landscape_job.api`` costs nothing until a function is called.
"""

from typing import TYPE_CHECKING

from landscape_job.base.lazy import lazy_names

_LAZY = {**dict.fromkeys(("Curvature", "hessian", "interpolate", "line", "plane", "surface"), "compute"),
         "Landscape": "result"}

if TYPE_CHECKING:  # pragma: no cover
    from landscape_job.api.compute import Curvature, hessian, interpolate, line, plane, surface
    from landscape_job.api.result import Landscape

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
