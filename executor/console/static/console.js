// The console's only script of its own (no inline script: the CSP forbids it).
// 1. Live updates: one EventSource on /events; each named event (a journal topic that
//    changed) becomes an htmx trigger "dta:<topic>" on the body, which the fragments
//    showing that topic listen for (hx-trigger="dta:<topic> from:body").
// 2. Refusals (4xx) from htmx actions are swapped like successes, so the message shows.
// 3. Charts: every element with data-chart holds its data as JSON in that attribute
//    (data, never executed; Jinja's tojson escapes quotes and angle brackets) and is
//    drawn with lightweight-charts when the page loads it (charts.js).
(function () {
  "use strict";
  const TOPICS = ["approvals", "orders", "incidents", "state", "params", "providers", "bars"];

  function connect() {
    const url = document.body.dataset.events;
    if (!url || !window.EventSource) return;
    const source = new EventSource(url);
    for (const topic of TOPICS) {
      source.addEventListener(topic, function () {
        if (window.htmx) htmx.trigger(document.body, "dta:" + topic);
      });
    }
    source.addEventListener("hello", function () {
      document.body.dataset.live = "on";
    });
    source.onerror = function () { document.body.dataset.live = "off"; };
  }

  document.addEventListener("htmx:beforeSwap", function (evt) {
    const status = evt.detail.xhr.status;
    if (status >= 400 && status < 500) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  function drawCharts(root) {
    if (!window.LightweightCharts || !window.dtaCharts) return;
    root.querySelectorAll("[data-chart]:not([data-drawn])").forEach(function (el) {
      el.dataset.drawn = "1";
      window.dtaCharts.draw(el, JSON.parse(el.dataset.chart));
    });
  }

  // 4. Time left of a request on the wall clock counts down here (one on a replay's
  //    clock waits for the replay's next bar: the server renders it again then).
  function left(seconds) {
    if (seconds <= 0) return "expired";
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600),
          m = Math.floor(seconds % 3600 / 60), s = Math.floor(seconds % 60);
    if (d) return d + " d " + h + " h left";
    if (h) return h + " h " + m + " min left";
    return m + " min " + s + " s left";
  }
  function tick() {
    document.querySelectorAll(".time-left[data-expires]").forEach(function (el) {
      const seconds = Number(el.dataset.expires) - Date.now() / 1000;
      el.textContent = left(seconds);
      el.classList.toggle("expired", seconds <= 0);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    connect();
    drawCharts(document);
    setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSettle", function (evt) { drawCharts(evt.target); });
})();
