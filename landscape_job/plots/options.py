"""How the plots are drawn (``PlotOptions``), checked in one place.

The spec's ``plot:`` section (merge) and ``launcher plot``'s flags of the same names
both become a ``PlotOptions`` through ``PlotOptions.from_spec``, so the rules on
vmin/vmax/vlevel/log/title, formats and dpi, and their messages, are written once: here.
No matplotlib: the launcher can check options without loading it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

from landscape_job.base.errors import UserError
from landscape_job.spec.outputs import FIGURE_FORMATS
from landscape_job.plots.levels import spans_decades
from landscape_job.spec.titles import checked_title

__all__ = ["SUPPORTED_FORMATS", "PlotSettings", "PlotOptions"]

#: Output formats accepted in ``PlotOptions.formats`` (all vector or lossless; named in ``outputs``).
SUPPORTED_FORMATS = FIGURE_FORMATS


class PlotSettings(Protocol):
    """The spec's ``plot`` section (``spec.PlotSpec``), or the launcher's parsed flags of the same names."""

    vmin: float | None
    vmax: float | None
    vlevel: float | None
    log: bool | None
    title: str | None


@dataclass(frozen=True)
class PlotOptions:
    """How to draw the plots; see the module docstring for the defaults.

    With ``log`` the loss is drawn as log10(loss): ``vmin`` and ``vmax`` stay in loss
    units (and must be positive), ``vlevel`` is then a spacing in decades. ``log`` None
    (the default) decides once per surface from every split's loss (``log_for``, called with
    ``fields.all_losses``); the 3-D surface then stays linear. ``title`` replaces the subject
    of every figure's title ("train loss — <title>"; default: the run's model and data).
    """

    vmin: float | None = None
    vmax: float | None = None
    vlevel: float | None = None
    log: bool | None = None
    formats: tuple[str, ...] = ("png", "pdf")
    dpi: int = 150
    title: str | None = None
    #: A ``vlevel`` that would draw more than ``levels.MAX_LEVELS`` levels over the data's range is
    #: widened to a multiple of itself (merge: a run never fails after its compute for a plot value)
    #: instead of refused (``launcher plot``, the API: the user is there to choose another).
    coarsen: bool = False

    @classmethod
    def from_spec(cls, plot: PlotSettings, formats: Iterable[str] | None = None) -> "PlotOptions":
        """The options of a spec's ``plot`` section (or of ``launcher plot``'s flags), checked;
        ``formats`` None keeps the default figure formats."""
        return cls(vmin=plot.vmin, vmax=plot.vmax, vlevel=plot.vlevel, log=plot.log, title=plot.title,
                   **({"formats": tuple(formats)} if formats is not None else {}))

    def log_for(self, loss: np.ndarray) -> bool:
        """Whether this loss array is drawn in log10: as ``log`` says, or with ``log`` unset,
        when no linear ``vlevel`` is given and its range spans decades (``levels.spans_decades``)."""
        if self.log is not None:
            return self.log
        return self.vlevel is None and spans_decades(loss, self.vmin, self.vmax)

    def __post_init__(self) -> None:
        for key in ("vmin", "vmax", "vlevel"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise UserError(f"plot.{key}: expected a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise UserError(f"plot.{key}: must be a finite number, got {value!r}")
            object.__setattr__(self, key, float(value))
        if self.vmin is not None and self.vmax is not None and self.vmin >= self.vmax:
            raise UserError(f"plot.vmin: must be below plot.vmax ({self.vmin:g} >= {self.vmax:g})")
        if self.vlevel is not None and self.vlevel <= 0:
            raise UserError(f"plot.vlevel: must be positive, got {self.vlevel:g}")
        if self.log is not None and not isinstance(self.log, (bool, np.bool_)):
            raise UserError(f"plot.log: expected true, false or null (log where the loss spans decades), "
                            f"got {self.log!r}")
        object.__setattr__(self, "log", None if self.log is None else bool(self.log))
        object.__setattr__(self, "title", checked_title(self.title))
        if self.log:
            for key in ("vmin", "vmax"):
                value = getattr(self, key)
                if value is not None and value <= 0:
                    raise UserError(
                        f"plot.{key}: must be positive with plot.log (log10 of the loss), got {value:g}"
                    )
        if isinstance(self.dpi, bool) or not isinstance(self.dpi, (int, np.integer)):
            raise UserError(f"plot.dpi: expected an integer, got {self.dpi!r}")
        if not 10 <= int(self.dpi) <= 1200:
            raise UserError(f"plot.dpi: must be between 10 and 1200, got {self.dpi}")
        object.__setattr__(self, "dpi", int(self.dpi))
        formats: Iterable[object] = (self.formats,) if isinstance(self.formats, str) else self.formats
        try:
            formats = tuple(formats)
        except TypeError:
            raise UserError(f"plot.formats: expected a list of formats, got {self.formats!r}") from None
        normalised: list[str] = []
        for fmt in formats:
            if not isinstance(fmt, str):
                raise UserError(f"plot.formats: expected format names, got {fmt!r}")
            name = fmt.strip().lower().lstrip(".")
            if name not in SUPPORTED_FORMATS:
                raise UserError(
                    f"plot.formats: unknown format {fmt!r}; choose from {', '.join(SUPPORTED_FORMATS)}"
                )
            if name not in normalised:
                normalised.append(name)
        if not normalised:
            raise UserError(f"plot.formats: name at least one of {', '.join(SUPPORTED_FORMATS)}")
        object.__setattr__(self, "formats", tuple(normalised))
