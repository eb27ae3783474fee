// The loss-landscape viewer: canvas 2D only (no WebGL, no libraries), data inlined as JSON.
// Views: "surface" (3-D, drag to rotate, wheel to zoom), "contour" (heat map + contour
// lines), "curve" (1-D surfaces: train and test together, the selected split in front).
// Values are drawn in "plot units": log10 of the loss when log scale is on, the raw value
// otherwise. The canvas takes the page's width (and the screen's pixel ratio); markers
// (θ*, trajectory, barriers) have the PNGs' shapes and colours (DATA.colours).
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("landscape-data").textContent);
  const canvas = document.getElementById("plot");
  const ctx = canvas.getContext("2d");
  let W = canvas.width, H = canvas.height, DPR = 1;
  const $ = (id) => document.getElementById(id);
  const COLOURS = DATA.colours;
  const SPLIT_COLOURS = { train: COLOURS.train, test: COLOURS.test };
  const MASKED = "#e0e0e0";
  const MAX_3D = 64; // quads per axis drawn in 3-D (rotation stays smooth on big grids)

  // Quantities beyond loss and accuracy (a registered metric, another tool's field): a button each,
  // named by the field's label without its split. A field with no split is "per point".
  function quantityOf(f) { return f.split ? f.name.slice(f.split.length + 1) : f.name; }
  for (const f of Object.values(DATA.fields)) {
    const q = quantityOf(f);
    if (f.name === "hessian_ratio" || q === "loss" || q === "acc") continue;
    if (document.querySelector('[data-quantity="' + CSS.escape(q) + '"]')) continue;
    const b = document.createElement("button");
    b.dataset.quantity = q;
    b.textContent = f.split ? f.label.slice(f.split.length + 1) : f.label;
    $("btn-hessian").before(b);
  }
  function perPoint(q) { return q === "hessian" || (!!DATA.fields[q] && !DATA.fields[q].split); }

  const state = {
    split: DATA.fields.train_loss || DATA.fields.train_acc ? "train" : "test",
    quantity: "loss",
    view: DATA.dims === 2 ? "surface" : "curve",
    log: !!DATA.log,
    trajectory: !!DATA.trajectory,
    az: -0.75, el: 0.6, zoom: 1,
  };
  if (!field()) state.quantity = "acc";
  if (!field()) {  // neither loss nor accuracy: the first field there is
    const first = Object.values(DATA.fields)[0];
    state.quantity = first.name === "hessian_ratio" ? "hessian" : quantityOf(first);
    if (first.split) state.split = first.split;
  }

  // ------------------------------------------------------------------ data access
  function fieldName(s) {
    if (s.quantity === "hessian") return "hessian_ratio";
    return perPoint(s.quantity) ? s.quantity : s.split + "_" + s.quantity;
  }
  function field() { return DATA.fields[fieldName(state)]; }
  function useLog(f) { return state.log && f.kind === "loss" && !!f.scales.log; }
  function scale(f) { return f.scales[useLog(f) ? "log" : "linear"]; }
  function toPlot(f, v) {
    if (v === null || v === undefined) return NaN;
    if (useLog(f)) return v > 0 ? Math.log10(v) : NaN;
    return v;
  }
  function raw(f, i, j) { return DATA.dims === 2 ? f.values[j][i] : f.values[i]; }

  // ------------------------------------------------------------------ formatting, colours
  function fmt(v, digits) {
    if (v === null || !isFinite(v)) return "n/a";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential((digits || 5) - 1);
    return String(Number(v.toPrecision(digits || 5)));
  }
  function tickLabel(f, t) { return useLog(f) ? fmt(Math.pow(10, t), 3) : fmt(t, 4); }
  function colour(f, t, shade) {
    const s = scale(f), lut = DATA.colormaps[f.cmap];
    let u = (t - s.lo) / (s.hi - s.lo);
    u = Math.min(1, Math.max(0, u));
    const c = lut[Math.round(u * (lut.length - 1))];
    const k = shade === undefined ? 1 : shade;
    return "rgb(" + Math.round(c[0] * k) + "," + Math.round(c[1] * k) + "," + Math.round(c[2] * k) + ")";
  }
  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw * 0.999);
    const out = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }
  function logTicks(lo, hi) {
    const out = [];
    for (let k = Math.floor(lo) - 1; k <= Math.ceil(hi); k++) {
      for (const m of [1, 2, 5]) {
        const t = Math.log10(m) + k;
        if (t >= lo - 1e-9 && t <= hi + 1e-9) out.push(t);
      }
    }
    if (out.length >= 3) return out.length > 9 ? out.filter((t) => Math.abs(t - Math.round(t)) < 1e-9) : out;
    return niceTicks(Math.pow(10, lo), Math.pow(10, hi), 4).filter((v) => v > 0).map(Math.log10);
  }
  function colourTicks(f, count) {
    const s = scale(f);
    return useLog(f) ? logTicks(s.lo, s.hi) : niceTicks(s.lo, s.hi, count || 6);
  }
  function label(f) { return f.label + (f.unit ? " (" + f.unit + ")" : "") + (useLog(f) ? ", log scale" : ""); }

  // ------------------------------------------------------------------ layout and axes
  const AREA = { x0: 78, y0: 24, w: W - 78 - 150, h: H - 24 - 62 };
  function text(str, x, y, align, base, colourName) {
    ctx.fillStyle = colourName || "#333";
    ctx.textAlign = align || "center";
    ctx.textBaseline = base || "middle";
    ctx.fillText(str, x, y);
  }
  function colourBar(f) {
    const s = scale(f), x = W - 122, y0 = AREA.y0, h = AREA.h, wBar = 16;
    const lut = DATA.colormaps[f.cmap];
    for (let k = 0; k < lut.length; k++) {
      const c = lut[k];
      ctx.fillStyle = "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")";
      const top = y0 + h - ((k + 1) / lut.length) * h;
      ctx.fillRect(x, top, wBar, h / lut.length + 1);
    }
    ctx.strokeStyle = "#666";
    ctx.lineWidth = 1;
    ctx.strokeRect(x, y0, wBar, h);
    ctx.font = "11px system-ui, sans-serif";
    for (const t of colourTicks(f)) {
      const yy = y0 + h - ((t - s.lo) / (s.hi - s.lo)) * h;
      ctx.beginPath(); ctx.moveTo(x + wBar, yy); ctx.lineTo(x + wBar + 4, yy); ctx.stroke();
      text(tickLabel(f, t), x + wBar + 7, yy, "left");
    }
    ctx.save();
    ctx.translate(W - 16, y0 + h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.font = "12px system-ui, sans-serif";
    text(label(f), 0, 0);
    ctx.restore();
    if (f.nonfinite > 0) {
      ctx.fillStyle = MASKED;
      ctx.fillRect(x, y0 + h + 14, wBar, 10);
      ctx.font = "11px system-ui, sans-serif";
      text("not finite", x + wBar + 5, y0 + h + 19, "left");
    }
  }
  function axes2d(xs, ys, xr, yr) {
    ctx.strokeStyle = "#444";
    ctx.lineWidth = 1;
    ctx.strokeRect(AREA.x0, AREA.y0, AREA.w, AREA.h);
    ctx.font = "11px system-ui, sans-serif";
    for (const t of niceTicks(xr[0], xr[1], 7)) {
      const px = xs(t);
      ctx.beginPath(); ctx.moveTo(px, AREA.y0 + AREA.h); ctx.lineTo(px, AREA.y0 + AREA.h + 5); ctx.stroke();
      text(fmt(t, 4), px, AREA.y0 + AREA.h + 15);
    }
    for (const t of niceTicks(yr[0], yr[1], 6)) {
      const py = ys(t);
      ctx.beginPath(); ctx.moveTo(AREA.x0 - 5, py); ctx.lineTo(AREA.x0, py); ctx.stroke();
      text(fmt(t, 4), AREA.x0 - 8, py, "right");
    }
    ctx.font = "12px system-ui, sans-serif";
    text(DATA.xlabel, AREA.x0 + AREA.w / 2, H - 18);
  }
  function yLabel(str) {
    ctx.save();
    ctx.translate(16, AREA.y0 + AREA.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.font = "12px system-ui, sans-serif";
    text(str, 0, 0);
    ctx.restore();
  }

  // ------------------------------------------------------------------ contour view
  // The grid spans half a cell beyond the outer points, so each cell is centred on its point.
  function extent(v) {
    const n = v.length, d = n > 1 ? (v[n - 1] - v[0]) / (n - 1) : 1;
    return [v[0] - d / 2, v[n - 1] + d / 2];
  }
  function contourMaps() {
    const xr = extent(DATA.x), yr = extent(DATA.y);
    return {
      xr: xr, yr: yr,
      xs: (x) => AREA.x0 + ((x - xr[0]) / (xr[1] - xr[0])) * AREA.w,
      ys: (y) => AREA.y0 + AREA.h - ((y - yr[0]) / (yr[1] - yr[0])) * AREA.h,
      xInv: (px) => xr[0] + ((px - AREA.x0) / AREA.w) * (xr[1] - xr[0]),
      yInv: (py) => yr[0] + ((AREA.y0 + AREA.h - py) / AREA.h) * (yr[1] - yr[0]),
    };
  }
  function drawHeat(f) {
    const nx = DATA.x.length, ny = DATA.y.length;
    const img = document.createElement("canvas");
    img.width = nx; img.height = ny;
    const ictx = img.getContext("2d"), pixels = ictx.createImageData(nx, ny);
    const lut = DATA.colormaps[f.cmap], s = scale(f);
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const t = toPlot(f, raw(f, i, j)), o = 4 * ((ny - 1 - j) * nx + i);
        let c = [224, 224, 224];
        if (isFinite(t)) {
          const u = Math.min(1, Math.max(0, (t - s.lo) / (s.hi - s.lo)));
          c = lut[Math.round(u * (lut.length - 1))];
        }
        pixels.data[o] = c[0]; pixels.data[o + 1] = c[1]; pixels.data[o + 2] = c[2]; pixels.data[o + 3] = 255;
      }
    }
    ictx.putImageData(pixels, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, AREA.x0, AREA.y0, AREA.w, AREA.h);
  }
  // Marching squares: for each level, the segments where the bilinear field crosses it.
  function drawContourLines(f, m) {
    const nx = DATA.x.length, ny = DATA.y.length, levels = scale(f).levels;
    const t = [];
    for (let j = 0; j < ny; j++) { const row = []; for (let i = 0; i < nx; i++) row.push(toPlot(f, raw(f, i, j))); t.push(row); }
    ctx.strokeStyle = "rgba(255,255,255,0.75)";
    ctx.lineWidth = 0.9;
    ctx.beginPath();
    for (const L of levels) {
      for (let j = 0; j < ny - 1; j++) {
        for (let i = 0; i < nx - 1; i++) {
          const c = [[i, j, t[j][i]], [i + 1, j, t[j][i + 1]], [i + 1, j + 1, t[j + 1][i + 1]], [i, j + 1, t[j + 1][i]]];
          if (!c.every((p) => isFinite(p[2]))) continue;
          const pts = [];
          for (let e = 0; e < 4; e++) {
            const a = c[e], b = c[(e + 1) % 4];
            if ((a[2] >= L) !== (b[2] >= L)) {
              const r = (L - a[2]) / (b[2] - a[2]);
              const gx = a[0] + r * (b[0] - a[0]), gy = a[1] + r * (b[1] - a[1]);
              pts.push([m.xs(gridX(gx)), m.ys(gridY(gy))]);
            }
          }
          for (let k = 0; k + 1 < pts.length; k += 2) {
            ctx.moveTo(pts[k][0], pts[k][1]);
            ctx.lineTo(pts[k + 1][0], pts[k + 1][1]);
          }
        }
      }
    }
    ctx.stroke();
  }
  function gridX(gi) { const n = DATA.x.length; return DATA.x[0] + (gi / (n - 1)) * (DATA.x[n - 1] - DATA.x[0]); }
  function gridY(gj) { const n = DATA.y.length; return DATA.y[0] + (gj / (n - 1)) * (DATA.y[n - 1] - DATA.y[0]); }
  function drawTrajectory2d(m) {
    const tr = DATA.trajectory;
    drawPath(tr.x.map((x, k) => [m.xs(x), m.ys(tr.y[k])]));
  }
  // ------------------------------------------------------------------ markers (the PNGs')
  // A trajectory: a dark line through white-filled points, a green square at the start and a
  // vermillion star at the end; θ*: a white-edged black plus. drawn.marks records each, for tests.
  const drawn = { marks: [], zTicks: [] };
  function drawPath(pts) {
    if (!pts.length) return;
    ctx.lineWidth = 1.3;
    ctx.strokeStyle = COLOURS.path;
    ctx.beginPath();
    pts.forEach((q, k) => (k ? ctx.lineTo(q[0], q[1]) : ctx.moveTo(q[0], q[1])));
    ctx.stroke();
    pts.forEach((q, k) => {
      if (k > 0 && k < pts.length - 1) marker("point", q[0], q[1]);
    });
    marker("start", pts[0][0], pts[0][1]);
    if (pts.length > 1) marker("end", pts[pts.length - 1][0], pts[pts.length - 1][1]);
  }
  function marker(kind, x, y, colour) {
    ctx.save();
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (kind === "point") {
      ctx.arc(x, y, 3, 0, 2 * Math.PI);
      ctx.fillStyle = "#fff"; ctx.strokeStyle = COLOURS.path; ctx.lineWidth = 1;
      ctx.fill(); ctx.stroke();
    } else if (kind === "start") {
      ctx.rect(x - 4.5, y - 4.5, 9, 9);
      ctx.fillStyle = COLOURS.start; ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.2;
      ctx.fill(); ctx.stroke();
    } else if (kind === "end") {
      for (let k = 0; k < 10; k++) {
        const r = k % 2 ? 3.2 : 7.5, a = -Math.PI / 2 + (k * Math.PI) / 5;
        ctx.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
      }
      ctx.closePath();
      ctx.fillStyle = COLOURS.end; ctx.strokeStyle = "#fff"; ctx.lineWidth = 1;
      ctx.fill(); ctx.stroke();
    } else if (kind === "centre") {
      const a = 6, b = 2;  // a plus: arms 2a long, 2b wide
      [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        .forEach((p, k) => (k ? ctx.lineTo(x + p[0], y + p[1]) : ctx.moveTo(x + p[0], y + p[1])));
      ctx.closePath();
      ctx.fillStyle = COLOURS.centre; ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.2;
      ctx.stroke(); ctx.fill();
      ctx.font = "bold 12px system-ui, sans-serif";
      ctx.lineWidth = 3; ctx.strokeStyle = "rgba(255,255,255,0.8)";
      ctx.textAlign = "left"; ctx.textBaseline = "bottom";
      ctx.strokeText("θ*", x + 7, y - 4);
      ctx.fillText("θ*", x + 7, y - 4);
    } else if (kind === "barrier") {
      ctx.moveTo(x - 6, y - 9); ctx.lineTo(x + 6, y - 9); ctx.lineTo(x, y + 1); ctx.closePath();
      ctx.fillStyle = colour; ctx.strokeStyle = "#000"; ctx.lineWidth = 0.8;
      ctx.fill(); ctx.stroke();
    }
    ctx.restore();
    drawn.marks.push({ kind: kind, x: x, y: y });
  }
  // A PCA plane's centre is the final model: the path's end star stands for θ* there.
  function centreMarked() {
    const tr = DATA.trajectory, n = tr ? tr.x.length : 0;
    const endsThere = state.trajectory && n > 0 && Math.abs(tr.x[n - 1]) < 1e-9 && Math.abs(tr.y[n - 1]) < 1e-9;
    return hasCentre() && !endsThere;
  }
  function inRange(v, lo, hi) { return v >= Math.min(lo, hi) && v <= Math.max(lo, hi); }
  function hasCentre() {
    return inRange(0, DATA.x[0], DATA.x[DATA.x.length - 1]) &&
      (DATA.dims === 1 || inRange(0, DATA.y[0], DATA.y[DATA.y.length - 1]));
  }
  function drawContour(f) {
    const m = contourMaps();
    ctx.save();
    ctx.beginPath(); ctx.rect(AREA.x0, AREA.y0, AREA.w, AREA.h); ctx.clip();
    drawHeat(f);
    drawContourLines(f, m);
    if (state.trajectory && DATA.trajectory) drawTrajectory2d(m);
    if (centreMarked()) marker("centre", m.xs(0), m.ys(0));
    ctx.restore();
    axes2d(m.xs, m.ys, m.xr, m.yr);
    yLabel(DATA.ylabel);
    colourBar(f);
  }
  function hoverContour(f, px, py) {
    const m = contourMaps();
    if (px < AREA.x0 || px > AREA.x0 + AREA.w || py < AREA.y0 || py > AREA.y0 + AREA.h) return null;
    const i = nearest(DATA.x, m.xInv(px)), j = nearest(DATA.y, m.yInv(py));
    const hit = { i: i, j: j, px: m.xs(DATA.x[i]), py: m.ys(DATA.y[j]) };
    if (state.trajectory && DATA.trajectory) {
      const tr = DATA.trajectory;
      tr.x.forEach((x, k) => {
        if (Math.hypot(m.xs(x) - px, m.ys(tr.y[k]) - py) < 7) hit.checkpoint = k;
      });
    }
    return hit;
  }
  function nearest(v, value) {
    const n = v.length, d = n > 1 ? (v[n - 1] - v[0]) / (n - 1) : 1;
    return Math.min(n - 1, Math.max(0, Math.round((value - v[0]) / d)));
  }

  // ------------------------------------------------------------------ 3-D view
  function pickIdx(n) {
    const step = Math.max(1, Math.ceil((n - 1) / MAX_3D)), out = [];
    for (let k = 0; k < n; k += step) out.push(k);
    if (out[out.length - 1] !== n - 1) out.push(n - 1);
    return out;
  }
  function camera() {
    const ca = Math.cos(state.az), sa = Math.sin(state.az), ce = Math.cos(state.el), se = Math.sin(state.el);
    const s = (Math.min(AREA.w, AREA.h) / 2.9) * state.zoom, cx = AREA.x0 + AREA.w / 2, cy = AREA.y0 + AREA.h / 2 + 20;
    return (X, Y, Z) => {
      const x1 = X * ca - Y * sa, y1 = X * sa + Y * ca;
      return [cx + x1 * s, cy - (y1 * se + Z * ce) * s, y1 * ce - Z * se];
    };
  }
  function norm3d(f) {
    const x = DATA.x, y = DATA.y, sc = scale(f);
    const nxv = (v) => (2 * (v - x[0])) / (x[x.length - 1] - x[0]) - 1;
    const nyv = (v) => (2 * (v - y[0])) / (y[y.length - 1] - y[0]) - 1;
    const nzv = (t) => (Math.min(sc.hi, Math.max(sc.lo, t)) - sc.lo) / (sc.hi - sc.lo) * 1.2 - 0.6;
    return { nxv: nxv, nyv: nyv, nzv: nzv };
  }
  let surfacePoints = []; // projected vertices of the last 3-D drawing, for hover
  function drawSurface(f) {
    const P = camera(), N = norm3d(f), ix = pickIdx(DATA.x.length), iy = pickIdx(DATA.y.length);
    const verts = iy.map((j) => ix.map((i) => {
      const t = toPlot(f, raw(f, i, j));
      const X = N.nxv(DATA.x[i]), Y = N.nyv(DATA.y[j]), Z = isFinite(t) ? N.nzv(t) : NaN;
      return { i: i, j: j, t: t, w: [X, Y, Z], p: isFinite(Z) ? P(X, Y, Z) : null };
    }));
    drawBox(f, P);
    const quads = [];
    const light = [0.35, -0.45, 0.82];
    for (let b = 0; b + 1 < iy.length; b++) {
      for (let a = 0; a + 1 < ix.length; a++) {
        const q = [verts[b][a], verts[b][a + 1], verts[b + 1][a + 1], verts[b + 1][a]];
        if (!q.every((v) => v.p)) continue;
        const d1 = sub3(q[2].w, q[0].w), d2 = sub3(q[3].w, q[1].w);
        const n = [d1[1] * d2[2] - d1[2] * d2[1], d1[2] * d2[0] - d1[0] * d2[2], d1[0] * d2[1] - d1[1] * d2[0]];
        const len = Math.hypot(n[0], n[1], n[2]) || 1;
        const shade = 0.6 + 0.4 * Math.abs((n[0] * light[0] + n[1] * light[1] + n[2] * light[2]) / len);
        const mean = (q[0].t + q[1].t + q[2].t + q[3].t) / 4;
        quads.push({ q: q, depth: (q[0].p[2] + q[1].p[2] + q[2].p[2] + q[3].p[2]) / 4, fill: colour(f, mean, shade) });
      }
    }
    quads.sort((u, v) => v.depth - u.depth);
    ctx.lineWidth = 0.6;
    for (const quad of quads) {
      ctx.beginPath();
      quad.q.forEach((v, k) => (k ? ctx.lineTo(v.p[0], v.p[1]) : ctx.moveTo(v.p[0], v.p[1])));
      ctx.closePath();
      ctx.fillStyle = quad.fill;
      ctx.strokeStyle = quad.fill;
      ctx.fill();
      ctx.stroke();
    }
    surfacePoints = [].concat.apply([], verts).filter((v) => v.p);
    if (state.trajectory && DATA.trajectory) drawTrajectory3d(f, P, N);
    const t0 = centreMarked() ? bilinear(f, 0, 0) : NaN;
    if (isFinite(t0)) { const c = P(N.nxv(0), N.nyv(0), N.nzv(t0)); marker("centre", c[0], c[1]); }
    colourBar(f);
    ctx.font = "11px system-ui, sans-serif";
    text("drag to rotate, wheel to zoom", AREA.x0, H - 12, "left", "middle", "#888");
  }
  function sub3(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
  function drawBox(f, P) {
    const sc = scale(f), x = DATA.x, y = DATA.y, floor = -0.6;
    const corners = [[-1, -1], [1, -1], [1, 1], [-1, 1]].map((c) => P(c[0], c[1], floor));
    ctx.strokeStyle = "#999";
    ctx.lineWidth = 1;
    ctx.beginPath();
    corners.forEach((c, k) => (k ? ctx.lineTo(c[0], c[1]) : ctx.moveTo(c[0], c[1])));
    ctx.closePath();
    ctx.stroke();
    ctx.font = "11px system-ui, sans-serif";
    // x and y are labelled along the floor edges nearer the viewer, z at the leftmost corner
    const square = [[-1, -1], [1, -1], [1, 1], [-1, 1]];
    let sideIdx = 0;
    corners.forEach((c, k) => { if (c[0] < corners[sideIdx][0]) sideIdx = k; });
    const side = square[sideIdx];
    const depth = (c) => P(c[0], c[1], floor)[2];
    const along = (a, b, out, lab, lo, hi) => {
      const at = (c, k) => P(c[0] + out[0] * k, c[1] + out[1] * k, floor);
      const away = (c) => (c[0] === side[0] && c[1] === side[1] ? 0.3 : 0.13);
      const mid = at([(a[0] + b[0]) / 2, (a[1] + b[1]) / 2], 0.32), pa = at(a, away(a)), pb = at(b, away(b));
      text(lab, mid[0], mid[1], "center", "middle", "#333");
      text(fmt(lo, 3), pa[0], pa[1], "center", "middle", "#666");
      text(fmt(hi, 3), pb[0], pb[1], "center", "middle", "#666");
    };
    const ey = depth([0, -1]) < depth([0, 1]) ? -1 : 1, ex = depth([-1, 0]) < depth([1, 0]) ? -1 : 1;
    along([-1, ey], [1, ey], [0, ey], DATA.xlabel, x[0], x[x.length - 1]);
    along([ex, -1], [ex, 1], [ex, 0], DATA.ylabel, y[0], y[y.length - 1]);
    const foot = corners[sideIdx], top = P(side[0], side[1], 0.6);
    ctx.beginPath(); ctx.moveTo(foot[0], foot[1]); ctx.lineTo(top[0], top[1]); ctx.stroke();
    drawn.zTicks = [];
    for (const t of colourTicks(f, 4)) {  // round values, as the colour bar's
      drawn.zTicks.push(tickLabel(f, t));
      const p = P(side[0], side[1], ((t - sc.lo) / (sc.hi - sc.lo)) * 1.2 - 0.6);
      ctx.beginPath(); ctx.moveTo(p[0] - 4, p[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
      text(tickLabel(f, t), p[0] - 7, p[1], "right", "middle", "#666");
    }
  }
  function drawTrajectory3d(f, P, N) {
    const tr = DATA.trajectory, pts = [];
    tr.x.forEach((x, k) => {
      const t = bilinear(f, x, tr.y[k]);
      if (isFinite(t)) pts.push(P(N.nxv(x), N.nyv(tr.y[k]), N.nzv(t)));
    });
    drawPath(pts);
  }
  function bilinear(f, x, y) {
    const nx = DATA.x.length, ny = DATA.y.length;
    const gx = ((x - DATA.x[0]) / (DATA.x[nx - 1] - DATA.x[0])) * (nx - 1);
    const gy = ((y - DATA.y[0]) / (DATA.y[ny - 1] - DATA.y[0])) * (ny - 1);
    if (!(gx >= 0 && gx <= nx - 1 && gy >= 0 && gy <= ny - 1)) return NaN;
    const i = Math.min(nx - 2, Math.floor(gx)), j = Math.min(ny - 2, Math.floor(gy)), u = gx - i, v = gy - j;
    const t = (a, b) => toPlot(f, raw(f, a, b));
    return (1 - u) * (1 - v) * t(i, j) + u * (1 - v) * t(i + 1, j) + u * v * t(i + 1, j + 1) + (1 - u) * v * t(i, j + 1);
  }
  function hoverSurface(px, py) {
    let best = null;
    for (const v of surfacePoints) {
      const d = Math.hypot(v.p[0] - px, v.p[1] - py);
      if (d < 12 && (!best || v.p[2] < best.p[2] - 0.05 || (Math.abs(v.p[2] - best.p[2]) <= 0.05 && d < best.d))) {
        best = { p: v.p, d: d, i: v.i, j: v.j };
      }
    }
    return best && { i: best.i, j: best.j, px: best.p[0], py: best.p[1] };
  }

  // ------------------------------------------------------------------ 1-D curve
  // Both splits of the quantity, the selected one in front; the y range covers both.
  function curveFields(f) {
    if (!f.split) return [f];
    const q = quantityOf(f);
    return ["train", "test"].map((sp) => DATA.fields[sp + "_" + q]).filter((g) => g && scale(g))
      .sort((a, b) => (a === f) - (b === f));
  }
  function curveMaps(f) {
    const x = DATA.x, all = curveFields(f).map(scale);
    const lo = Math.min.apply(null, all.map((s) => s.lo)), hi = Math.max.apply(null, all.map((s) => s.hi));
    const pad = (hi - lo) * 0.05;
    const xr = [x[0], x[x.length - 1]], yr = [lo - pad, hi + pad];
    return {
      xr: xr, yr: yr, lo: lo, hi: hi,
      xs: (v) => AREA.x0 + ((v - xr[0]) / (xr[1] - xr[0])) * AREA.w,
      ys: (t) => AREA.y0 + AREA.h - ((t - yr[0]) / (yr[1] - yr[0])) * AREA.h,
      xInv: (px) => xr[0] + ((px - AREA.x0) / AREA.w) * (xr[1] - xr[0]),
    };
  }
  function drawCurve(f) {
    const m = curveMaps(f), x = DATA.x, shown = curveFields(f);
    ctx.save();
    ctx.beginPath(); ctx.rect(AREA.x0, AREA.y0, AREA.w, AREA.h); ctx.clip();
    if (hasCentre()) {  // θ*: a dotted line, as in the PNG
      ctx.strokeStyle = "#595959"; ctx.lineWidth = 0.8; ctx.setLineDash([2, 3]);
      ctx.beginPath(); ctx.moveTo(m.xs(0), AREA.y0); ctx.lineTo(m.xs(0), AREA.y0 + AREA.h); ctx.stroke();
      ctx.setLineDash([]);
      ctx.font = "bold 12px system-ui, sans-serif";
      text("θ*", m.xs(0) + 4, AREA.y0 + 10, "left", "middle", COLOURS.centre);
      drawn.marks.push({ kind: "centre", x: m.xs(0), y: AREA.y0 });
    }
    for (const g of shown) {
      ctx.strokeStyle = g.split ? SPLIT_COLOURS[g.split] : "#333";
      ctx.lineWidth = g === f ? 2.2 : 1.4;
      ctx.globalAlpha = g === f ? 1 : 0.6;
      ctx.beginPath();
      let pen = false;
      x.forEach((v, i) => {
        const t = toPlot(g, raw(g, i));
        if (!isFinite(t)) { pen = false; return; }
        if (pen) ctx.lineTo(m.xs(v), m.ys(t)); else ctx.moveTo(m.xs(v), m.ys(t));
        pen = true;
      });
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    ctx.restore();
    if (f.kind === "loss") {  // each split's barrier, as the PNG marks it
      for (const g of shown) {
        const b = DATA.barriers[g.split];
        const t = b ? toPlot(g, b.top) : NaN;
        if (!isFinite(t)) continue;
        const px = m.xs(b.alpha), py = m.ys(t), left = b.alpha <= (m.xr[0] + m.xr[1]) / 2;
        marker("barrier", px, py, SPLIT_COLOURS[g.split]);
        ctx.font = "11px system-ui, sans-serif";
        text(g.split + " barrier " + fmt(b.height, 3), px + (left ? 10 : -10), py + 4 + 13 * (g.split === "test"),
             left ? "left" : "right", "top", SPLIT_COLOURS[g.split]);
      }
    }
    ctx.strokeStyle = "#444";
    ctx.lineWidth = 1;
    ctx.strokeRect(AREA.x0, AREA.y0, AREA.w, AREA.h);
    ctx.font = "11px system-ui, sans-serif";
    for (const t of niceTicks(m.xr[0], m.xr[1], 7)) {
      const px = m.xs(t);
      ctx.beginPath(); ctx.moveTo(px, AREA.y0 + AREA.h); ctx.lineTo(px, AREA.y0 + AREA.h + 5); ctx.stroke();
      text(fmt(t, 4), px, AREA.y0 + AREA.h + 15);
    }
    const yt = useLog(f) ? logTicks(m.lo, m.hi) : niceTicks(m.lo, m.hi, 6);
    for (const t of yt) {
      const py = m.ys(t);
      ctx.beginPath(); ctx.moveTo(AREA.x0 - 5, py); ctx.lineTo(AREA.x0, py); ctx.stroke();
      text(tickLabel(f, t), AREA.x0 - 8, py, "right");
    }
    ctx.font = "12px system-ui, sans-serif";
    text(DATA.xlabel, AREA.x0 + AREA.w / 2, H - 18);
    yLabel(shown.length > 1 ? label(f).replace(f.split + " ", "") : label(f));
    // The legend, top right inside the axes: one line per curve.
    shown.slice().reverse().forEach((g, k) => {
      const y = AREA.y0 + 12 + 16 * k, x1 = AREA.x0 + AREA.w - 10;
      ctx.strokeStyle = SPLIT_COLOURS[g.split] || "#333"; ctx.lineWidth = 2.2;
      ctx.beginPath(); ctx.moveTo(x1 - 22, y); ctx.lineTo(x1, y); ctx.stroke();
      ctx.font = (g === f ? "bold " : "") + "11px system-ui, sans-serif";
      text(g.label, x1 - 27, y, "right", "middle", "#333");
    });
  }
  function hoverCurve(f, px, py) {
    if (px < AREA.x0 || px > AREA.x0 + AREA.w || py < AREA.y0 || py > AREA.y0 + AREA.h) return null;
    const m = curveMaps(f), i = nearest(DATA.x, m.xInv(px)), t = toPlot(f, raw(f, i));
    return { i: i, j: 0, px: m.xs(DATA.x[i]), py: isFinite(t) ? m.ys(t) : null };
  }

  // ------------------------------------------------------------------ rendering and events
  const base = document.createElement("canvas");
  let hover = null;
  // The canvas takes the width the page gives it (CSS pixels), at most 2/3 of it tall and
  // what the window leaves; its backing store is scaled by the screen's pixel ratio.
  function resize() {
    const room = canvas.parentElement.clientWidth;
    W = Math.max(320, Math.round(room));
    H = Math.round(Math.max(300, Math.min(W * 2 / 3, window.innerHeight - 190)));
    DPR = window.devicePixelRatio || 1;
    canvas.style.width = W + "px"; canvas.style.height = H + "px";
    canvas.width = base.width = Math.round(W * DPR);
    canvas.height = base.height = Math.round(H * DPR);
    AREA.h = H - AREA.y0 - 62;
  }
  function render() {
    const f = field();
    drawn.marks = []; drawn.zTicks = [];
    ctx.setTransform(DPR, 0, 0, DPR, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    AREA.w = W - AREA.x0 - (state.view === "curve" ? 30 : 150); // the curve has no colour bar
    if (!scale(f)) {
      ctx.font = "14px system-ui, sans-serif";
      text("no finite " + f.label + " values (every point diverged)", W / 2, H / 2);
      surfacePoints = [];
    } else if (state.view === "surface") drawSurface(f);
    else if (state.view === "contour") drawContour(f);
    else drawCurve(f);
    base.getContext("2d").clearRect(0, 0, base.width, base.height);
    base.getContext("2d").drawImage(canvas, 0, 0);
    hover = null;
    syncControls();
    showHover();
  }
  function showHover() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(base, 0, 0);
    ctx.restore();
    const f = field(), out = $("hover");
    if (!hover) { out.textContent = ""; delete out.dataset.value; return; }
    if (hover.py !== null) {
      ctx.strokeStyle = "#000"; ctx.fillStyle = "#fff"; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(hover.px, hover.py, 4.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
    const v = raw(f, hover.i, hover.j);
    let str = DATA.xlabel.split(" ")[0] + " = " + fmt(DATA.x[hover.i]);
    if (DATA.dims === 2) str += ", " + DATA.ylabel.split(" ")[0] + " = " + fmt(DATA.y[hover.j]);
    str += ", " + f.label + " = " + fmt(v) + (f.unit && v !== null ? " " + f.unit : "");
    if (state.view === "curve") {
      for (const g of curveFields(f)) {
        if (g !== f) str += ", " + g.label + " = " + fmt(raw(g, hover.i)) + (g.unit ? " " + g.unit : "");
      }
    }
    if (hover.checkpoint !== undefined) str += ", checkpoint " + DATA.trajectory.names[hover.checkpoint];
    out.textContent = str;
    Object.assign(out.dataset, { x: DATA.x[hover.i], y: DATA.dims === 2 ? DATA.y[hover.j] : "", value: v === null ? "nan" : v });
  }
  function syncControls() {
    const f = field();
    for (const b of document.querySelectorAll("[data-split]")) {
      const name = fieldName({ split: b.dataset.split, quantity: state.quantity });
      b.disabled = perPoint(state.quantity) || !DATA.fields[name];
      b.setAttribute("aria-pressed", String(!perPoint(state.quantity) && state.split === b.dataset.split));
    }
    for (const b of document.querySelectorAll("[data-quantity]")) {
      const name = fieldName({ split: state.split, quantity: b.dataset.quantity });
      b.classList.toggle("hidden", b.dataset.quantity === "hessian" && !DATA.fields.hessian_ratio);
      b.disabled = !DATA.fields[name];
      b.setAttribute("aria-pressed", String(state.quantity === b.dataset.quantity));
    }
    for (const b of document.querySelectorAll("[data-view]")) b.setAttribute("aria-pressed", String(state.view === b.dataset.view));
    $("views").classList.toggle("hidden", DATA.dims !== 2);
    $("log").checked = state.log;
    $("log").disabled = f.kind !== "loss";
    $("traj-label").classList.toggle("hidden", !DATA.trajectory);
    $("traj").checked = state.trajectory;
    $("metric-name").textContent = label(f);
  }
  function mouse(ev) {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * W) / r.width, ((ev.clientY - r.top) * H) / r.height];
  }
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    if (state.view !== "surface") return;
    drag = mouse(ev);
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointermove", (ev) => {
    const [px, py] = mouse(ev);
    if (drag) {
      state.az -= (px - drag[0]) * 0.01;
      state.el = Math.min(Math.PI / 2, Math.max(0.02, state.el + (py - drag[1]) * 0.01));
      drag = [px, py];
      render();
      return;
    }
    const f = field();
    if (!scale(f)) return;
    hover = state.view === "surface" ? hoverSurface(px, py)
      : state.view === "contour" ? hoverContour(f, px, py) : hoverCurve(f, px, py);
    showHover();
  });
  canvas.addEventListener("pointerleave", () => { hover = null; showHover(); });
  canvas.addEventListener("wheel", (ev) => {
    if (state.view !== "surface") return;
    ev.preventDefault();
    state.zoom = Math.min(6, Math.max(0.3, state.zoom * Math.exp(-ev.deltaY * 0.001)));
    render();
  }, { passive: false });
  for (const b of document.querySelectorAll("[data-split]")) b.addEventListener("click", () => { state.split = b.dataset.split; render(); });
  for (const b of document.querySelectorAll("[data-quantity]")) b.addEventListener("click", () => { state.quantity = b.dataset.quantity; render(); });
  for (const b of document.querySelectorAll("[data-view]")) b.addEventListener("click", () => { state.view = b.dataset.view; render(); });
  $("log").addEventListener("change", () => { state.log = $("log").checked; render(); });
  $("traj").addEventListener("change", () => { state.trajectory = $("traj").checked; render(); });

  $("title").textContent = DATA.title;
  document.title = DATA.title + " — loss landscape";
  $("subtitle").textContent = DATA.subtitle;
  const notes = [];
  if (DATA.stride[0] > 1 || DATA.stride[1] > 1) {
    notes.push("Grid " + DATA.full_shape.join(" x ") + " shown at every " + DATA.stride.join(" x ") + "-th point; surface.h5 has them all.");
  }
  if (DATA.trajectory && DATA.trajectory.explained_variance.length) {
    notes.push("Trajectory: PCA directions explain " + DATA.trajectory.explained_variance.map((v) => (100 * v).toFixed(1) + "%").join(" and ") + " of the variance.");
  }
  $("note").textContent = notes.join(" ");
  window.landscapeViewer = { state: state, render: render, drawn: drawn };
  window.addEventListener("resize", () => { resize(); render(); });
  resize();
  render();
})();
