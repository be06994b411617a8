// Line charts of the Overview and Providers pages (the equity curve, the providers'
// figures over a window), drawn with TradingView Lightweight Charts (vendored,
// Apache-2.0; its attribution logo stays on). Every element with data-lines holds its
// data as JSON in that attribute (data, never executed: Jinja's tojson escapes quotes and
// angle brackets), from executor/console/pages/overview.py and providers.py:
// {"series": [{"title", "color", "points": [{"time", "value"}]}], "precision"}.
(function () {
  "use strict";
  const COLORS = ["#6cb4ff", "#f0a030", "#26a69a", "#ef5350", "#b388ff", "#ffd54f"];

  function draw(el, data) {
    const chart = window.dtaCharts.base(el);  // charts.js, loaded before this file
    const precision = typeof data.precision === "number" ? data.precision : 2;
    let points = 0;
    (data.series || []).forEach(function (s, i) {
      const line = chart.addLineSeries({
        color: s.color || COLORS[i % COLORS.length], lineWidth: 2, title: s.title || "",
        priceFormat: { type: "price", precision: precision, minMove: Math.pow(10, -precision) },
      });
      line.setData(s.points || []);
      points += (s.points || []).length;
    });
    chart.timeScale().fitContent();
    el.dataset.rendered = String(points);
  }

  function drawAll(root) {
    if (!window.LightweightCharts || !window.dtaCharts) return;
    root.querySelectorAll("[data-lines]:not([data-drawn])").forEach(function (el) {
      el.dataset.drawn = "1";
      draw(el, JSON.parse(el.dataset.lines));
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (evt) { drawAll(evt.target); });
})();
