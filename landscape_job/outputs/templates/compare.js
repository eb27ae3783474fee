// The comparison page: several runs on shared axes (1-D: one canvas, a curve per run) or
// side by side on ONE colour scale (2-D: a panel per run, one colour bar). Python computed
// the shared range and the levels (plots.compare.shared_fields); this only draws them.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("compare-data").textContent);
  const $ = (id) => document.getElementById(id);
  $("title").textContent = D.title;
  document.title = D.title;
  const fmt = (v) => (v === null || !isFinite(v)) ? "nan" : (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3)
    ? v.toExponential(3) : v.toPrecision(4));
  const shown = (t) => D.log ? Math.pow(10, t) : t;
  function colour(t) {
    if (t === null || !isFinite(t)) return [224, 224, 224];
    const u = Math.min(1, Math.max(0, (t - D.lo) / (D.hi - D.lo)));
    return D.lut[Math.min(D.lut.length - 1, Math.floor(u * D.lut.length))];
  }
  function canvas(w, h, title) {
    const div = document.createElement("div"); div.className = "panel";
    const h2 = document.createElement("h2"); h2.textContent = title; div.appendChild(h2);
    const c = document.createElement("canvas"); c.width = w; c.height = h; div.appendChild(c);
    $("panels").appendChild(div);
    return c;
  }
  if (D.dims === 2) {
    D.runs.forEach((run) => {
      const c = canvas(300, 300, run.label), g = c.getContext("2d");
      const nx = run.x.length, ny = run.y.length, img = g.createImageData(nx, ny);
      for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) {
        const k = ((ny - 1 - j) * nx + i) * 4, rgb = colour(run.values[j][i]);
        img.data[k] = rgb[0]; img.data[k + 1] = rgb[1]; img.data[k + 2] = rgb[2]; img.data[k + 3] = 255;
      }
      const off = document.createElement("canvas"); off.width = nx; off.height = ny;
      off.getContext("2d").putImageData(img, 0, 0);
      g.imageSmoothingEnabled = false; g.drawImage(off, 0, 0, 300, 300);
      c.onmousemove = (e) => {
        const r = c.getBoundingClientRect();
        const i = Math.min(nx - 1, Math.floor((e.clientX - r.left) / 300 * nx));
        const j = Math.min(ny - 1, ny - 1 - Math.floor((e.clientY - r.top) / 300 * ny));
        $("hover").textContent = run.label + ": x = " + fmt(run.x[i]) + ", y = " + fmt(run.y[j]) + ", " +
          D.metric + " = " + fmt(run.values[j][i] === null ? null : shown(run.values[j][i]));
      };
    });
    const c = canvas(70, 300, D.label), g = c.getContext("2d");
    for (let p = 0; p < 260; p++) {
      const rgb = colour(D.lo + (1 - p / 259) * (D.hi - D.lo));
      g.fillStyle = "rgb(" + rgb.join(",") + ")"; g.fillRect(0, 20 + p, 18, 1);
    }
    g.fillStyle = "#222"; g.font = "11px sans-serif";
    D.ticks.forEach((t) => { const y = 20 + (1 - (t - D.lo) / (D.hi - D.lo)) * 259; g.fillText(fmt(shown(t)), 22, y + 4); });
    $("note").textContent = "one colour scale for every panel: " + fmt(shown(D.lo)) + " … " + fmt(shown(D.hi)) +
      (D.log ? " (log)" : "");
  } else {
    const W = 760, H = 420, m = { l: 60, r: 20, t: 16, b: 40 };
    const c = canvas(W, H, D.metric), g = c.getContext("2d");
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    D.runs.forEach((run) => run.curves.forEach((cv) => cv.values.forEach((v, i) => {
      x0 = Math.min(x0, run.x[i]); x1 = Math.max(x1, run.x[i]);
      if (v !== null && isFinite(v)) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
    })));
    if (y1 <= y0) { y1 = y0 + 1; }
    const X = (v) => m.l + (v - x0) / (x1 - x0) * (W - m.l - m.r);
    const Y = (v) => H - m.b - (v - y0) / (y1 - y0) * (H - m.t - m.b);
    g.strokeStyle = "#999"; g.strokeRect(m.l, m.t, W - m.l - m.r, H - m.t - m.b);
    g.fillStyle = "#222"; g.font = "12px sans-serif";
    g.fillText(D.xlabel, W / 2, H - 8); g.fillText(fmt(x0), m.l, H - m.b + 14); g.fillText(fmt(x1), W - m.r - 30, H - m.b + 14);
    g.fillText(fmt(shown(y0)), 4, H - m.b); g.fillText(fmt(shown(y1)), 4, m.t + 10);
    D.runs.forEach((run, r) => {
      run.curves.forEach((cv) => {
        g.strokeStyle = run.colour; g.lineWidth = 2; g.setLineDash(cv.split === "test" ? [6, 4] : []);
        g.beginPath(); let pen = false;
        cv.values.forEach((v, i) => { if (v === null || !isFinite(v)) { pen = false; return; }
          if (pen) g.lineTo(X(run.x[i]), Y(v)); else g.moveTo(X(run.x[i]), Y(v)); pen = true; });
        g.stroke();
      });
      g.setLineDash([]); g.fillStyle = run.colour; g.fillRect(W - 200, m.t + 8 + 16 * r, 14, 3);
      g.fillStyle = "#222"; g.fillText(run.label, W - 180, m.t + 12 + 16 * r);
    });
    $("note").textContent = D.runs.length + " runs" + (D.log ? ", log scale" : "") + "; dashed: test split";
  }
})();
