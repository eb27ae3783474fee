"""``series.html``: a series file in one self-contained page (no server, no CDN, opens from ``file://``).

A switch chooses the quantity drawn over the steps: the loss and accuracy of each split,
the top-k eigenvalues with the threshold (2 + 2β)/η, λmin, the gradient's norm and
top-k share, the tail index α and the noise norm (whatever the file holds). A second
switch shows the eigenvalue spectrum at any step. The page is a canvas and a few lines
of script; the data are inlined as JSON (non-finite values as null).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from landscape_job.series.file import Series
from landscape_job.spec.series_metrics import registered

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>body{font-family:sans-serif;margin:1em}canvas{border:1px solid #ccc}label{margin-right:1em}</style></head>
<body><h2>__TITLE__</h2>
<label>quantity <select id="field"></select></label>
<label>spectrum at step <select id="step"></select></label>
<p id="note"></p><canvas id="plot" width="820" height="420"></canvas>
<script>
const D = __DATA__;
const fieldSel = document.getElementById("field"), stepSel = document.getElementById("step");
for (const name of Object.keys(D.fields)) fieldSel.add(new Option(D.fields[name].label, name));
fieldSel.add(new Option("eigenvalue spectrum (by rank)", "__spectrum__"));
D.steps.forEach((s, i) => stepSel.add(new Option(String(s), String(i))));
function draw() {
  const c = document.getElementById("plot"), g = c.getContext("2d"), W = c.width, H = c.height, m = 50;
  g.clearRect(0, 0, W, H);
  let xs, series = [], line = null;
  if (fieldSel.value === "__spectrum__") {
    const row = D.fields.top_eigenvalues ? D.fields.top_eigenvalues.values.map(r => r) : [];
    const i = Number(stepSel.value);
    xs = row.length ? row[i].map((_, k) => k + 1) : [];
    series = row.length ? [row[i]] : [];
    line = D.threshold;
  } else {
    const f = D.fields[fieldSel.value];
    xs = D.steps;
    series = f.columns ? f.values[0].map((_, k) => f.values.map(r => r[k])) : [f.values];
    if (fieldSel.value === "top_eigenvalues") line = D.threshold;
  }
  const all = series.flat().concat(line === null ? [] : [line]).filter(v => v !== null);
  if (!all.length || !xs.length) { g.fillText("no finite values", W / 2, H / 2); return; }
  let lo = Math.min(...all), hi = Math.max(...all); if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const X = v => m + (v - x0) / (x1 - x0) * (W - 2 * m), Y = v => H - m - (v - lo) / (hi - lo) * (H - 2 * m);
  g.strokeStyle = "#000"; g.strokeRect(m, m, W - 2 * m, H - 2 * m);
  g.fillText(lo.toPrecision(4), 2, Y(lo)); g.fillText(hi.toPrecision(4), 2, Y(hi) + 10);
  g.fillText(String(x0), X(x0), H - m + 15); g.fillText(String(x1), X(x1) - 20, H - m + 15);
  series.forEach((ys, k) => {
    g.strokeStyle = k === 0 ? "#e67e22" : "#999"; g.lineWidth = k === 0 ? 2 : 1; g.beginPath();
    let pen = false;
    ys.forEach((v, i) => { if (v === null) { pen = false; return; }
      if (pen) g.lineTo(X(xs[i]), Y(v)); else g.moveTo(X(xs[i]), Y(v)); pen = true; });
    g.stroke();
  });
  if (line !== null) { g.setLineDash([6, 4]); g.strokeStyle = "#000"; g.beginPath();
    g.moveTo(m, Y(line)); g.lineTo(W - m, Y(line)); g.stroke(); g.setLineDash([]);
    g.fillText(D.threshold_label, W - m - 120, Y(line) - 4); }
  document.getElementById("note").textContent = fieldSel.value === "__spectrum__"
    ? "top eigenvalues at step " + D.steps[Number(stepSel.value)] : "over the training steps";
}
fieldSel.onchange = draw; stepSel.onchange = draw; draw();
</script></body></html>
"""


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
    names = [n for n in dict.fromkeys(order) if n in series.data]
    fields = {name: {"label": labels.get(name, name), "columns": series.data[name].ndim == 2,
                     "values": _jsonable(series.data[name])} for name in names}
    momentum = float(series.attrs.get("momentum", 0.0) or 0.0)
    return {"steps": [int(s) for s in series.steps], "threshold": series.threshold, "fields": fields,
            "threshold_label": ("2/η" if momentum == 0 else "(2+2β)/η") + f" = {series.threshold:.4g}"}


def series_html(series: Series) -> str:
    title = html.escape(f"{series.attrs.get('name', 'series')}: series over {len(series.steps)} checkpoints")
    data = json.dumps(series_payload(series)).replace("</", "<\\/")
    return _PAGE.replace("__TITLE__", title).replace("__DATA__", data)


def write_series_html(series: Series, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(series_html(series), encoding="utf-8")
    return path
