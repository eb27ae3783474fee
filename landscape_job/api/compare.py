"""``ls.compare``: several runs in one figure, as papers draw them (seeds, optimisers, SAM vs SGD).

    ls.compare([sgd, sam], labels=["SGD", "SAM"])           # 2-D: side-by-side panels, one colour scale
    ls.compare([seed0, seed1, seed2])                       # 1-D: every curve on one axis
    ls.compare(["a/surface.h5", "b/surface.h5"], page="compare.html")   # and the comparison page

The figure is ``plots.compare.compare_figure`` (``launcher plot a.h5 b.h5 --overlay``
draws the same); the page is ``outputs.viewer.compare_html``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

from landscape_job.api.result import Landscape
from landscape_job.base.errors import UserError
from landscape_job.surface.file import Surface, load_surface

__all__ = ["compare"]

Run = Union[Landscape, Surface, str, os.PathLike]


def _surface(run: Run, index: int) -> Surface:
    if isinstance(run, Landscape):
        return run.surface
    if isinstance(run, Surface):
        return run
    if isinstance(run, (str, os.PathLike)):
        return load_surface(run)
    raise UserError(f"compare: run {index + 1} is a {type(run).__name__}; give Landscapes or surface.h5 paths")


def compare(runs: Sequence[Run], labels: Sequence[str] | None = None, metric: str | None = None, *,
            page: str | os.PathLike | None = None, **settings: Any):
    """The comparison figure of ``runs`` (Landscapes or surface files; all 1-D or all 2-D).

    ``metric``: a dataset (``train_loss``, ``test_acc``, ...; default: both splits' loss on
    curves, ``train_loss`` on planes). ``labels``: one per run (default: each run's title
    or name, made distinct). ``settings`` are ``PlotOptions`` fields (``vmin``, ``vmax``,
    ``log``, ``title``, ``dpi``) and apply to all runs alike. ``page``: also write the
    comparison page (self-contained HTML) there.
    """
    from landscape_job.plots import PlotOptions
    from landscape_job.plots.compare import compare_figure

    surfaces = [_surface(r, i) for i, r in enumerate(runs)]
    options = PlotOptions(**settings)
    figure = compare_figure(surfaces, labels, metric, options)
    if page is not None:
        from landscape_job.outputs.viewer import compare_html, compare_payload

        Path(page).write_text(compare_html(compare_payload(surfaces, list(labels) if labels else None, metric,
                                                           options)), encoding="utf-8")
    return figure
