const D = JSON.parse(document.getElementById("series-data").textContent);
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
