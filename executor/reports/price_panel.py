"""The report's price panel: candles of one window of the replay, the trades drawn on them
(entry, exit, stop, target) and the SMC events of those bars (BOS/CHoCH, order blocks,
fair value gaps, liquidity sweeps).

A replay holds tens of thousands of bars; one chart shows ``window`` of them, the
stretch holding the most trade entries, and says so (every trade is in the trades table).
SMC events come from a fresh ``SnapshotBuilder`` with the run's parameters, fed from
``warmup`` bars before the window: each event appears at the bar it became known, as the
strategy saw it (causal, docs/smc.md), so the panel shows what the run could know.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain import Bar, Order
from executor.reports.candles import DOWN, ENTRY, UP, Level, Marker, Zone, candle_chart
from executor.reports.html import Section, Table
from executor.reports.humanize import money, price, r_multiple
from executor.reports.metrics import TradeBook
from strategies.snapshot import SnapshotBuilder

__all__ = ["PANEL_TITLE", "price_section", "trade_window"]

PANEL_TITLE = "Price, trades and SMC events"
_MAX_ZONES = 40  # per kind, the newest: enough to read, few enough to see price


@dataclass
class _Drawn:
    markers: list[Marker] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    zones: list[Zone] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)  # the table's rows


def trade_window(times: Sequence[Any], entries: Sequence[Any], window: int) -> int:
    """First bar of the ``window`` bars holding the most entries (the earliest such
    stretch; a quarter of the window before its first entry); the last ``window`` bars
    without entries."""
    n = len(times)
    if n <= window:
        return 0
    idx = sorted(max(0, bisect.bisect_right(times, t) - 1) for t in entries)
    best, best_count = n - window, 0
    for e in idx:
        start = min(max(0, e - window // 4), n - window)
        k = bisect.bisect_left(idx, start + window) - bisect.bisect_left(idx, start)
        if k > best_count:
            best, best_count = start, k
    return best


def price_section(bars: Sequence[Bar], book: TradeBook, orders: Sequence[Order], *,
                  digits: int, currency: str, snapshot_params: Mapping[str, Any],
                  window: int = 200, warmup: int = 500) -> Section:
    """The panel's section; without bars, only a note saying why it is left out."""
    if not bars:
        return Section("price", PANEL_TITLE, notes=(
            "Price panel left out: the journal holds no bars.",))
    times = [b.time for b in bars]
    trades = [t for t in book.closed if t.symbol == bars[0].symbol]
    still_open = [t for t in book.still_open if t.symbol == bars[0].symbol]
    entry_times = [t.entry_time for t in trades] + [t.entry_time for t in still_open]
    start = trade_window(times, entry_times, window)
    shown = bars[start:start + window]
    drawn = _Drawn()
    _draw_trades(drawn, times[start:start + window], book, orders, trades, still_open,
                 digits, currency)
    _draw_smc(drawn, bars, start, len(shown), digits, snapshot_params, warmup)
    entries = sum(1 for m in drawn.markers if m.kind == "trade-entry")
    chart = candle_chart("price", f"{bars[0].symbol} {bars[0].timeframe}: "
                         f"{shown[0].time:%Y-%m-%d %H:%M} .. {shown[-1].time:%Y-%m-%d %H:%M}",
                         shown, digits=digits, markers=drawn.markers, levels=drawn.levels,
                         zones=drawn.zones)
    kinds = [e[0] for e in drawn.events]
    note = (f"Bars {start + 1:,}-{start + len(shown):,} of {len(bars):,}: the "
            f"{len(shown)}-bar stretch with the most trade entries ({entries} of "
            f"{len(trades) + len(still_open)}; every trade is in the trades table). SMC "
            f"events from a snapshot builder with the run's parameters fed from {warmup} "
            "bars earlier, each drawn from the bar it became known: "
            + ", ".join(f"{kinds.count(k)} {k}" for k in ("BOS", "CHoCH", "order block",
                                                         "FVG", "sweep")) + ".")
    table = Table("smc_events", "SMC events in the chart's window",
                  ("kind", "direction", "time", "price", "bottom"), tuple(drawn.events),
                  shown=tuple((k, w, f"{t:%Y-%m-%d %H:%M}", price(p, digits),
                               price(b, digits)) for k, w, t, p, b in drawn.events))
    return Section("price", PANEL_TITLE, notes=(note,), charts=(chart,), tables=(table,))


def _draw_trades(d: _Drawn, times: Sequence[Any], book: TradeBook, orders: Sequence[Order],
                 trades: Sequence[Any], still_open: Sequence[Any], digits: int,
                 currency: str) -> None:
    if not times:
        return
    by_id = {o.client_order_id: o for o in orders}
    first, last = times[0], times[-1]

    def pos(t: Any) -> int:
        return max(0, bisect.bisect_right(times, t) - 1)

    for t in [*trades, *still_open]:
        exit_time = getattr(t, "exit_time", None)
        if t.entry_time > last or (exit_time or last) < first:
            continue
        intent = by_id[t.client_order_id].intent if t.client_order_id in by_id else None
        long = t.side == "long"
        a, b = pos(t.entry_time), pos(exit_time) if exit_time else len(times) - 1
        head = f"{t.side} {t.volume:g} @ {price(t.entry_price, digits)}"
        if first <= t.entry_time <= last:
            d.markers.append(Marker("trade-entry", a, t.entry_price, long,
                                    f"entry {t.entry_time:%Y-%m-%d %H:%M}: {head}", ENTRY))
        if exit_time is not None and exit_time <= last:
            won = t.pnl > 0
            d.markers.append(Marker(
                "trade-exit", b, t.exit_price, long,
                f"exit {exit_time:%Y-%m-%d %H:%M} ({t.exit_kind}) @ "
                f"{price(t.exit_price, digits)}: {money(t.pnl, currency, signed=True)}, "
                f"{r_multiple(t.r_multiple)}", UP if won else DOWN))
        if intent is not None and intent.stop_loss is not None:
            d.levels.append(Level("stop", a, b, intent.stop_loss,
                                  f"stop {price(intent.stop_loss, digits)} ({head})"))
        if intent is not None and intent.take_profit is not None:
            d.levels.append(Level("target", a, b, intent.take_profit,
                                  f"target {price(intent.take_profit, digits)} ({head})"))


def _draw_smc(d: _Drawn, bars: Sequence[Bar], start: int, n: int, digits: int,
              params: Mapping[str, Any], warmup: int) -> None:
    """Feed the builder from ``warmup`` bars before the window; draw what overlaps it."""
    first = max(0, start - warmup)
    shift = start - first  # builder index -> window position: index - shift
    seen: dict[tuple[Any, ...], Any] = {}
    last_seen: dict[tuple[Any, ...], int] = {}
    builder = SnapshotBuilder(**dict(params))
    for i, bar in enumerate(bars[first:start + n]):
        s = builder.update(bar)
        for kind, items in (("bos", s.bos), ("choch", s.choch), ("sweep", s.sweeps),
                            ("ob", (*s.order_blocks, *s.mitigation_blocks)),
                            ("fvg", s.fvgs)):
            for item in items:
                key = (kind, getattr(item, "direction", getattr(item, "side", None)),
                       item.index)
                seen[key] = item
                last_seen[key] = i
    zones: dict[str, list[Zone]] = {"ob": [], "fvg": []}
    for key, item in sorted(seen.items(), key=lambda kv: kv[0][2]):
        kind = key[0]
        end = _end_of(kind, item, last_seen[key]) - shift
        begin = (item.swing_index if kind in ("bos", "choch") else item.index) - shift
        if end < 0 or begin >= n:
            continue
        begin, end = max(0, begin), min(n - 1, end)
        _draw_event(d, zones, kind, item, begin, end, digits, bars[first + item.index])
    for drawn_zones in zones.values():
        d.zones += drawn_zones[-_MAX_ZONES:]


def _end_of(kind: str, item: Any, last_seen: int) -> int:
    if kind in ("bos", "choch", "sweep"):
        return int(item.index)
    done = item.broken_index if kind == "ob" else item.filled_index
    return int(done) if done is not None else last_seen


def _draw_event(d: _Drawn, zones: dict[str, list[Zone]], kind: str, item: Any, begin: int,
                end: int, digits: int, bar: Bar) -> None:
    when = f"{bar.time:%Y-%m-%d %H:%M}"
    if kind in ("bos", "choch"):
        label = "BOS" if kind == "bos" else "CHoCH"
        way = "bullish" if item.direction.sign > 0 else "bearish"
        d.levels.append(Level(kind, begin, end, item.level, f"{way} {label} through "
                              f"{price(item.level, digits)}", label))
        d.events.append((label, way, item.time, item.level, None))
    elif kind == "sweep":
        side = "highs" if item.side.value == "high" else "lows"
        d.markers.append(Marker("sweep", end, item.level, side == "lows",
                                f"sweep of the {side} at {price(item.level, digits)}",
                                "#24292f"))
        d.events.append(("sweep", side, item.time, item.level, None))
    else:
        bullish = item.direction.sign > 0
        name = "order block" if kind == "ob" else "FVG"
        way = "bullish" if bullish else "bearish"
        zones[kind].append(Zone(kind, begin, end, item.top, item.bottom, bullish,
                                f"{way} {name} {price(item.bottom, digits)}-"
                                f"{price(item.top, digits)} from {when}"))
        d.events.append((name, way, bar.time, item.top, item.bottom))
