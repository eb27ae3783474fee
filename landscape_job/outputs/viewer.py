"""``surface.html``: one self-contained page to turn a loss surface in a browser.

No server, no CDN, no WebGL: the page is the template ``templates/viewer.html`` with the
hand-written script ``templates/viewer.js`` and the surface data (JSON) inlined, so it
opens from ``file://`` offline and in a headless browser without a GPU. Python does the
numerics the page would otherwise duplicate: colour ranges and contour levels come from
``plots.levels`` (the PNGs and the page agree), colour maps are matplotlib's, sampled.

Which fields the page switches between comes from the metric registry: every per-split
metric (loss, accuracy, any registered one) and every field the registry does not know,
with the registry's label, unit and colour kind; the Hessian's eigenvalues are shown as
their ratio |λmin/λmax|, as in the paper's convexity maps.

Large grids are subsampled to at most ``MAX_VIEWER_POINTS`` per axis (the page says so):
a 4096^2 grid would make a page of hundreds of megabytes.

The page draws what the PNGs draw, with their colours (``plots.style.MARK_COLOURS``): θ*
at (0, 0), a trajectory's path, start and end, and on a 1-D interpolation each split's
barrier (``interpolation.curve_summary``, computed here on the full curve). A 1-D page
shows the train and test curves together; its log switch starts as ``plot.log`` decides
for the train loss (``PlotOptions.log_for``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps

from landscape_job.base.errors import UserError
from landscape_job.outputs.pages import inline_page
from landscape_job.surface.interpolation import curve_summary
from landscape_job.spec.metrics import SPLITS, Field
from landscape_job.plots.fields import all_losses
from landscape_job.plots.levels import contour_levels, convexity_ratio, curve_top, log_contour_levels, loss_range
from landscape_job.plots.options import PlotOptions
from landscape_job.plots.style import MARK_COLOURS, SPLIT_COLOURS
from landscape_job.surface.file import Surface
from landscape_job.spec.titles import subject

__all__ = ["Trajectory", "Extras", "read_extras", "viewer_payload", "viewer_html", "write_viewer",
           "MAX_VIEWER_POINTS"]

#: Points per axis the page carries at most (every k-th point beyond).
MAX_VIEWER_POINTS = 201
#: Entries of each colour map table.
_CMAP_SIZE = 64
_CMAPS = {"loss": "viridis", "acc": "magma", "plain": "viridis", "hessian": "plasma"}
#: The page's field kind of each of the registry's colour kinds ("loss" alone has a log scale).
_KINDS = {"loss": "loss", "accuracy": "acc", "plain": "plain"}
#: The Hessian's extremes, shown together as their ratio.
_EIGENVALUES = ("max_eig", "min_eig")


@dataclass(frozen=True)
class Trajectory:
    """Checkpoints of a training run projected on the surface's plane (in trajectory order)."""

    x: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    explained_variance: tuple[float, ...] = ()


@dataclass(frozen=True)
class Extras:
    """Optional surface data: Hessian eigenvalue fields (surface shape) and a trajectory."""

    hessian: dict[str, np.ndarray] = field(default_factory=dict)
    trajectory: Trajectory | None = None


def read_extras(surface: Surface) -> Extras:
    """The Hessian fields and the trajectory of a loaded surface, in the form the viewer draws.

    ``load_surface`` has already read and checked them (shapes, non-finite values, the
    trajectory's arrays and attributes); this only pairs them up for the exports.
    """
    hessian = {name: surface.metrics[name] for name in _EIGENVALUES if name in surface.metrics}
    if len(hessian) == 1:
        raise UserError(f"{surface.path}: has '{next(iter(hessian))}' without its partner; "
                        f"expected both max_eig and min_eig")
    trajectory = None
    if surface.is_2d and surface.trajectory is not None:
        points = surface.trajectory
        names = surface.trajectory_names or tuple(str(k) for k in range(len(points)))
        if len(names) != len(points):
            raise UserError(f"{surface.path}: attribute 'trajectory_names' has {len(names)} names "
                            f"for {len(points)} trajectory points")
        trajectory = Trajectory(x=points[:, 0], y=points[:, 1], names=names,
                                explained_variance=surface.explained_variance or ())
    return Extras(hessian=hessian, trajectory=trajectory)


def _stride(n: int) -> int:
    return max(1, math.ceil((n - 1) / (MAX_VIEWER_POINTS - 1))) if n > MAX_VIEWER_POINTS else 1


def _pick(n: int, step: int) -> np.ndarray:
    """Every step-th index, always keeping the last (the grid's edge)."""
    idx = np.arange(0, n, step)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _json_values(values: np.ndarray) -> list:
    """Nested lists with 7 significant digits, None for non-finite (JSON has no NaN)."""
    rounded = np.where(np.isfinite(values), values, np.nan)
    if rounded.ndim == 2:
        return [_json_values(row) for row in rounded]
    return [None if not math.isfinite(v) else float(f"{v:.7g}") for v in rounded.tolist()]


def _range_levels(lo: float, hi: float, *, log: bool, options: PlotOptions | None) -> dict[str, Any]:
    if options is not None and log and options.vlevel is None:
        levels = log_contour_levels(lo, hi)
    else:
        vlevel = options.vlevel if options is not None else None
        anchor = None
        if options is not None and options.vmin is not None:
            anchor = math.log10(options.vmin) if log else options.vmin
        levels = contour_levels(lo, hi, vlevel, anchor=anchor, coarsen=options is not None and options.coarsen)
    return {"lo": lo, "hi": hi, "levels": [float(v) for v in levels]}


def _plain_range(values: np.ndarray, top: float | None = None) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max()) if top is None else min(float(finite.max()), top)
    if not hi > lo:
        pad = max(abs(lo) * 0.05, 1e-3)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _scales(values: np.ndarray, kind: str, options: PlotOptions, is_2d: bool) -> dict[str, Any]:
    """Colour (2-D) or axis (1-D) ranges in plot units: ``linear`` and, for a loss, ``log``."""
    scales: dict[str, Any] = {}
    if kind == "loss":
        for log in (False, True):
            if is_2d:
                rng = loss_range(values, options.vmin, options.vmax, log=log)
            else:
                positive = values[np.isfinite(values) & (values > 0)] if log else values[np.isfinite(values)]
                rng = None if positive.size == 0 else _plain_range(
                    np.log10(positive) if log else positive, None if log else curve_top(values))
            if rng is not None:
                scales["log" if log else "linear"] = _range_levels(*rng, log=log, options=options)
    else:
        finite = values[np.isfinite(values)]
        top = 1.0 if kind == "hessian" and finite.size and finite.min() < 1.0 else None
        rng = _plain_range(values, top)
        if rng is not None:
            scales["linear"] = _range_levels(*rng, log=False, options=None)
    return scales


def _field(name: str, label: str, kind: str, split: str | None, values: np.ndarray, options: PlotOptions,
           is_2d: bool, unit: str = "") -> dict[str, Any]:
    return {"name": name, "label": label, "kind": kind, "split": split, "unit": unit, "cmap": _CMAPS[kind],
            "values": _json_values(values), "scales": _scales(values, kind, options, is_2d),
            "nonfinite": int((~np.isfinite(values)).sum())}


def _switchable(described: Field) -> bool:
    """Whether the page offers the field itself: not the eigenvalues (shown as their ratio)."""
    return not (described.known and described.name in _EIGENVALUES)


def viewer_payload(surface: Surface, extras: Extras = Extras(), options: PlotOptions = PlotOptions()) -> dict:
    """The JSON the page draws: coordinates, one entry per field, colour maps, trajectory."""
    sx = _stride(len(surface.x))
    ix = _pick(len(surface.x), sx)
    x = surface.x[ix]
    if surface.is_2d:
        assert surface.y is not None
        sy = _stride(len(surface.y))
        iy = _pick(len(surface.y), sy)
        y: np.ndarray | None = surface.y[iy]

        def sub(v: np.ndarray) -> np.ndarray:
            return v[np.ix_(iy, ix)]
    else:
        sy, y = 1, None

        def sub(v: np.ndarray) -> np.ndarray:
            return v[ix]

    fields: dict[str, Any] = {}
    for described in surface.fields():
        if not _switchable(described):
            continue
        metric = described.metric
        fields[described.name] = _field(described.name, described.title, _KINDS[metric.colours], described.split,
                                        sub(surface.metrics[described.name]), options, surface.is_2d,
                                        unit=metric.unit)
    if extras.hessian:
        ratio = convexity_ratio(extras.hessian["max_eig"], extras.hessian["min_eig"])
        fields["hessian_ratio"] = _field("hessian_ratio", "|λmin/λmax|", "hessian", None, sub(ratio), options,
                                         surface.is_2d)
    trajectory = None
    if extras.trajectory is not None:
        t = extras.trajectory
        trajectory = {"x": _json_values(t.x), "y": _json_values(t.y), "names": list(t.names),
                      "explained_variance": list(t.explained_variance)}
    attrs = surface.attrs
    loss = all_losses(surface)
    title = options.title or attrs.get("title") or attrs.get("name") or surface.path.stem
    about = subject({k: v for k, v in attrs.items() if k != "title"})
    return {
        "title": title,
        "subtitle": "" if about == title else about,
        "dims": 2 if surface.is_2d else 1,
        "x": _json_values(x), "y": None if y is None else _json_values(y),
        "xlabel": surface.xlabel, "ylabel": surface.ylabel,
        "full_shape": [len(surface.x)] + ([len(surface.y)] if surface.y is not None else []),
        "stride": [sx, sy],
        "log": options.log_for(loss),
        "fields": fields,
        "trajectory": trajectory,
        "barriers": _barriers(surface),
        "colours": {**MARK_COLOURS, **SPLIT_COLOURS},
        "colormaps": {name: [[round(c * 255) for c in rgba[:3]] for rgba in
                             colormaps[name](np.linspace(0.0, 1.0, _CMAP_SIZE)).tolist()]
                      for name in sorted(set(_CMAPS.values()))},
    }


def _barriers(surface: Surface) -> dict[str, dict[str, float]]:
    """Each split's loss barrier on a 1-D interpolation (as the PNG marks it): α, top, height."""
    if surface.is_2d or surface.attrs.get("direction_type") != "interpolate":
        return {}
    out = {}
    for split in SPLITS:
        values = surface.metrics.get(f"{split}_loss")
        summary = None if values is None else curve_summary(surface.x, values)
        if summary is not None and summary["barrier_alpha"] is not None:
            out[split] = {"alpha": float(summary["barrier_alpha"]), "top": float(summary["max_loss"]),
                          "height": float(summary["barrier_height"])}
    return out


def viewer_html(payload: dict) -> str:
    """The page with script and data inlined (``outputs.pages``)."""
    return inline_page("landscape_job.outputs", "viewer", payload)


def write_viewer(path: str | Path, surface: Surface, extras: Extras = Extras(),
                 options: PlotOptions = PlotOptions()) -> Path:
    """Writes the page for a loaded surface; returns the path."""
    out = Path(path)
    out.write_text(viewer_html(viewer_payload(surface, extras, options)), encoding="utf-8")
    return out


def compare_payload(surfaces: list[Surface], labels: list[str] | None = None, metric: str | None = None,
                    options: PlotOptions = PlotOptions()) -> dict:
    """The comparison page's JSON: each run's values on the shared scale (``plots.compare``'s)."""
    from landscape_job.plots.compare import RUN_COLOURS, compare_check, default_metric, run_labels, shared_fields

    metric = metric or default_metric(surfaces)
    compare_check(surfaces, metric)
    names = run_labels(surfaces, labels)
    payload: dict[str, Any] = {"title": options.title or f"{metric.replace('_', ' ')}: {len(surfaces)} runs",
                               "dims": 2 if surfaces[0].is_2d else 1, "metric": metric,
                               "xlabel": surfaces[0].xlabel}
    if surfaces[0].is_2d:
        metric = "train_loss" if metric == "loss" else metric
        fields = shared_fields(surfaces, metric, options)
        runs = []
        for surface, field, name in zip(surfaces, fields, names):
            ix, iy = _pick(len(surface.x), _stride(len(surface.x))), _pick(len(surface.y), _stride(len(surface.y)))
            runs.append({"label": name, "x": _json_values(surface.x[ix]), "y": _json_values(surface.y[iy]),
                         "values": _json_values(field.values[np.ix_(iy, ix)])})
        first = fields[0]
        cmap = "viridis" if first.label.startswith("loss") else "magma"
        payload.update({"runs": runs, "lo": first.lo, "hi": first.hi, "log": first.log, "label": first.label,
                        "ticks": _json_values(first.ticks if first.ticks is not None else first.line_levels),
                        "lut": [[round(c * 255) for c in rgba[:3]]
                                for rgba in colormaps[cmap](np.linspace(0.0, 1.0, _CMAP_SIZE)).tolist()]})
        return payload
    splits = [s for s in SPLITS] if metric == "loss" else [None]
    runs = []
    for i, (surface, name) in enumerate(zip(surfaces, names)):
        ix = _pick(len(surface.x), _stride(len(surface.x)))
        curves = [{"split": split, "values": _json_values(surface.metrics[f"{split}_loss" if split else metric][ix])}
                  for split in splits if (f"{split}_loss" if split else metric) in surface.metrics]
        runs.append({"label": name, "colour": RUN_COLOURS[i % len(RUN_COLOURS)], "x": _json_values(surface.x[ix]),
                     "curves": curves})
    payload.update({"runs": runs, "log": False})
    return payload


def compare_html(payload: dict) -> str:
    """The comparison page (``templates/compare.html`` + ``compare.js``, ``outputs.pages``)."""
    return inline_page("landscape_job.outputs", "compare", payload)
