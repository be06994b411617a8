"""What a console chart draws, as plain JSON for ``static/charts.js`` (lightweight-charts):
candles, horizontal price lines (entry, stop, target), SMC zones (order blocks, fair value
gaps) from the bar they formed at to the last bar, structure breaks (BOS, CHoCH) and
sweeps as markers, and trade markers (the order, its fills).

A snapshot names bars by their index in the stream; its own bar (``snapshot.time``) is
found among the bars given, and index ``i`` is the bar ``snapshot.index - i`` places
before it. What falls outside the bars shown starts at the first bar (a zone) or is left
out (a marker).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from domain import Bar

UP, DOWN, INFO = "#26a69a", "#ef5350", "#f0a030"
LEVEL_COLORS = {"entry": "#6cb4ff", "stop": DOWN, "target": UP}


def _t(moment: datetime) -> int:
    return int(moment.timestamp())


class _Index:
    """Stream index -> bar time, anchored at the snapshot's own bar."""

    def __init__(self, bars: Sequence[Bar], snapshot: dict[str, Any] | None) -> None:
        self.bars = bars
        self.last = int(snapshot["index"]) if snapshot and "index" in snapshot else None
        times = [b.time.isoformat() for b in bars]
        at = snapshot.get("time") if snapshot else None
        self.anchor = times.index(at) if at in times else len(bars) - 1

    def time(self, index: Any, *, clamp: bool = False) -> int | None:
        if self.last is None or not isinstance(index, int) or not self.bars:
            return None
        pos = self.anchor - (self.last - index)
        if pos < 0 and clamp:
            pos = 0
        return _t(self.bars[pos].time) if 0 <= pos < len(self.bars) else None


def _smc(snapshot: dict[str, Any], at: _Index) -> tuple[list[dict[str, Any]],
                                                        list[dict[str, Any]]]:
    """(zones, markers) of the snapshot's SMC context."""
    zones, markers = [], []
    for kind, label in (("order_blocks", "OB"), ("fvgs", "FVG")):
        for z in snapshot.get(kind) or []:
            start = at.time(z.get("index"), clamp=True)
            if start is not None:
                color = UP if z.get("direction") == "long" else DOWN
                zones.append({"title": f"{label} {z.get('direction')}", "top": z["top"],
                              "bottom": z["bottom"], "from": start, "color": color})
    for kind, label in (("last_bos", "BOS"), ("last_choch", "CHoCH")):
        for b in snapshot.get(kind) or []:
            t = at.time(b.get("index"))
            if t is not None:
                long = b.get("direction") == "long"
                markers.append({"time": t, "position": "aboveBar" if long else "belowBar",
                                "color": UP if long else DOWN, "shape": "circle",
                                "text": f"{label} {b.get('level')}"})
    for w in snapshot.get("sweeps") or []:
        t = at.time(w.get("index"))
        if t is not None:
            high = w.get("side") == "high"
            markers.append({"time": t, "position": "aboveBar" if high else "belowBar",
                            "color": INFO, "shape": "square", "text": "sweep"})
    return zones, markers


def chart(bars: Sequence[Bar], *, snapshot: dict[str, Any] | None = None,
          levels: dict[str, float | None] | None = None,
          markers: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The chart's JSON: ``levels`` name -> price (entry, stop, target), ``markers`` in
    lightweight-charts' marker shape with ``time`` a datetime."""
    at = _Index(bars, snapshot)
    zones, smc_markers = _smc(snapshot, at) if snapshot else ([], [])
    trade = [{**m, "time": _t(m["time"])} for m in markers
             if bars and bars[0].time <= m["time"] <= bars[-1].time]
    return {
        "candles": [{"time": _t(b.time), "open": b.open, "high": b.high, "low": b.low,
                     "close": b.close} for b in bars],
        "lines": [{"title": name, "price": price, "color": LEVEL_COLORS.get(name, INFO)}
                  for name, price in (levels or {}).items() if price is not None],
        "zones": zones,
        "end": _t(bars[-1].time) if bars else None,
        "markers": sorted([*smc_markers, *trade], key=lambda m: m["time"]),
    }
