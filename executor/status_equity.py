"""The status view's equity, PnL, positions and equity curve, computed from the journal's
fills (no broker is asked: the view is a read of the journal).

- paper and shadow: ``[paper] initial_balance`` + the realised PnL journaled with every
  fill − fees + funding + the open positions marked at the newest journaled close of
  their symbol;
  positions are the journaled fills netted by the paper broker's own rule
  (``PaperBroker.restore``), as a restarted daemon rebuilds them;
- live: the day's baseline the daemon journaled (the broker's equity at the day's first
  reading) + the realised PnL of the day's fills − their fees + the day's funding + the
  same mark; without a baseline for today the equity is unknown (``None``), never guessed.
Funding is what a perpetual swap paid or received (the journal's costs, negative: paid).
The curve is the realised equity after each fill that realised PnL or paid a fee, and
after each funding payment, thinned
to at most ``CURVE_POINTS`` points, plus the marked equity at the newest bar's close when
a position is open. "Today" is the UTC day of ``now``: its start is the journaled baseline
when there is one for that day, else (paper) the realised equity at midnight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.settings import Settings

CURVE_POINTS = 500


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    volume: float  # signed lots, positive long
    avg_price: float
    mark: float | None  # the newest journaled close
    unrealised: float


@dataclass(frozen=True, slots=True)
class EquityPoint:
    at: datetime
    equity: float


@dataclass(frozen=True, slots=True)
class EquityView:
    basis: str  # how it was computed (this module's docstring, in one line)
    equity: float | None
    realised: float
    fees: float
    unrealised: float
    start: float | None  # initial balance (paper) or the day's baseline (live)
    day: str  # the UTC day "today" means
    day_start: float | None
    day_pnl: float | None
    curve: tuple[EquityPoint, ...] = ()
    funding: float = 0.0  # received (negative: paid), counted like fees


def equity_view(fills: Sequence[dict[str, Any]], *, settings: Settings, now: datetime,
                marks: dict[str, float], mark_time: datetime | None,
                baseline: dict[str, Any] | None, costs: Sequence[dict[str, Any]] = (),
                ) -> tuple[tuple[PositionView, ...], EquityView]:
    """(open positions, equity) from the account's fills and costs in time order."""
    positions = _positions(fills, settings.paper.contract_size, marks)
    unrealised = sum(p.unrealised for p in positions)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
    today_base = (baseline["start_equity"]
                  if baseline is not None and baseline["day"] == midnight else None)
    # Funding as rows the sums and the curve read like fills: no PnL realised, no fee.
    moves = sorted([*fills, *({"time": c["time"], "realized_pnl": 0.0, "fee": 0.0,
                               "funding": c["amount"]} for c in costs)],
                   key=lambda f: f["time"])
    if settings.mode == "live":
        counted = [f for f in moves if f["time"] >= midnight]
        start = today_base
        basis = ("the day's journaled baseline + realised PnL of today's fills - fees + "
                 "funding + open positions at the newest close")
    else:
        counted = moves
        start = settings.paper.initial_balance
        basis = ("initial balance + realised PnL of the journaled fills - fees + funding + "
                 "open positions at the newest close")
    realised = sum(float(f["realized_pnl"] or 0.0) for f in counted)
    fees = sum(float(f["fee"] or 0.0) for f in counted)
    funding = sum(float(f.get("funding") or 0.0) for f in counted)
    equity = None if start is None else start + realised - fees + funding + unrealised
    day_start = today_base
    if day_start is None and start is not None and settings.mode != "live":
        day_start = start + sum(_change(f) for f in moves if f["time"] < midnight)
    curve = _curve(counted, start, equity if positions else None, mark_time)
    return positions, EquityView(
        basis=basis, equity=equity, realised=realised, fees=fees, unrealised=unrealised,
        start=start, day=midnight.date().isoformat(), day_start=day_start,
        day_pnl=(equity - day_start) if equity is not None and day_start is not None
        else None, curve=curve, funding=funding)


def _change(f: dict[str, Any]) -> float:
    """What a fill (realised PnL less its fee) or a funding payment did to the equity."""
    return (float(f["realized_pnl"] or 0.0) - float(f["fee"] or 0.0)
            + float(f.get("funding") or 0.0))


def _positions(fills: Sequence[dict[str, Any]], contract_size: float,
               marks: dict[str, float]) -> tuple[PositionView, ...]:
    from domain import Fill, OrderSide
    from executor.brokers.paper import PaperBroker

    book = PaperBroker(contract_size=contract_size)
    book.restore([], [Fill(f["client_order_id"], f["fill_id"], f["symbol"],
                           OrderSide(f["side"]), f["time"], float(f["price"]),
                           float(f["volume"]), float(f["fee"] or 0.0)) for f in fills],
                 [str(f["kind"]) for f in fills])
    out = []
    for symbol, pos in sorted(book.positions().items()):
        if pos.is_flat:
            continue
        mark = marks.get(symbol)
        out.append(PositionView(symbol, pos.volume, pos.avg_price, mark,
                                pos.unrealized_pnl(mark, contract_size)
                                if mark is not None else 0.0))
    return tuple(out)


def _curve(fills: Sequence[dict[str, Any]], start: float | None, marked: float | None,
           mark_time: datetime | None) -> tuple[EquityPoint, ...]:
    if start is None:
        return ()
    points: list[EquityPoint] = []
    level = start
    for f in fills:
        change = _change(f)
        if change:
            level += change
            points.append(EquityPoint(f["time"], level))
    if len(points) > CURVE_POINTS:
        step = -(-(len(points) - 1) // (CURVE_POINTS - 1))
        points = [*points[:-1:step], points[-1]]
    if marked is not None and mark_time is not None and (
            not points or mark_time > points[-1].at):
        points.append(EquityPoint(mark_time, marked))
    return tuple(points)
