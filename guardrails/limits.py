"""Risk limits. Each is a small check with one job; a limit left at ``None`` is off.

Hard limits never escalate to the approval queue: a human cannot approve past them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta

from domain import CheckResult, Decision, timeframe_seconds
from domain.margin import liquidation_price
from guardrails.base import AccountState, WorkingExposure


class OrderVolumeCheck:
    """The order must be one the venue takes: the volume, already rounded down to the
    venue's step, is positive and at least its minimum. A risk reviewer's resize to a
    sliver (a size factor of 1e-9 rounds to 0 lots) is a veto with its reason here, not a
    rejection by the broker that would feed the broker-error halt."""

    name = "order_volume"

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        volume = account.order_volume
        if not volume > 0:
            return CheckResult(self.name, False, f"order volume {volume:g} lots: the size "
                               f"factor {decision.size_factor:g} leaves nothing to send")
        if account.volume_min is not None and volume < account.volume_min - 1e-12:
            return CheckResult(self.name, False, f"order volume {volume:g} lots is below "
                               f"the venue's minimum {account.volume_min:g}")
        return CheckResult(self.name, True, f"{volume:g} lots")


class NoShortsCheck:
    """On an account that cannot hold a short (spot), a sell needs a holding of ours to
    sell, net of the sells already working. Without one it would sell inventory the
    daemon never bought (or be refused for balance, feeding the broker-error halt). A sell
    larger than our holding is left to the adapter, which cuts it to the holding (a close,
    fee-shaved on spot). The venue, not the decision, is what is wrong: environmental."""

    name = "no_shorts"

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        if account.shorts or decision.direction.sign >= 0:
            return CheckResult(self.name, True, "shorts allowed or not a sell")
        symbol = decision.proposal.symbol
        ours = account.position(symbol).volume - account.working_on(symbol).sell
        if ours <= 1e-12:
            return CheckResult(self.name, False, f"this account holds no shorts and none of "
                               f"{symbol} is ours to sell (net of working sells: {ours:g})",
                               environmental=True)
        return CheckResult(self.name, True, f"{ours:g} of ours to sell")


class MaxPositionCheck:
    """Net lots per symbol, worst case: the filled position plus every working order on the
    order's side plus the order itself (``AccountState`` says why working orders on the
    other side are not netted). Only the end of the range the order moves is judged, so an
    order that shrinks the position is never vetoed, even past a limit lowered since."""

    name = "max_position"

    def __init__(self, max_lots: float) -> None:
        if not max_lots > 0:
            raise ValueError("max_position_lots must be positive")
        self.max_lots = max_lots

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        symbol = decision.proposal.symbol
        sign = decision.direction.sign
        working = account.working_on(symbol)
        if sign == 0:  # no side to judge (nothing would be sent): the larger end
            after, counted = _worst(account.position(symbol).volume, working)
            over = abs(after) > self.max_lots + 1e-9
        else:
            after, counted = account.worst_position(decision), working.on_side(sign)
            over = sign * after > self.max_lots + 1e-9
        incl = f" incl. {counted:.4g} working" if counted > 1e-12 else ""
        if over:
            return CheckResult(self.name, False, f"position would be {after:+.4g} lots{incl}, "
                                                 f"limit {self.max_lots:g}")
        return CheckResult(self.name, True, f"position after order {after:+.4g} lots{incl}")


class MaxGrossExposureCheck:
    """Sum of absolute lots over all symbols after the order, worst case per symbol: the
    end of the range the position can reach (any subset of the working orders, and the
    order, filling) that lies furthest from flat. Worst cases of different symbols can all
    happen at once, so they add up; the two ends of one symbol cannot, so only the larger
    counts, and a working order on the other side neither offsets nor hides the order.

    Over the limit, only an order that does not increase exposure passes
    (``AccountState.increases_exposure``: its own end of the range stays on the reducing
    side of flat). Not "does not raise the sum": the filled positions and the working set
    are read a moment apart, so a fill not yet reported to the router counts twice, and an
    order judged against that inflated sum could still grow the real one.

    Lots held long and short at once on a hedging account (``Position.hedged_volume``) are
    open at the broker though the net hides them: they count in full on top."""

    name = "max_gross_exposure"

    def __init__(self, max_lots: float) -> None:
        self.max_lots = max_lots

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        symbol = decision.proposal.symbol
        sign = decision.direction.sign
        gross = counted = 0.0
        for s in set(account.positions) | set(account.working):
            if s != symbol:
                end, lots = _worst(account.position(s).volume, account.working_on(s))
                gross += abs(end) + account.position(s).hedged_volume
                counted += lots
        order = account.order_volume
        after, lots = _worst(account.position(symbol).volume, account.working_on(symbol),
                             order if sign > 0 else 0.0, order if sign < 0 else 0.0)
        gross += abs(after) + account.position(symbol).hedged_volume
        counted += lots
        incl = f" incl. {counted:.4g} working" if counted > 1e-12 else ""
        if gross > self.max_lots + 1e-9 and (sign == 0 or account.increases_exposure(decision)):
            return CheckResult(self.name, False, f"gross exposure would be {gross:.4g} lots"
                                                 f"{incl}, limit {self.max_lots:g}")
        return CheckResult(self.name, True, f"gross exposure {gross:.4g} lots{incl}")


def _worst(current: float, working: WorkingExposure, buy: float = 0.0,
           sell: float = 0.0) -> tuple[float, float]:
    """The end of the reachable range (``WorkingExposure.reach``, extended by a new order's
    ``buy`` or ``sell`` lots) furthest from flat, and the working lots counted to get
    there."""
    low, high = working.reach(current)
    high, low = high + buy, low - sell
    if abs(high) >= abs(low):
        return high, working.buy
    return low, working.sell


class MaxOrderNotionalCheck:
    name = "max_order_notional"

    def __init__(self, max_notional: float) -> None:
        self.max_notional = max_notional

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        notional = account.order_volume * account.contract_size * decision.proposal.entry
        if notional > self.max_notional + 1e-9:
            return CheckResult(self.name, False,
                               f"order notional {notional:,.0f} above {self.max_notional:,.0f}")
        return CheckResult(self.name, True, f"order notional {notional:,.0f}")


# The throttle's rolling window. The daemon keeps only the order times inside it
# (``RealtimeExecutor._recent_order_times``), so the check reads a short tuple.
THROTTLE_WINDOW = timedelta(minutes=1)


class OrderThrottleCheck:
    """At most N orders in any rolling minute (decision time, so replays behave like live)."""

    name = "order_throttle"

    def __init__(self, max_per_minute: int) -> None:
        self.max_per_minute = max_per_minute

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        if account.now is None:
            return CheckResult(self.name, False, "no clock in context: cannot throttle")
        window = account.now - THROTTLE_WINDOW
        recent = sum(1 for t in account.recent_order_times if t > window)
        if recent >= self.max_per_minute:
            return CheckResult(self.name, False,
                               f"{recent} orders in the last minute, limit {self.max_per_minute}")
        return CheckResult(self.name, True, f"{recent} orders in the last minute")


class DailyLossCheck:
    """Blocks new entries once today's loss (equity against the day's start) reaches the
    limit. The drawdown *trigger* halts trading; this check guards the gap before it fires."""

    name = "max_daily_loss"

    def __init__(self, max_loss: float) -> None:
        self.max_loss = max_loss

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        if account.equity is None or account.day_start_equity is None:
            return CheckResult(self.name, False, "equity unknown: cannot check daily loss",
                               environmental=True)
        loss = account.day_start_equity - account.equity
        if loss >= self.max_loss and account.increases_exposure(decision):
            return CheckResult(self.name, False,
                               f"daily loss {loss:,.2f} reached limit {self.max_loss:,.2f}")
        return CheckResult(self.name, True, f"daily PnL {-loss:+,.2f}")


class MinStopDistanceCheck:
    name = "min_stop_distance"

    def __init__(self, min_atr: float | None = None, min_points: float | None = None) -> None:
        self.min_atr = min_atr
        self.min_points = min_points

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        p = decision.proposal
        distance = abs(p.entry - p.stop)
        side_ok = (p.stop < p.entry) if p.direction.sign > 0 else (p.stop > p.entry)
        if not side_ok:
            return CheckResult(self.name, False, f"stop {p.stop} on the wrong side of {p.entry}")
        atr = account.snapshot.atr if account.snapshot else None
        if self.min_atr is not None:
            if not atr:
                return CheckResult(self.name, False, "ATR unknown: cannot check stop distance")
            if distance < self.min_atr * atr:
                return CheckResult(self.name, False, f"stop {distance:.5g} away, below "
                                   f"{self.min_atr:g} ATR ({self.min_atr * atr:.5g})")
        if self.min_points is not None:
            if not account.point or account.point <= 0:  # configured, so never skipped
                return CheckResult(self.name, False, f"point size of {p.symbol} unknown: "
                                   "cannot check min_stop_points")
            if distance < self.min_points * account.point:
                return CheckResult(self.name, False,
                                   f"stop {distance / account.point:.1f} points away, below "
                                   f"{self.min_points:g}")
        return CheckResult(self.name, True, f"stop {distance:.5g} away")


class ExitsVersusMarketCheck:
    """The stop and the target must still lie on their sides of the market when the order
    goes out, not only of the proposal's entry. An entry sent later than its bar (an
    approval decided an hour on, a gap through the stop meanwhile) would otherwise be
    stopped out, or take its profit, on the very next price. The venues refuse such exits:
    MT5 answers TRADE_RETCODE_INVALID_STOPS (10016) for a buy whose SL is not below the
    Bid (MQL5 docs, "Trade Server Return Codes"; "Requirements and Limitations in Making
    Trades": SL of a buy below Bid, TP above it), and Binance USD-M refuses a conditional
    that would trigger at once (-2021 "Order would immediately trigger"); paper accepted it
    and booked the loss. The market is the last closed bar's close. A hard limit: a person
    cannot approve it, as the market, not the judgement, is what changed."""

    name = "exits_vs_market"

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        if account.snapshot is None:
            return CheckResult(self.name, True, "no snapshot: checked against the entry only")
        p = decision.proposal
        price = account.snapshot.bar.close
        long = p.direction.sign > 0  # the side the stop and target were drawn for
        if p.stop >= price if long else p.stop <= price:
            return CheckResult(self.name, False, f"market {price:.6g} is already "
                               f"{'at or below' if long else 'at or above'} the stop "
                               f"{p.stop:.6g}: the entry would be stopped out at once")
        if p.target <= price if long else p.target >= price:
            return CheckResult(self.name, False, f"market {price:.6g} is already "
                               f"{'at or above' if long else 'at or below'} the target "
                               f"{p.target:.6g}: nothing left to gain")
        return CheckResult(self.name, True, f"stop and target on their sides of {price:.6g}")


class StopBeforeLiquidationCheck:
    """On a leveraged account, the stop of an entry must fire before the exchange would
    liquidate the position it opens or grows: at least ``buffer`` (a fraction) of the
    distance from the liquidation price back to the entry inside it, as freqtrade's
    ``liquidation_buffer`` (docs "Leverage": the stop may lie no nearer the liquidation
    price than that share of |entry - liquidation|). A stop beyond the liquidation price
    never fires: the position is closed first, at a worse price, with a liquidation fee.

    The liquidation price is estimated (``domain.margin.liquidation_price``: Binance's
    isolated one-way formula; for cross margin the isolated estimate is the conservative
    bound) for the position after the order: the filled position on the order's side at
    its average price, plus the working orders on that side and the order itself at the
    market (the last close, which a market order meets). A hard limit: nobody can approve
    a stop the exchange will never reach. Terms the venue could not give veto as
    environmental; an account without margin terms (spot, paper, MT5) is not judged."""

    name = "stop_vs_liquidation"

    def __init__(self, buffer: float) -> None:
        if not 0 <= buffer < 1:
            raise ValueError("liquidation_buffer must be in [0, 1)")
        self.buffer = buffer

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        terms, sign = account.margin, decision.direction.sign
        if terms is None or not account.increases_exposure(decision):
            return CheckResult(self.name, True, "no leveraged position grows")
        p = decision.proposal
        if not terms.known:
            return CheckResult(self.name, False, f"margin terms of {p.symbol} unknown: "
                               "cannot place the stop against liquidation",
                               environmental=True)
        market = account.snapshot.bar.close if account.snapshot else p.entry
        held = account.position(p.symbol)
        held_lots = max(sign * held.volume, 0.0)
        lots = sign * account.worst_position(decision)
        entry = (held_lots * held.avg_price + (lots - held_lots) * market) / lots
        liq = liquidation_price(terms, sign, lots * terms.contract_size, entry)
        side = "long" if sign > 0 else "short"
        if liq <= 0:
            return CheckResult(self.name, True, f"the {side} has no liquidation price")
        floor = liq + sign * self.buffer * abs(entry - liq)
        basis = (f"{side} {lots:g} at {entry:.6g}, leverage {terms.leverage:g}, estimated "
                 f"liquidation {liq:.6g}" + ("" if terms.isolated else
                                             " (isolated estimate, cross bound)"))
        if sign * (p.stop - floor) < 0:
            where = "beyond" if sign * (p.stop - liq) <= 0 else "too close to"
            return CheckResult(self.name, False, f"stop {p.stop:.6g} lies {where} the "
                               f"liquidation price: {basis}; the stop must be at or "
                               f"{'above' if sign > 0 else 'below'} {floor:.6g} "
                               f"({self.buffer * 100:g} % buffer)")
        return CheckResult(self.name, True, f"stop {p.stop:.6g} inside {floor:.6g}: {basis}")


class MaxSpreadCheck:
    name = "max_spread"

    def __init__(self, max_spread: float) -> None:
        self.max_spread = max_spread  # price units

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        if account.snapshot is None:
            return CheckResult(self.name, False, "no market snapshot: spread unknown")
        spread = account.snapshot.bar.spread
        if spread > self.max_spread + 1e-12:
            return CheckResult(self.name, False,
                               f"spread {spread:.5g} above {self.max_spread:.5g}")
        return CheckResult(self.name, True, f"spread {spread:.5g}")


def _parse_window(text: str) -> tuple[time, time]:
    start, _, end = text.partition("-")
    return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())


class TradingHoursCheck:
    """Entries only inside the configured UTC windows (``"07:00-16:00"``; a window may wrap
    midnight), and never inside a news blackout (``(start, end)`` UTC datetimes)."""

    name = "trading_hours"

    def __init__(self, windows: Sequence[str] = (),
                 blackouts: Sequence[tuple[datetime, datetime]] = ()) -> None:
        self.windows = [_parse_window(w) for w in windows]
        self.blackouts = list(blackouts)

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        if account.now is None:
            return CheckResult(self.name, False, "no clock in context", environmental=True)
        now = account.now
        for start, end in self.blackouts:
            if start <= now < end:
                return CheckResult(self.name, False,
                                   f"news blackout {start.isoformat()} - {end.isoformat()}",
                                   environmental=True)
        if self.windows:
            t = now.time()
            inside = any((s <= t < e) if s <= e else (t >= s or t < e) for s, e in self.windows)
            if not inside:
                return CheckResult(self.name, False,
                                   f"{t.isoformat('minutes')} UTC outside trading windows",
                                   environmental=True)
        return CheckResult(self.name, True, "inside trading hours")


class StaleDataCheck:
    """No trading on a bar that closed too long ago (a backlog after an outage)."""

    name = "stale_data"

    def __init__(self, max_age_bars: float) -> None:
        self.max_age_bars = max_age_bars

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        snap = account.snapshot
        if snap is None or account.now is None:
            return CheckResult(self.name, False, "no snapshot or clock: data age unknown",
                               environmental=True)
        tf = timeframe_seconds(snap.timeframe)
        age = (account.now - snap.bar.close_time).total_seconds()
        if age > self.max_age_bars * tf:
            return CheckResult(self.name, False,
                               f"bar closed {age:.0f} s ago, limit {self.max_age_bars:g} bars",
                               environmental=True)
        return CheckResult(self.name, True, f"bar age {age:.0f} s")


class ProvidersAvailableCheck:
    name = "providers_available"

    def __init__(self, required_classes: Sequence[str]) -> None:
        self.required = tuple(required_classes)

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        down = [c for c in self.required if c in account.classes_down]
        if down:
            return CheckResult(self.name, False, f"every provider of {', '.join(down)} is down",
                               environmental=True)
        return CheckResult(self.name, True, "required provider classes available")
