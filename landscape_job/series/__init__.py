"""A series: loss, accuracy and curvature per checkpoint of a training run. Everything of it
but its spec section and metric vocabulary (in ``spec``): the worker, the probe, the file,
its figures and page, and its prepare and merge steps.

The face names the file's reader, imported on first use (no torch).
"""

from typing import TYPE_CHECKING

from landscape_job.base.lazy import lazy_names

_LAZY = {name: "file" for name in ("Series", "load_series")}

if TYPE_CHECKING:  # pragma: no cover
    from landscape_job.series.file import Series, load_series

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
