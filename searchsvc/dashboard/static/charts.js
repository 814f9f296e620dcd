/* bitbudget's own small SVG charts (no dependencies, works offline): a scatter/line chart with
   hover tooltips, and a heatmap of one cell per layer. Exposed as window.BBCharts. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";

  function svgEl(name, attrs, parent) {
    var el = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) return "—";
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1); lo = lo - (hi - lo); }
    var span = hi - lo, step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = span / count / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var start = Math.floor(lo / step), end = Math.ceil(hi / step), ticks = [];
    for (var i = start; i <= end; i++) ticks.push(Number((i * step).toPrecision(12)));
    if (ticks.length < 2) ticks.push(Number(((end + 1) * step).toPrecision(12)));
    return ticks;
  }

  var tooltip = null;
  function tip(lines, evt) {
    tooltip = tooltip || document.getElementById("tooltip");
    if (!tooltip) return;
    if (!lines) { tooltip.hidden = true; return; }
    tooltip.textContent = "";
    lines.forEach(function (line, i) {
      var div = document.createElement("div");
      div.textContent = line;
      if (i === 0) div.className = "tip-head";
      tooltip.appendChild(div);
    });
    tooltip.hidden = false;
    var x = evt.pageX + 14, y = evt.pageY + 14;
    var w = tooltip.offsetWidth;
    if (x + w > window.scrollX + document.documentElement.clientWidth - 8) x = evt.pageX - w - 14;
    tooltip.style.left = x + "px";
    tooltip.style.top = y + "px";
  }

  function marker(g, shape, x, y, size, cls) {
    var s = size, el;
    if (shape === "square") {
      el = svgEl("rect", { x: x - s, y: y - s, width: 2 * s, height: 2 * s }, g);
    } else if (shape === "diamond") {
      s = s * 1.35;
      el = svgEl("path", { d: "M" + x + "," + (y - s) + "L" + (x + s) + "," + y + "L" + x + "," +
        (y + s) + "L" + (x - s) + "," + y + "Z" }, g);
    } else {
      el = svgEl("circle", { cx: x, cy: y, r: s }, g);
    }
    el.setAttribute("class", cls);
    return el;
  }

  /* opts: {xLabel, yLabel, yTick?, series: [{name, cls, shape, line, points: [{x, y, tip, href}]}]} */
  function scatter(el, opts) {
    el.textContent = "";
    var all = [];
    opts.series.forEach(function (s) { s.points.forEach(function (p) { all.push(p); }); });
    if (!all.length) {
      var p = document.createElement("p");
      p.className = "empty";
      p.textContent = opts.empty || "Nothing to draw.";
      el.appendChild(p);
      return null;
    }
    var W = Math.max(el.clientWidth || 640, 360), H = opts.height || 360;
    var m = { l: 70, r: 16, t: 14, b: 46 };
    var xs = all.map(function (p) { return p.x; }), ys = all.map(function (p) { return p.y; });
    var xt = niceTicks(Math.min.apply(null, xs), Math.max.apply(null, xs), 6);
    var yt = niceTicks(Math.min.apply(null, ys), Math.max.apply(null, ys), 5);
    var x0 = xt[0], x1 = xt[xt.length - 1], y0 = yt[0], y1 = yt[yt.length - 1];
    function sx(v) { return m.l + (v - x0) / (x1 - x0 || 1) * (W - m.l - m.r); }
    function sy(v) { return H - m.b - (v - y0) / (y1 - y0 || 1) * (H - m.t - m.b); }
    var svg = svgEl("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, class: "scatter",
      role: "img" }, el);
    var grid = svgEl("g", { class: "grid" }, svg);
    xt.forEach(function (t) {
      svgEl("line", { x1: sx(t), x2: sx(t), y1: m.t, y2: H - m.b }, grid);
      svgEl("text", { x: sx(t), y: H - m.b + 16, "text-anchor": "middle" }, grid).textContent = fmt(t);
    });
    yt.forEach(function (t) {
      svgEl("line", { x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t) }, grid);
      svgEl("text", { x: m.l - 6, y: sy(t) + 4, "text-anchor": "end" }, grid).textContent =
        (opts.yTick || fmt)(t);
    });
    svgEl("text", { x: (m.l + W - m.r) / 2, y: H - 8, "text-anchor": "middle", class: "axis-label" },
      svg).textContent = opts.xLabel;
    svgEl("text", { x: 14, y: (m.t + H - m.b) / 2, "text-anchor": "middle", class: "axis-label",
      transform: "rotate(-90 14 " + (m.t + H - m.b) / 2 + ")" }, svg).textContent = opts.yLabel;
    opts.series.forEach(function (s) {
      var g = svgEl("g", { class: "series " + s.cls, "data-series": s.name }, svg);
      if (s.line && s.points.length > 1) {
        var pts = s.points.slice().sort(function (a, b) { return a.x - b.x; });
        svgEl("polyline", { points: pts.map(function (p) { return sx(p.x) + "," + sy(p.y); })
          .join(" "), class: "line" }, g);
      }
      s.points.forEach(function (p) {
        var mk = marker(g, s.shape, sx(p.x), sy(p.y), s.size || 5, "point" + (p.href ? " link" : ""));
        mk.addEventListener("mousemove", function (e) { tip(p.tip, e); });
        mk.addEventListener("mouseleave", function () { tip(null); });
        if (p.href) mk.addEventListener("click", function () { window.location.href = p.href; });
      });
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    opts.series.forEach(function (s) {
      if (!s.points.length) return;
      var item = document.createElement("span");
      var sw = svgEl("svg", { width: 16, height: 16, class: "series " + s.cls });
      marker(sw, s.shape, 8, 8, 5, "point");
      item.appendChild(sw);
      item.appendChild(document.createTextNode(" " + s.name + " (" + s.points.length + ")"));
      legend.appendChild(item);
    });
    el.appendChild(legend);
    return svg;
  }

  function bitColor(w) {
    if (w === null || w === undefined) return "#999";
    if (w >= 16) return "#3b5ba5";
    var h = Math.round((Math.min(Math.max(w, 1), 8) - 1) / 7 * 130);
    return "hsl(" + h + ", 62%, 48%)";
  }

  /* groups: [{title, cells: [{name, choice, w, a, kind, params}]}] */
  function heatmap(el, groups) {
    el.textContent = "";
    var size = 16, gap = 2, W = Math.max(el.clientWidth || 720, 320);
    var perRow = Math.max(8, Math.floor((W - 4) / (size + gap)));
    var seen = {};
    groups.forEach(function (g) {
      var box = document.createElement("div");
      box.className = "hm-group";
      var h = document.createElement("div");
      h.className = "hm-title";
      h.textContent = g.title + " — " + g.cells.length + " layers";
      box.appendChild(h);
      var rows = Math.ceil(g.cells.length / perRow);
      var svg = svgEl("svg", { width: Math.min(g.cells.length, perRow) * (size + gap),
        height: rows * (size + gap), class: "hm" }, box);
      g.cells.forEach(function (c, i) {
        var site = c.w === null && c.a !== null && c.kind.indexOf("matmul") === 0;
        var bits = site ? c.a : c.w;  /* an attention site is coloured by its operands' bits */
        seen[bits === null ? "?" : bits] = true;
        var r = svgEl("rect", { x: (i % perRow) * (size + gap), y: Math.floor(i / perRow) * (size + gap),
          width: size, height: size, rx: site ? 8 : 2, fill: bitColor(bits), class: "hm-cell",
          "data-layer": c.name, "data-choice": c.choice }, svg);
        var lines = site ? [c.name, c.choice + " — attention matmul, both operands " + c.a + " bits" +
          (c.log ? " (log2 post-softmax, PTQ4SAM AGQ)" : ""), c.kind + ", no weight"] :
          [c.name, c.choice + " — weights " + (c.w === null ? "?" : c.w) + " bits, activations " +
          (c.a === null ? "?" : c.a) + " bits", c.kind + ", " + c.params.toLocaleString() + " parameters"];
        r.addEventListener("mousemove", function (e) { tip(lines, e); });
        r.addEventListener("mouseleave", function () { tip(null); });
      });
      el.appendChild(box);
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    Object.keys(seen).sort(function (a, b) { return Number(a) - Number(b); }).forEach(function (w) {
      var item = document.createElement("span");
      var sw = document.createElement("i");
      sw.className = "swatch";
      sw.style.background = bitColor(w === "?" ? null : Number(w));
      item.appendChild(sw);
      item.appendChild(document.createTextNode(" w" + w + (w === "16" ? " (float)" : "")));
      legend.appendChild(item);
    });
    el.appendChild(legend);
  }

  window.BBCharts = { scatter: scatter, heatmap: heatmap, fmt: fmt, bitColor: bitColor };
})();
