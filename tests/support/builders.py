"""Keyword-only builders of the domain values tests need.

A positional call (``Bar("EURUSD", "M15", t, 1.0850, 1.0856, ...)``) makes the reader count
arguments to know which number is the low; ``a_bar(time=t, low=1.0846)`` says it, and leaves
every field the test does not care about at a plain default. Fields the domain type gives a
default keep that same default here, so a builder call means what the constructor call
without them meant. A test passes every value it checks explicitly: a default is filler,
never something a test asserts on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from domain import (
    Bar,
    BreakKind,
    CheckResult,
    Decision,
    Direction,
    FairValueGap,
    Fill,
    LiquidityPool,
    LiquiditySweep,
    MarketSnapshot,
    Order,
    OrderBlock,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    Proposal,
    Signal,
    StructureBreak,
    Swing,
    SwingKind,
    Trend,
    Verdict,
    client_order_id,
)
from executor.brokers.base import BrokerFill

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC: a London-session bar


# --------------------------------------------------------------------------- bars, snapshots


def a_bar(*, symbol: str = "EURUSD", timeframe: str = "M15", time: datetime = T0,
          open: float = 1.0850, high: float = 1.0856, low: float = 1.0846,
          close: float = 1.0852, volume: float = 0.0, spread: float = 0.0) -> Bar:
    return Bar(symbol=symbol, timeframe=timeframe, time=time, open=open, high=high, low=low,
               close=close, volume=volume, spread=spread)


def a_snapshot(*, bar: Bar | None = None, symbol: str | None = None,
               timeframe: str | None = None, index: int = 0, bars: Sequence[Bar] = (),
               atr: float | None = None, trend: Trend = Trend.NEUTRAL,
               swings: Sequence[Swing] = (), bos: Sequence[StructureBreak] = (),
               choch: Sequence[StructureBreak] = (), sweeps: Sequence[LiquiditySweep] = (),
               liquidity_pools: Sequence[LiquidityPool] = (),
               order_blocks: Sequence[OrderBlock] = (),
               mitigation_blocks: Sequence[OrderBlock] = (),
               fvgs: Sequence[FairValueGap] = (),
               dealing_range: tuple[float, float] | None = None,
               premium_discount: str | None = None,
               session: str | None = None) -> MarketSnapshot:
    """The snapshot at ``bar`` (``a_bar()`` when not given); ``symbol`` and ``timeframe``
    default to the bar's. ``bars`` stays empty unless given, as in the domain type."""
    bar = bar if bar is not None else a_bar()
    return MarketSnapshot(
        symbol=symbol if symbol is not None else bar.symbol,
        timeframe=timeframe if timeframe is not None else bar.timeframe,
        index=index, bar=bar, bars=tuple(bars), atr=atr, trend=trend, swings=tuple(swings),
        bos=tuple(bos), choch=tuple(choch), sweeps=tuple(sweeps),
        liquidity_pools=tuple(liquidity_pools), order_blocks=tuple(order_blocks),
        mitigation_blocks=tuple(mitigation_blocks), fvgs=tuple(fvgs),
        dealing_range=dealing_range, premium_discount=premium_discount, session=session)


def a_structure_break(*, kind: BreakKind = BreakKind.BOS,
                      direction: Direction = Direction.LONG, level: float = 1.0850,
                      swing_index: int = 0, index: int = 1,
                      time: datetime = T0) -> StructureBreak:
    return StructureBreak(kind=kind, direction=direction, level=level,
                          swing_index=swing_index, index=index, time=time)


def an_order_block(*, direction: Direction = Direction.LONG, top: float = 1.0856,
                   bottom: float = 1.0846, index: int = 0, known_index: int = 1,
                   mitigated_index: int | None = None, broken_index: int | None = None,
                   break_kind: BreakKind | None = None,
                   swing_index: int | None = None) -> OrderBlock:
    return OrderBlock(direction=direction, top=top, bottom=bottom, index=index,
                      known_index=known_index, mitigated_index=mitigated_index,
                      broken_index=broken_index, break_kind=break_kind,
                      swing_index=swing_index)


def a_sweep(*, side: SwingKind = SwingKind.LOW, level: float = 1.0846, pool_index: int = 0,
            index: int = 1, time: datetime = T0) -> LiquiditySweep:
    return LiquiditySweep(side=side, level=level, pool_index=pool_index, index=index,
                          time=time)


# --------------------------------------------------------------------------- decisions


def a_proposal(*, strategy: str = "s", symbol: str = "EURUSD", timeframe: str = "M15",
               bar_time: datetime = T0, direction: Direction = Direction.LONG,
               entry: float = 1.0852, stop: float = 1.0838, target: float = 1.0880,
               reason: str = "test", tags: Sequence[str] = ()) -> Proposal:
    return Proposal(strategy=strategy, symbol=symbol, timeframe=timeframe, bar_time=bar_time,
                    direction=direction, entry=entry, stop=stop, target=target,
                    reason=reason, tags=tuple(tags))


def a_signal(*, provider: str = "a", direction: Direction = Direction.LONG,
             confidence: float = 0.8, rationale: str = "", tags: Sequence[str] = (),
             abstain_reason: str | None = None, latency_ms: float = 0.0) -> Signal:
    return Signal(provider=provider, direction=direction, confidence=confidence,
                  rationale=rationale, tags=tuple(tags), abstain_reason=abstain_reason,
                  latency_ms=latency_ms)


def a_decision(*, proposal: Proposal | None = None, direction: Direction | None = None,
               confidence: float = 0.8, agreement: int = 1, voters: int = 1,
               signals: Sequence[Signal] = (),
               contributions: Sequence[tuple[str, float]] = (), params_hash: str = "h",
               calls: Sequence[Any] = (), size_factor: float = 1.0,
               veto_reason: str | None = None) -> Decision:
    """The ensemble's view of ``proposal`` (``a_proposal()`` when not given); ``direction``
    defaults to the proposal's."""
    proposal = proposal if proposal is not None else a_proposal()
    return Decision(proposal=proposal,
                    direction=direction if direction is not None else proposal.direction,
                    confidence=confidence, agreement=agreement, voters=voters,
                    signals=tuple(signals), contributions=tuple(contributions),
                    params_hash=params_hash, calls=tuple(calls), size_factor=size_factor,
                    veto_reason=veto_reason)


def a_check(*, name: str = "check", passed: bool = True, reason: str = "ok",
            escalate: bool = False, environmental: bool = False) -> CheckResult:
    return CheckResult(name=name, passed=passed, reason=reason, escalate=escalate,
                       environmental=environmental)


def a_verdict(*, checks: Sequence[CheckResult] = ()) -> Verdict:
    return Verdict(checks=tuple(checks))


# --------------------------------------------------------------------------- orders


def an_intent(*, client_order_id: str | None = None, account: str = "acct",
              symbol: str = "EURUSD", side: OrderSide = OrderSide.BUY, volume: float = 0.1,
              order_type: OrderType = OrderType.MARKET, bar_time: datetime = T0,
              price: float | None = None, stop_loss: float | None = None,
              take_profit: float | None = None, reduce_only: bool = False,
              params_hash: str = "", decision_id: int | None = None) -> OrderIntent:
    """``client_order_id`` defaults to the deterministic id of an entry on ``bar_time``."""
    coid = client_order_id if client_order_id is not None else _entry_id(account, symbol,
                                                                        bar_time)
    return OrderIntent(client_order_id=coid, account=account, symbol=symbol, side=side,
                       volume=volume, order_type=order_type, bar_time=bar_time, price=price,
                       stop_loss=stop_loss, take_profit=take_profit, reduce_only=reduce_only,
                       params_hash=params_hash, decision_id=decision_id)


def _entry_id(account: str, symbol: str, bar_time: datetime) -> str:
    return client_order_id(account, symbol, bar_time, "entry")


def an_order(*, intent: OrderIntent | None = None, state: OrderState = OrderState.NEW,
             filled_volume: float = 0.0, avg_fill_price: float | None = None,
             broker_order_id: str | None = None, reason: str = "") -> Order:
    """An order for ``intent`` (``an_intent()`` when not given), ``new`` unless told."""
    return Order(intent=intent if intent is not None else an_intent(), state=state,
                 filled_volume=filled_volume, avg_fill_price=avg_fill_price,
                 broker_order_id=broker_order_id, reason=reason)


def a_fill(*, client_order_id: str = "dta-test", fill_id: str = "fill-1",
           symbol: str = "EURUSD", side: OrderSide = OrderSide.BUY, time: datetime = T0,
           price: float = 1.0852, volume: float = 0.1, fee: float = 0.0) -> Fill:
    return Fill(client_order_id=client_order_id, fill_id=fill_id, symbol=symbol, side=side,
                time=time, price=price, volume=volume, fee=fee)


def a_broker_fill(*, fill: Fill | None = None, kind: str = "entry", realized_pnl: float = 0.0,
                  order: Order | None = None) -> BrokerFill:
    return BrokerFill(fill=fill if fill is not None else a_fill(), kind=kind,
                      realized_pnl=realized_pnl, order=order)


def a_position(*, symbol: str = "EURUSD", volume: float = 0.0, avg_price: float = 0.0,
               realized_pnl: float = 0.0, stop_loss: float | None = None,
               take_profit: float | None = None, opened_by: str | None = None,
               gross_volume: float | None = None) -> Position:
    """Flat unless ``volume`` says otherwise (signed: positive long), as in the domain."""
    return Position(symbol=symbol, volume=volume, avg_price=avg_price,
                    realized_pnl=realized_pnl, stop_loss=stop_loss, take_profit=take_profit,
                    opened_by=opened_by, gross_volume=gross_volume)
