"""Inline SVG charts for the HTML report: no script, no font or library from the network.

Each function returns one ``<svg>`` element as a string, sized in CSS pixels, with a
``data-chart`` attribute naming it (tests and readers find charts by it) and a ``<title>``
for screen readers. Empty data gives a chart frame with a "no data" note, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

__all__ = ["Series", "bar_chart", "interval_chart", "line_chart", "nice_ticks"]

PALETTE = ("#1f6feb", "#d1242f", "#8250df", "#1a7f37", "#bf8700", "#0a7b83", "#cf222e")
_FONT = 'font-family="system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"'
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 16, 30, 44


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y); x is epoch seconds on a time axis
    color: str = PALETTE[0]
    fill: bool = False  # shade between the line and zero (drawdown)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 x a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi - lo <= 1e-12:
        span = abs(hi) or 1.0
        lo, hi = lo - span * 0.5, hi + span * 0.5
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _fmt(v: float) -> str:
    v = v + 0.0  # -0.0 -> 0.0: no "-0" labels
    if abs(v) < 1e-12:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 100 or v == int(v):
        return f"{v:,.0f}"
    if a >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def _open(name: str, title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{_PAD_L}" y="18" font-size="13" font-weight="600" fill="#24292f" {_FONT}>'
        f"{escape(title)}</text>",
    ]


def _empty(parts: list[str], width: int, height: int) -> str:
    parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
                 f'font-size="12" fill="#57606a" {_FONT}>no data</text></svg>')
    return "".join(parts)


def _y_axis(parts: list[str], ticks: Sequence[float], y_of: Callable[[float], float],
            width: int, unit: str) -> None:
    for t in ticks:
        y = y_of(t)
        parts.append(f'<line x1="{_PAD_L}" x2="{width - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#d0d7de" stroke-width="1"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#57606a" {_FONT}>{escape(_fmt(t) + unit)}</text>')


def line_chart(name: str, title: str, series: Sequence[Series], *, width: int = 1100,
               height: int = 280, time_axis: bool = True, unit: str = "",
               step: bool = True) -> str:
    """Lines (step lines by default: realised equity changes only when a trade closes)."""
    parts = _open(name, title, width, height)
    pts = [p for s in series for p in s.points]
    if not pts:
        return _empty(parts, width, height)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts] + ([0.0] if any(s.fill for s in series) else [])
    x0, x1 = min(xs), max(xs)
    if x1 - x0 <= 0:
        x0, x1 = x0 - 1, x1 + 1
    ticks = nice_ticks(min(ys), max(ys))
    y_lo, y_hi = ticks[0], ticks[-1]
    plot_w = width - _PAD_L - _PAD_R
    plot_h = height - _PAD_T - _PAD_B

    def x_of(x: float) -> float:
        return _PAD_L + (x - x0) / (x1 - x0) * plot_w

    def y_of(y: float) -> float:
        return _PAD_T + (y_hi - y) / (y_hi - y_lo) * plot_h

    _y_axis(parts, ticks, y_of, width, unit)
    for i in range(5):
        xv = x0 + (x1 - x0) * i / 4
        label = (datetime.fromtimestamp(xv, UTC).strftime("%Y-%m-%d") if time_axis
                 else _fmt(xv))
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x_of(xv):.1f}" y="{height - _PAD_B + 18}" '
                     f'text-anchor="{anchor}" font-size="11" fill="#57606a" {_FONT}>'
                     f"{escape(label)}</text>")
    for s in series:
        if not s.points:
            continue
        coords: list[tuple[float, float]] = []
        prev_y: float | None = None
        for x, y in s.points:
            if step and prev_y is not None:
                coords.append((x_of(x), y_of(prev_y)))
            coords.append((x_of(x), y_of(y)))
            prev_y = y
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        if s.fill:
            zero = y_of(0.0)
            poly = f"{coords[0][0]:.1f},{zero:.1f} {path} {coords[-1][0]:.1f},{zero:.1f}"
            parts.append(f'<polygon class="area" points="{poly}" fill="{s.color}" '
                         f'fill-opacity="0.35" stroke="none"/>')
        parts.append(f'<polyline class="line" data-series="{escape(s.name)}" points="{path}" '
                     f'fill="none" stroke="{s.color}" stroke-width="2"/>')
    if len(series) > 1:
        for i, s in enumerate(reversed(series)):
            parts.append(f'<text x="{width - _PAD_R - i * 110}" y="18" text-anchor="end" '
                         f'font-size="11" fill="{s.color}" {_FONT}>{escape(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(name: str, title: str, labels: Sequence[str],
              values: Sequence[float | None], *, width: int = 540, height: int = 260,
              color: str = PALETTE[2], colors: Sequence[str] | None = None,
              unit: str = "", highlight_zero: bool = True) -> str:
    """Vertical bars, one per label; ``None`` values are drawn as an empty slot."""
    parts = _open(name, title, width, height)
    present = [v for v in values if v is not None]
    if not labels or not present:
        return _empty(parts, width, height)
    ticks = nice_ticks(min([*present, 0.0]), max([*present, 0.0]))
    y_lo, y_hi = ticks[0], ticks[-1]
    plot_w = width - _PAD_L - _PAD_R
    plot_h = height - _PAD_T - _PAD_B

    def y_of(y: float) -> float:
        return _PAD_T + (y_hi - y) / (y_hi - y_lo) * plot_h

    _y_axis(parts, ticks, y_of, width, unit)
    slot = plot_w / len(labels)
    bar_w = max(2.0, slot * 0.7)
    zero = y_of(0.0)
    label_every = max(1, math.ceil(len(labels) / 14))
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        cx = _PAD_L + slot * (i + 0.5)
        if v:  # None (no value) and zero draw no bar
            top, bottom = (y_of(v), zero) if v >= 0 else (zero, y_of(v))
            fill = colors[i % len(colors)] if colors else color
            parts.append(f'<rect class="bar" x="{cx - bar_w / 2:.1f}" y="{top:.1f}" '
                         f'width="{bar_w:.1f}" height="{max(bottom - top, 1.0):.1f}" '
                         f'fill="{fill}"><title>{escape(label)}: {escape(_fmt(v) + unit)}'
                         f"</title></rect>")
        if i % label_every == 0:
            parts.append(f'<text x="{cx:.1f}" y="{height - _PAD_B + 16}" text-anchor="middle" '
                         f'font-size="10" fill="#57606a" {_FONT}>{escape(label)}</text>')
    if highlight_zero:
        parts.append(f'<line x1="{_PAD_L}" x2="{width - _PAD_R}" y1="{zero:.1f}" '
                     f'y2="{zero:.1f}" stroke="#57606a" stroke-width="1"/>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(name: str, title: str,
                   rows: Sequence[tuple[str, float | None, float | None, float | None]],
                   *, width: int = 1100, row_height: int = 34) -> str:
    """Estimates with confidence intervals (a forest plot), one row each, zero marked.
    Rows are (label, estimate, low, high); each row is scaled on its own axis, since the
    metrics have different units."""
    height = _PAD_T + row_height * max(len(rows), 1) + 20
    parts = _open(name, title, width, height)
    usable = [r for r in rows if r[2] is not None and r[3] is not None]
    if not usable:
        return _empty(parts, width, height)
    left, right = 220, width - 210
    for i, (label, est, lo, hi) in enumerate(rows):
        y = _PAD_T + row_height * i + row_height / 2
        parts.append(f'<text x="12" y="{y + 4:.1f}" font-size="12" fill="#24292f" {_FONT}>'
                     f"{escape(label)}</text>")
        if lo is None or hi is None:
            parts.append(f'<text x="{left}" y="{y + 4:.1f}" font-size="11" fill="#57606a" '
                         f'{_FONT}>not enough trades</text>')
            continue
        # Symmetric about zero: where the interval sits against zero is the message.
        reach = max(abs(lo), abs(hi), abs(est) if est is not None else 0.0) * 1.1 or 1.0
        a, b = -reach, reach

        def x_of(v: float, a: float = a, b: float = b) -> float:
            return left + (v - a) / (b - a) * (right - left)

        parts.append(f'<line x1="{x_of(0.0):.1f}" x2="{x_of(0.0):.1f}" y1="{y - 12:.1f}" '
                     f'y2="{y + 12:.1f}" stroke="#57606a" stroke-dasharray="3,3"/>')
        parts.append(f'<line class="ci" x1="{x_of(lo):.1f}" x2="{x_of(hi):.1f}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="{PALETTE[0]}" stroke-width="4"/>')
        if est is not None:
            parts.append(f'<circle cx="{x_of(est):.1f}" cy="{y:.1f}" r="5" '
                         f'fill="{PALETTE[1]}"/>')
        text = f"{_fmt(est) if est is not None else '?'} [{_fmt(lo)}, {_fmt(hi)}]"
        parts.append(f'<text x="{right + 10}" y="{y + 4:.1f}" font-size="11" fill="#24292f" '
                     f"{_FONT}>{escape(text)}</text>")
    parts.append("</svg>")
    return "".join(parts)
