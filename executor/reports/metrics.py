"""Closed trades and run results from journaled orders and fills. Pure functions, no I/O.

A *trade* is one opening order's position from its first entry fill until exit fills have
closed all of its volume. Exit fills (``stop_loss``, ``take_profit``, ``close``) name the
opening order's client id (the paper broker and the MT5 adapter both attribute them so);
an entry fill on the other side of an open trade (a reversal, or a reduce-only order)
closes that trade first, oldest first, and only its remainder opens a new one. PnL is the
journaled realised PnL of the closing fills minus every fee of the trade (a fee is a cost)
plus the funding a perpetual swap received while the trade was open (negative: paid; a
payment is shared by the trades open on its symbol at its time, by open volume; one with
no trade of ours open is in no trade), so the numbers here add up to the broker's.

Definitions (R, expectancy, drawdown, Sharpe, exposure) are in docs/reports.md; every
function here implements exactly one of them.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from typing import Protocol

from domain import Order

__all__ = [
    "CostLike", "EquityPoint", "FillLike", "HistogramBin", "OpenTrade", "RunMetrics", "Trade",
    "TradeBook", "compute_metrics", "daily_sharpe", "drawdowns", "equity_curve", "exposure",
    "r_histogram", "reconstruct_trades", "trade_sharpe",
]

TRADING_DAYS_PER_YEAR = 252
_EPS = 1e-12


class FillLike(Protocol):
    """What the metrics read from a fill: ``executor.journal.models.FillRow`` fits."""

    @property
    def client_order_id(self) -> str: ...
    @property
    def fill_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def price(self) -> float: ...
    @property
    def volume(self) -> float: ...
    @property
    def fee(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def realized_pnl(self) -> float: ...


class CostLike(Protocol):
    """A funding payment: ``executor.journal.costs.Cost`` fits."""

    @property
    def symbol(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def amount(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed trade. ``risk`` is the initial risk in money, |entry - stop| x volume x
    contract size, with the entry at its average fill price and the stop the opening
    order's; ``r_multiple`` is ``pnl / risk`` (``None`` without a stop)."""

    client_order_id: str
    symbol: str
    side: str  # "long" | "short"
    entry_time: datetime
    entry_price: float
    exit_time: datetime
    exit_price: float
    volume: float
    pnl: float
    fees: float
    stop_loss: float | None
    risk: float | None
    r_multiple: float | None
    exit_kind: str  # stop_loss | take_profit | close | reversal | mixed
    decision_id: int | None = None
    funding: float = 0.0  # received while open (negative: paid), in ``pnl``

    @property
    def won(self) -> bool:
        return self.pnl > 0


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """A position still open at the end of the journal (not counted as a trade)."""

    client_order_id: str
    symbol: str
    side: str
    entry_time: datetime
    entry_price: float
    volume: float
    realized_pnl: float


@dataclass(frozen=True, slots=True)
class TradeBook:
    closed: tuple[Trade, ...]
    still_open: tuple[OpenTrade, ...]


@dataclass
class _Building:
    coid: str
    symbol: str
    sign: int  # +1 long, -1 short
    entry_time: datetime
    entry_volume: float = 0.0
    entry_value: float = 0.0  # sum(price x volume) of entry fills
    open_volume: float = 0.0
    exit_volume: float = 0.0
    exit_value: float = 0.0
    exit_time: datetime | None = None
    realized: float = 0.0
    fees: float = 0.0
    funding: float = 0.0
    exit_kinds: set[str] = field(default_factory=set)

    def add_entry(self, price: float, volume: float, fee: float) -> None:
        self.entry_volume += volume
        self.entry_value += price * volume
        self.open_volume += volume
        self.fees += fee

    def add_exit(self, t: datetime, price: float, volume: float, realized: float, fee: float,
                 kind: str) -> None:
        self.open_volume -= volume
        self.exit_volume += volume
        self.exit_value += price * volume
        self.exit_time = t
        self.realized += realized
        self.fees += fee
        self.exit_kinds.add(kind)


def _side_sign(side: str) -> int:
    return 1 if side.lower() in ("buy", "long") else -1


def reconstruct_trades(orders: Iterable[Order], fills: Iterable[FillLike],
                       contract_size: float, costs: Iterable[CostLike] = ()) -> TradeBook:
    """Closed and still-open trades from the journal's orders, fills and costs.

    Fills are taken in time order; at the same timestamp entry fills come before funding
    payments and those before exit fills (the paper broker fills pending entries at the
    bar's open, then checks stops; a position held at the funding time pays it).
    """
    book = _Book({o.client_order_id: o for o in orders})
    events: list[tuple[datetime, int, int, Callable[[], None]]] = [
        (f.time, 0 if f.kind == "entry" else 2, i,
         partial(book.entry if f.kind == "entry" else book.exit, f))
        for i, f in enumerate(fills)]
    events += [(c.time, 1, i, partial(book.cost, c)) for i, c in enumerate(costs)]
    for *_, apply in sorted(events, key=lambda ev: ev[:3]):
        apply()
    return book.trades(contract_size)


class _Book:
    """The trades being built: open ones per symbol (oldest first) and closed ones."""

    def __init__(self, orders: dict[str, Order]) -> None:
        self.orders = orders
        self.open: dict[str, list[_Building]] = {}
        self.done: list[_Building] = []

    def cost(self, c: CostLike) -> None:
        """A funding payment, shared by the trades open on its symbol by open volume."""
        trades = [tr for tr in self.open.get(c.symbol, ()) if tr.open_volume > _EPS]
        volume = sum(tr.open_volume for tr in trades)
        for tr in trades:
            tr.funding += c.amount * tr.open_volume / volume

    def exit(self, f: FillLike) -> None:
        trades = self.open.setdefault(f.symbol, [])
        own = [tr for tr in trades if tr.coid == f.client_order_id]
        if own:  # exits name their opening order: close that one first
            rest = [tr for tr in trades if tr.coid != f.client_order_id]
            trades[:] = own + rest
        self._close(trades, f, f.kind)

    def entry(self, f: FillLike) -> None:
        """An entry closes open trades on the other side first (a reversal, or a
        reduce-only order's close); what is left of it opens or adds to its own trade."""
        sign = _side_sign(f.side)
        trades = self.open.setdefault(f.symbol, [])
        order = self.orders.get(f.client_order_id)
        reduce_only = order is not None and order.intent.reduce_only
        opposite = [tr for tr in trades if tr.sign != sign]
        left = f.volume
        if opposite:
            same = [tr for tr in trades if tr.sign == sign]
            left = self._close(opposite, f, "close" if reduce_only else "reversal")
            trades[:] = opposite + same
        if left <= _EPS or reduce_only:
            return
        fee = f.fee * (left / f.volume) if f.volume > 0 else 0.0
        existing = next((tr for tr in trades if tr.coid == f.client_order_id), None)
        if existing is None:
            existing = _Building(f.client_order_id, f.symbol, sign, f.time)
            trades.append(existing)
        existing.add_entry(f.price, left, fee)

    def _close(self, trades: list[_Building], f: FillLike, kind: str) -> float:
        """Close the fill's volume of ``trades`` oldest first; the fill's realised PnL is
        split over the volume it closed, its fee over its whole volume. Returns the volume
        left over (which opens a position)."""
        volume = f.volume
        closing = min(volume, sum(tr.open_volume for tr in trades))
        left = volume
        while left > _EPS and trades:
            tr = trades[0]
            take = min(left, tr.open_volume)
            tr.add_exit(f.time, f.price, take,
                        f.realized_pnl * take / closing if closing > 0 else 0.0,
                        f.fee * take / volume if volume > 0 else 0.0, kind)
            left -= take
            if tr.open_volume <= _EPS:
                self.done.append(trades.pop(0))
        return left

    def trades(self, contract_size: float) -> TradeBook:
        closed = [_finish(tr, self.orders.get(tr.coid), contract_size) for tr in self.done]
        closed.sort(key=lambda t: (t.exit_time, t.entry_time, t.client_order_id))
        still_open = [
            OpenTrade(tr.coid, tr.symbol, "long" if tr.sign > 0 else "short", tr.entry_time,
                      tr.entry_value / tr.entry_volume if tr.entry_volume else 0.0,
                      tr.open_volume, tr.realized)
            for trades in self.open.values() for tr in trades]
        return TradeBook(tuple(closed), tuple(still_open))


def _finish(tr: _Building, order: Order | None, contract_size: float) -> Trade:
    entry = tr.entry_value / tr.entry_volume if tr.entry_volume else 0.0
    exit_price = tr.exit_value / tr.exit_volume if tr.exit_volume else entry
    stop = order.intent.stop_loss if order is not None else None
    risk: float | None = None
    if stop is not None and math.isfinite(stop):
        risk = abs(entry - stop) * tr.entry_volume * contract_size
        if risk <= _EPS:
            risk = None
    pnl = tr.realized - tr.fees + tr.funding
    kinds = tr.exit_kinds
    return Trade(
        client_order_id=tr.coid, symbol=tr.symbol, side="long" if tr.sign > 0 else "short",
        entry_time=tr.entry_time, entry_price=entry,
        exit_time=tr.exit_time or tr.entry_time, exit_price=exit_price,
        volume=tr.entry_volume, pnl=pnl, fees=tr.fees, stop_loss=stop, risk=risk,
        r_multiple=pnl / risk if risk is not None else None,
        exit_kind=next(iter(kinds)) if len(kinds) == 1 else "mixed",
        decision_id=order.intent.decision_id if order is not None else None,
        funding=tr.funding)


# --------------------------------------------------------------------------- run results


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """Realised equity after a trade closes, and its drawdown from the running peak."""

    time: datetime
    equity: float
    drawdown: float  # money below the running peak (>= 0)
    drawdown_pct: float  # percent of the running peak (>= 0)


@dataclass(frozen=True, slots=True)
class HistogramBin:
    low: float  # inclusive
    high: float  # exclusive
    count: int


@dataclass(frozen=True, slots=True)
class RunMetrics:
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    total_pnl: float
    initial_balance: float
    final_equity: float
    trades_with_r: int
    avg_r: float | None
    median_r: float | None
    total_r: float
    avg_win_r: float | None
    avg_loss_r: float | None
    expectancy_r: float | None
    expectancy_money: float | None
    profit_factor: float | None
    max_drawdown: float
    max_drawdown_pct: float
    exposure: float | None
    sharpe_per_trade: float | None
    sharpe_daily: float | None
    r_histogram: tuple[HistogramBin, ...]
    equity_curve: tuple[EquityPoint, ...]

    def as_dict(self) -> dict[str, float | int | None]:
        """The scalar results, for JSON, the run summary and the CLI."""
        return {k: getattr(self, k) for k in (
            "trades", "wins", "losses", "win_rate", "total_pnl", "initial_balance",
            "final_equity", "trades_with_r", "avg_r", "median_r", "total_r", "avg_win_r",
            "avg_loss_r", "expectancy_r", "expectancy_money", "profit_factor", "max_drawdown",
            "max_drawdown_pct", "exposure", "sharpe_per_trade", "sharpe_daily")}


def equity_curve(trades: Sequence[Trade], initial_balance: float,
                 start: datetime | None = None) -> tuple[EquityPoint, ...]:
    """Realised equity: the initial balance (at ``start``, else the first entry), then one
    point per closed trade in exit order."""
    ordered = sorted(trades, key=lambda t: (t.exit_time, t.entry_time, t.client_order_id))
    times = [start or (min(t.entry_time for t in ordered) if ordered else None)]
    values = [initial_balance]
    for t in ordered:
        times.append(t.exit_time)
        values.append(values[-1] + t.pnl)
    if times[0] is None:
        return ()
    points: list[EquityPoint] = []
    for when, (equity, dd, dd_pct) in zip(times, drawdowns(values), strict=True):
        assert when is not None
        points.append(EquityPoint(when, equity, dd, dd_pct))
    return tuple(points)


def drawdowns(values: Sequence[float]) -> list[tuple[float, float, float]]:
    """(value, drawdown, drawdown %) per point, against the running peak of ``values``.
    The percentage is of the peak; it is 0 while the peak is not positive."""
    out: list[tuple[float, float, float]] = []
    peak = -math.inf
    for v in values:
        peak = max(peak, v)
        dd = peak - v
        out.append((v, dd, dd / peak * 100.0 if peak > 0 else 0.0))
    return out


def max_drawdown(values: Sequence[float]) -> tuple[float, float]:
    """(largest drawdown in money, largest drawdown in %); each is its own maximum, so
    they can come from different troughs."""
    points = drawdowns(values)
    return (max((p[1] for p in points), default=0.0), max((p[2] for p in points), default=0.0))


def r_histogram(r_values: Sequence[float], width: float = 0.5) -> tuple[HistogramBin, ...]:
    """Fixed-width bins aligned on multiples of ``width`` (0.5 R by default), from the bin
    holding the smallest R to the one holding the largest; empty bins in between kept."""
    if width <= 0:
        raise ValueError("histogram width must be positive")
    if not r_values:
        return ()
    lo_k = math.floor(min(r_values) / width)
    hi_k = math.floor(max(r_values) / width)
    counts = [0] * (hi_k - lo_k + 1)
    for r in r_values:
        counts[math.floor(r / width) - lo_k] += 1
    return tuple(HistogramBin(round((lo_k + i) * width, 10), round((lo_k + i + 1) * width, 10), n)
                 for i, n in enumerate(counts))


def exposure(trades: Sequence[Trade], bar_times: Sequence[datetime],
             open_since: Sequence[datetime] = ()) -> float | None:
    """Share of bars spent in a position: a bar counts when its open time lies within
    [entry fill time, exit fill time] of any trade (fills are stamped with the bar they
    happen in), or at or after the entry of a position still open (``open_since``)."""
    if not bar_times:
        return None
    times = sorted(bar_times)
    covered = [False] * len(times)
    spans = [(t.entry_time, t.exit_time) for t in trades]
    spans += [(t, times[-1]) for t in open_since]
    for begin, end in spans:
        i = bisect.bisect_left(times, begin)
        j = bisect.bisect_right(times, end)
        for k in range(i, j):
            covered[k] = True
    return sum(covered) / len(times)


def trade_sharpe(trades: Sequence[Trade], initial_balance: float) -> float | None:
    """Per-trade Sharpe: mean / sample standard deviation of each trade's return on the
    realised equity before it (PnL / equity before), not annualised, risk-free rate 0."""
    equity = initial_balance
    returns: list[float] = []
    for t in sorted(trades, key=lambda t: (t.exit_time, t.entry_time, t.client_order_id)):
        if equity <= 0:
            break
        returns.append(t.pnl / equity)
        equity += t.pnl
    return _sharpe(returns)


def daily_sharpe(trades: Sequence[Trade], initial_balance: float,
                 days: Sequence[date] = ()) -> float | None:
    """Daily Sharpe, annualised by sqrt(252): returns of the realised equity at the end of
    each trading day (``days``: the UTC days that had bars; else Monday-Friday between the
    first entry and the last exit), mean / sample standard deviation, risk-free rate 0."""
    if not trades:
        return None
    if not days:
        first = min(t.entry_time for t in trades).date()
        last = max(t.exit_time for t in trades).date()
        days = [date.fromordinal(d) for d in range(first.toordinal(), last.toordinal() + 1)
                if date.fromordinal(d).weekday() < 5]
    day_list = sorted(set(days))
    pnl_by_day: dict[date, float] = {}
    for t in trades:
        d = t.exit_time.date()
        # A trade closed on a day without bars counts on the next trading day.
        i = bisect.bisect_left(day_list, d)
        if i < len(day_list):
            key = day_list[i]
            pnl_by_day[key] = pnl_by_day.get(key, 0.0) + t.pnl
    equity = initial_balance
    returns: list[float] = []
    for d in day_list:
        if equity <= 0:
            break
        pnl = pnl_by_day.get(d, 0.0)
        returns.append(pnl / equity)
        equity += pnl
    s = _sharpe(returns)
    return s * math.sqrt(TRADING_DAYS_PER_YEAR) if s is not None else None


def _sharpe(returns: Sequence[float]) -> float | None:
    if len(returns) < 2:
        return None
    sd = statistics.stdev(returns)
    if sd <= _EPS:
        return None
    return statistics.fmean(returns) / sd


def compute_metrics(trades: Sequence[Trade], *, initial_balance: float,
                    bar_times: Sequence[datetime] = (), open_since: Sequence[datetime] = (),
                    histogram_width: float = 0.5) -> RunMetrics:
    """Every run result of docs/reports.md from closed trades (and the bars, for exposure
    and the trading days of the daily Sharpe)."""
    n = len(trades)
    wins = sum(1 for t in trades if t.won)
    total_pnl = sum(t.pnl for t in trades)
    rs = [t.r_multiple for t in trades if t.r_multiple is not None]
    win_rs = [r for t in trades if t.won and (r := t.r_multiple) is not None]
    loss_rs = [r for t in trades if not t.won and (r := t.r_multiple) is not None]
    avg_win_r = statistics.fmean(win_rs) if win_rs else None
    avg_loss_r = -statistics.fmean(loss_rs) if loss_rs else None
    expectancy_r: float | None = None
    if rs:
        p = len(win_rs) / len(rs)
        expectancy_r = p * (avg_win_r or 0.0) - (1 - p) * (avg_loss_r or 0.0)
    gross_win = sum(t.pnl for t in trades if t.pnl > 0)
    gross_loss = -sum(t.pnl for t in trades if t.pnl < 0)
    curve = equity_curve(trades, initial_balance, min(bar_times) if bar_times else None)
    dd, dd_pct = max_drawdown([p.equity for p in curve])
    days = sorted({t.date() for t in bar_times})
    return RunMetrics(
        trades=n, wins=wins, losses=n - wins, win_rate=wins / n if n else None,
        total_pnl=total_pnl, initial_balance=initial_balance,
        final_equity=initial_balance + total_pnl, trades_with_r=len(rs),
        avg_r=statistics.fmean(rs) if rs else None,
        median_r=statistics.median(rs) if rs else None, total_r=sum(rs),
        avg_win_r=avg_win_r, avg_loss_r=avg_loss_r, expectancy_r=expectancy_r,
        expectancy_money=total_pnl / n if n else None,
        profit_factor=gross_win / gross_loss if gross_loss > _EPS else None,
        max_drawdown=dd, max_drawdown_pct=dd_pct,
        exposure=exposure(trades, bar_times, open_since),
        sharpe_per_trade=trade_sharpe(trades, initial_balance),
        sharpe_daily=daily_sharpe(trades, initial_balance, days),
        r_histogram=r_histogram(rs, histogram_width), equity_curve=curve)
