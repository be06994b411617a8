// Charts of the console, drawn with TradingView Lightweight Charts (vendored, Apache-2.0;
// its attribution logo stays on). The data comes from executor/console/charts.py:
// candles, price lines (entry / stop / target), SMC zones (two dashed lines each, from the
// bar the zone formed at), and markers (BOS, CHoCH, sweeps, the order and its fills).
(function () {
  "use strict";
  // The console's one chart look (lines.js draws its line charts on it too).
  function base(el) {
    return window.LightweightCharts.createChart(el, {
      autoSize: true,
      layout: { background: { color: "#0b0f14" }, textColor: "#d7dde5", attributionLogo: true },
      grid: { vertLines: { color: "#1b222b" }, horzLines: { color: "#1b222b" } },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { borderColor: "#2a323d" },
    });
  }

  function draw(el, data) {
    const LC = window.LightweightCharts;
    const chart = base(el);
    const candles = chart.addCandlestickSeries({
      upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a",
      wickDownColor: "#ef5350", borderVisible: false,
      priceFormat: { type: "price", precision: 5, minMove: 0.00001 },
    });
    candles.setData(data.candles || []);
    for (const line of data.lines || []) {
      candles.createPriceLine({ price: line.price, color: line.color, lineWidth: 2,
                                lineStyle: LC.LineStyle.Solid, axisLabelVisible: true,
                                title: line.title });
    }
    for (const zone of data.zones || []) {
      if (data.end === null || zone.from > data.end) continue;
      for (const price of [zone.top, zone.bottom]) {
        const s = chart.addLineSeries({ color: zone.color, lineWidth: 1,
                                        lineStyle: LC.LineStyle.Dashed,
                                        priceLineVisible: false, lastValueVisible: false,
                                        crosshairMarkerVisible: false,
                                        title: price === zone.top ? zone.title : "" });
        const points = zone.from === data.end ? [{ time: zone.from, value: price }]
          : [{ time: zone.from, value: price }, { time: data.end, value: price }];
        s.setData(points);
      }
    }
    candles.setMarkers(data.markers || []);
    chart.timeScale().fitContent();
    el.dataset.rendered = String((data.candles || []).length);
  }
  window.dtaCharts = { draw: draw, base: base };
})();
