"""A candlestick chart as inline SVG, with trades and SMC events drawn on price.

No script and nothing fetched (the report's Content-Security-Policy forbids both): every
candle, marker, line and zone is an SVG element with a class naming what it is
(``candle``, ``trade-entry``, ``trade-exit``, ``stop``, ``target``, ``bos``, ``choch``,
``ob``, ``fvg``, ``sweep``) and a ``<title>`` a reader sees on hover. The x axis is the
bar's position (weekends and gaps take no room), the y axis the price at the symbol's
digits. What to draw is decided by ``executor.reports.price_panel``; this module only
draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from domain import Bar
from executor.reports.humanize import price as fmt_price
from executor.reports.svg import _FONT, PALETTE, nice_ticks

__all__ = ["Level", "Marker", "Zone", "candle_chart"]

UP, DOWN = "#1a7f37", "#cf222e"
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 76, 16, 44, 36
ENTRY = PALETTE[0]
_LEGEND = (("trade-entry", ENTRY, "entry (▲ buy, ▼ sell)"), ("trade-exit", UP, "exit won"),
           ("trade-exit", DOWN, "exit lost"), ("stop", DOWN, "stop"), ("target", UP, "target"),
           ("bos", PALETTE[2], "BOS"), ("choch", PALETTE[4], "CHoCH"),
           ("ob", PALETTE[5], "order block"), ("fvg", PALETTE[6], "FVG"),
           ("sweep", "#24292f", "sweep"))


@dataclass(frozen=True, slots=True)
class Marker:
    """A point event at a bar: ``kind`` trade-entry (``up`` for a buy), trade-exit or
    sweep."""

    kind: str
    at: int  # position of the bar in the drawn window
    price: float
    up: bool
    title: str
    color: str = PALETTE[0]


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal line from one bar to another: stop, target, bos or choch."""

    kind: str
    start: int
    end: int
    price: float
    title: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class Zone:
    """A price band over bars: an order block (``ob``) or a fair value gap (``fvg``)."""

    kind: str
    start: int
    end: int
    top: float
    bottom: float
    bullish: bool
    title: str


class _Frame:
    """Positions to pixels for one chart."""

    def __init__(self, n: int, lo: float, hi: float, width: int, height: int) -> None:
        self.ticks = nice_ticks(lo, hi, 6)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.slot = (width - _PAD_L - _PAD_R) / max(n, 1)
        self.plot_h = height - _PAD_T - _PAD_B

    def x(self, at: float) -> float:
        return _PAD_L + self.slot * (at + 0.5)

    def y(self, p: float) -> float:
        return _PAD_T + (self.hi - p) / (self.hi - self.lo) * self.plot_h

    def y_clamped(self, p: float) -> float:
        """Inside the plot: a zone reaching beyond the drawn prices is cut at the edge."""
        return min(max(self.y(p), _PAD_T), _PAD_T + self.plot_h)


def candle_chart(name: str, title: str, bars: Sequence[Bar], *, digits: int,
                 markers: Sequence[Marker] = (), levels: Sequence[Level] = (),
                 zones: Sequence[Zone] = (), width: int = 1100, height: int = 460) -> str:
    """The chart; the caller guarantees at least one bar (an empty panel is left out)."""
    lows = [b.low for b in bars] + [lv.price for lv in levels if lv.kind in ("stop", "target")]
    highs = [b.high for b in bars] + [lv.price for lv in levels if lv.kind in ("stop",
                                                                              "target")]
    f = _Frame(len(bars), min(lows), max(highs), width, height)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart candles" '
           f'data-chart="{escape(name)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f"<title>{escape(title)}</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{_PAD_L}" y="18" font-size="13" font-weight="600" fill="#24292f" '
           f"{_FONT}>{escape(title)}</text>"]
    out += _axes(f, bars, digits, width, height)
    out += [_zone(f, z) for z in zones]
    out += [_candle(f, i, b, digits) for i, b in enumerate(bars)]
    out += [_level(f, lv) for lv in levels]
    out += [_marker(f, m) for m in markers]
    out += _legend(width)
    out.append("</svg>")
    return "".join(out)


def _axes(f: _Frame, bars: Sequence[Bar], digits: int, width: int, height: int) -> list[str]:
    parts = []
    for t in f.ticks:
        y = f.y(t)
        parts.append(f'<line x1="{_PAD_L}" x2="{width - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eaeef2" stroke-width="1"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#57606a" {_FONT}>{escape(fmt_price(t, digits))}'
                     "</text>")
    n = len(bars)
    for k in range(5):
        i = min(n - 1, round((n - 1) * k / 4))
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        parts.append(f'<text x="{f.x(i):.1f}" y="{height - _PAD_B + 18}" '
                     f'text-anchor="{anchor}" font-size="11" fill="#57606a" {_FONT}>'
                     f"{escape(bars[i].time.strftime('%Y-%m-%d %H:%M'))}</text>")
    return parts


def _candle(f: _Frame, i: int, b: Bar, digits: int) -> str:
    color = UP if b.close >= b.open else DOWN
    x = f.x(i)
    body_w = max(1.0, f.slot * 0.7)
    top, bottom = f.y(max(b.open, b.close)), f.y(min(b.open, b.close))
    tip = (f"{b.time:%Y-%m-%d %H:%M} O {fmt_price(b.open, digits)} H "
           f"{fmt_price(b.high, digits)} L {fmt_price(b.low, digits)} C "
           f"{fmt_price(b.close, digits)}")
    return (f'<g class="candle"><title>{escape(tip)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.y(b.high):.1f}" y2="{f.y(b.low):.1f}" '
            f'stroke="{color}" stroke-width="1"/>'
            f'<rect x="{x - body_w / 2:.1f}" y="{top:.1f}" width="{body_w:.1f}" '
            f'height="{max(bottom - top, 1.0):.1f}" fill="{color}"/></g>')


def _zone(f: _Frame, z: Zone) -> str:
    color = PALETTE[5] if z.kind == "ob" else PALETTE[6]
    if not z.bullish:
        color = PALETTE[4] if z.kind == "ob" else PALETTE[2]
    x0, x1 = f.x(z.start) - f.slot / 2, f.x(z.end) + f.slot / 2
    y0, y1 = f.y_clamped(max(z.top, z.bottom)), f.y_clamped(min(z.top, z.bottom))
    return (f'<rect class="{escape(z.kind)}" x="{x0:.1f}" y="{y0:.1f}" '
            f'width="{max(x1 - x0, 1.0):.1f}" height="{max(y1 - y0, 1.0):.1f}" '
            f'fill="{color}" fill-opacity="0.18" stroke="{color}" stroke-opacity="0.6">'
            f"<title>{escape(z.title)}</title></rect>")


def _level(f: _Frame, lv: Level) -> str:
    color = {"stop": DOWN, "target": UP, "bos": PALETTE[2], "choch": PALETTE[4]}.get(
        lv.kind, "#57606a")
    dash = "4,3" if lv.kind in ("stop", "target") else "2,2"
    y = f.y_clamped(lv.price)
    x0, x1 = f.x(lv.start), f.x(max(lv.end, lv.start))
    label = (f'<text x="{x1 + 3:.1f}" y="{y - 3:.1f}" font-size="10" fill="{color}" '
             f"{_FONT}>{escape(lv.label)}</text>") if lv.label else ""
    return (f'<g class="{escape(lv.kind)}"><title>{escape(lv.title)}</title>'
            f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="{dash}"/>{label}</g>')


def _marker(f: _Frame, m: Marker) -> str:
    x, y = f.x(m.at), f.y(m.price)
    if m.kind == "trade-entry":  # a triangle pointing the trade's way, under or over price
        d = 7.0 if m.up else -7.0
        pts = f"{x:.1f},{y:.1f} {x - 6:.1f},{y + d * 1.6:.1f} {x + 6:.1f},{y + d * 1.6:.1f}"
        shape = f'<polygon points="{pts}" fill="{m.color}" stroke="#ffffff"/>'
    elif m.kind == "trade-exit":
        shape = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{m.color}" '
                 f'stroke="#ffffff" stroke-width="1.5"/>')
    else:  # sweep: a cross at the swept level
        shape = (f'<path d="M{x - 5:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 5:.1f} '
                 f'M{x - 5:.1f},{y + 5:.1f} L{x + 5:.1f},{y - 5:.1f}" stroke="{m.color}" '
                 f'stroke-width="2"/>')
    return f'<g class="{escape(m.kind)}"><title>{escape(m.title)}</title>{shape}</g>'


def _legend(width: int) -> list[str]:
    parts, x = [], _PAD_L
    for kind, color, label in _LEGEND:
        parts.append(f'<rect x="{x}" y="27" width="10" height="10" fill="{color}" '
                     f'fill-opacity="0.8" data-legend="{kind}"/>'
                     f'<text x="{x + 14}" y="36" font-size="11" fill="#24292f" {_FONT}>'
                     f"{escape(label)}</text>")
        x += 24 + 6 * len(label)
        if x > width - 80:
            break
    return parts
