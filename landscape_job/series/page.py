"""``series.html``: a series file in one self-contained page (no server, no CDN, opens from ``file://``).

A switch chooses the quantity drawn over the steps: the loss and accuracy of each split,
the top-k eigenvalues with the threshold (2 + 2β)/η, λmin, the gradient's norm and
top-k share, the tail index α and the noise norm (whatever the file holds). A second
switch shows the eigenvalue spectrum at any step. The page is ``templates/series.html`` with
its script ``templates/series.js`` and the data (JSON, non-finite values as null) inlined
by ``outputs.pages.inline_page``, as the surface's viewer is.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from landscape_job.outputs.pages import inline_page
from landscape_job.series.file import Series
from landscape_job.spec.series_metrics import registered

def _jsonable(values: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] if np.ndim(row) else
            (None if not np.isfinite(row) else float(row)) for row in values]


def series_payload(series: Series) -> dict:
    """The page's data: steps, threshold, and each dataset with its registry label."""
    labels = {}
    for metric in registered():
        for name in metric.dataset_names():
            labels[name] = (f"{name.split('_')[0]} {metric.label}" if metric.shape == "split" else metric.label) \
                + (f" ({metric.unit})" if metric.unit else "")
    # The sharpness first (what a series is for), then the registry's order, then fields no metric declares.
    order = ["top_eigenvalues", *labels, *sorted(series.data)]
    # The density's nodes and weights are a figure of their own (series_density), not curves over the steps.
    hidden = {n for m in registered() if m.shape == "density" for n in m.dataset_names()}
    names = [n for n in dict.fromkeys(order) if n in series.data and n not in hidden]
    fields = {name: {"label": labels.get(name, name), "columns": series.data[name].ndim == 2,
                     "values": _jsonable(series.data[name])} for name in names}
    momentum = float(series.attrs.get("momentum", 0.0) or 0.0)
    return {"steps": [int(s) for s in series.steps], "threshold": series.threshold, "fields": fields,
            "threshold_label": ("2/η" if momentum == 0 else "(2+2β)/η") + f" = {series.threshold:.4g}"}


def series_html(series: Series) -> str:
    title = html.escape(f"{series.attrs.get('name', 'series')}: series over {len(series.steps)} checkpoints")
    return inline_page("landscape_job.series", "series", series_payload(series), {"__TITLE__": title})


def write_series_html(series: Series, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(series_html(series), encoding="utf-8")
    return path
