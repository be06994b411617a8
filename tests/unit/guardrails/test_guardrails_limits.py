"""Table-driven tests for every guardrail check and trigger, and the state invariants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st
from support.builders import a_bar, a_decision, a_position, a_proposal, a_signal, a_snapshot

from domain import (
    Decision,
    Direction,
    MarketSnapshot,
)
from guardrails.base import AccountState, WorkingExposure
from guardrails.consensus import ConsensusCheck
from guardrails.guardrails import Guardrails
from guardrails.limits import (
    DailyLossCheck,
    ExitsVersusMarketCheck,
    MaxGrossExposureCheck,
    MaxOrderNotionalCheck,
    MaxPositionCheck,
    MaxSpreadCheck,
    MinStopDistanceCheck,
    NoShortsCheck,
    OrderThrottleCheck,
    ProvidersAvailableCheck,
    StaleDataCheck,
    TradingHoursCheck,
)
from guardrails.monitors import (
    DailyDrawdownMonitor,
    ErrorRateMonitor,
    RegressionMonitor,
    StaleFeedMonitor,
    providers_down_trigger,
    reconciliation_trigger,
)
from guardrails.state import TradingState, TradingStateCheck, current_state, set_state

NOW = datetime(2023, 3, 1, 10, 0, tzinfo=UTC)


def decision(direction: Direction = Direction.LONG, *, confidence: float = 0.8,
             agreement: int = 2, voters: int = 2, entry: float = 1.1000, stop: float = 1.0980,
             contributions: tuple[tuple[str, float], ...] | None = None,
             strategy_dir: Direction | None = None) -> Decision:
    want = strategy_dir or direction
    target = entry + (entry - stop) * 2
    p = a_proposal(strategy="s", symbol="EURUSD", timeframe="M15", bar_time=NOW, direction=want,
                   entry=entry, stop=stop, target=target, reason="test")
    contribs = contributions if contributions is not None else (
        ("a", confidence * direction.sign / 2), ("b", confidence * direction.sign / 2))
    signals = (a_signal(provider="a", direction=direction, confidence=confidence),
               a_signal(provider="b", direction=direction, confidence=confidence))
    return a_decision(proposal=p, direction=direction, confidence=confidence, agreement=agreement,
                      voters=voters, signals=signals, contributions=contribs, params_hash="h")


def snapshot(spread: float = 0.0001, atr: float | None = 0.0010,
             bar_time: datetime = NOW - timedelta(minutes=15)) -> MarketSnapshot:
    bar = a_bar(symbol="EURUSD", timeframe="M15", time=bar_time, open=1.1, high=1.101, low=1.099,
                close=1.1, volume=1, spread=spread)
    return a_snapshot(symbol="EURUSD", timeframe="M15", index=10, bar=bar, atr=atr)


def ctx(**kw: object) -> AccountState:
    base: dict[str, object] = {"order_volume": 0.1, "now": NOW, "snapshot": snapshot(),
                               "equity": 10_000.0, "day_start_equity": 10_000.0,
                               "point": 0.00001}
    base.update(kw)
    return AccountState(**base)  # type: ignore[arg-type]


LONG_POS = {"EURUSD": a_position(symbol="EURUSD", volume=0.3, avg_price=1.1)}
SHORT_POS = {"EURUSD": a_position(symbol="EURUSD", volume=-0.3, avg_price=1.1)}

CASES = [
    # (id, check, decision, context, passes, escalates)
    ("position ok", MaxPositionCheck(0.5), decision(), ctx(), True, False),
    ("position over", MaxPositionCheck(0.35), decision(), ctx(positions=LONG_POS), False, False),
    ("position reducing ok", MaxPositionCheck(0.35), decision(Direction.SHORT),
     ctx(positions=LONG_POS), True, False),
    ("gross ok", MaxGrossExposureCheck(1.0), decision(), ctx(positions=LONG_POS), True, False),
    ("gross over", MaxGrossExposureCheck(0.45), decision(),
     ctx(positions={**LONG_POS,
                    "GBPUSD": a_position(symbol="GBPUSD", volume=-0.2, avg_price=1.2)}),
     False, False),
    ("notional ok", MaxOrderNotionalCheck(20_000), decision(), ctx(), True, False),
    ("notional over", MaxOrderNotionalCheck(10_000), decision(), ctx(), False, False),
    ("throttle ok", OrderThrottleCheck(3), decision(),
     ctx(recent_order_times=(NOW - timedelta(seconds=61), NOW - timedelta(seconds=30))), True,
     False),
    ("throttle hit", OrderThrottleCheck(2), decision(),
     ctx(recent_order_times=(NOW - timedelta(seconds=50), NOW - timedelta(seconds=5))), False,
     False),
    ("daily loss ok", DailyLossCheck(100), decision(), ctx(equity=9_950.0), True, False),
    ("daily loss hit", DailyLossCheck(100), decision(), ctx(equity=9_890.0), False, False),
    ("daily loss lets a reduce through", DailyLossCheck(100), decision(Direction.SHORT),
     ctx(equity=9_890.0, positions=LONG_POS), True, False),
    ("daily loss unknown equity", DailyLossCheck(100), decision(), ctx(equity=None), False,
     False),
    # A spot account holds no shorts: a sell needs a holding of ours (issue 15, defect 9).
    ("spot sell with nothing of ours", NoShortsCheck(), decision(Direction.SHORT),
     ctx(shorts=False), False, False),
    ("spot sell of our holding", NoShortsCheck(), decision(Direction.SHORT),
     ctx(shorts=False, positions=LONG_POS), True, False),
    ("spot sell when working sells took it all", NoShortsCheck(), decision(Direction.SHORT),
     ctx(shorts=False, positions=LONG_POS, working={"EURUSD": WorkingExposure(0.0, 0.3)}),
     False, False),
    ("spot buy", NoShortsCheck(), decision(), ctx(shorts=False), True, False),
    ("short where shorts exist", NoShortsCheck(), decision(Direction.SHORT), ctx(), True,
     False),
    ("stop ok", MinStopDistanceCheck(min_atr=1.0), decision(), ctx(), True, False),
    ("stop too close (ATR)", MinStopDistanceCheck(min_atr=3.0), decision(), ctx(), False, False),
    ("stop too close (points)", MinStopDistanceCheck(min_points=300), decision(), ctx(), False,
     False),
    ("stop far enough (points)", MinStopDistanceCheck(min_points=5), decision(), ctx(), True,
     False),
    # A configured limit with the venue's point unknown fails closed (issue 15, defect 4).
    ("stop points, point unknown", MinStopDistanceCheck(min_points=5), decision(),
     ctx(point=None), False, False),
    ("stop points, point zero", MinStopDistanceCheck(min_points=5), decision(),
     ctx(point=0.0), False, False),
    ("stop wrong side", MinStopDistanceCheck(min_atr=0.1), decision(stop=1.1020), ctx(), False,
     False),
    ("spread ok", MaxSpreadCheck(0.0002), decision(), ctx(), True, False),
    ("spread wide", MaxSpreadCheck(0.0002), decision(), ctx(snapshot=snapshot(spread=0.0005)),
     False, False),
    ("hours inside", TradingHoursCheck(["07:00-16:00"]), decision(), ctx(), True, False),
    ("hours outside", TradingHoursCheck(["12:00-16:00"]), decision(), ctx(), False, False),
    ("hours wrap midnight", TradingHoursCheck(["22:00-11:00"]), decision(), ctx(), True, False),
    ("news blackout", TradingHoursCheck(blackouts=[(NOW - timedelta(minutes=5),
                                                    NOW + timedelta(minutes=5))]),
     decision(), ctx(), False, False),
    ("fresh data", StaleDataCheck(2), decision(), ctx(), True, False),
    ("stale data", StaleDataCheck(2), decision(),
     ctx(snapshot=snapshot(bar_time=NOW - timedelta(hours=2))), False, False),
    ("providers up", ProvidersAvailableCheck(["reasoning"]), decision(), ctx(), True, False),
    ("providers down", ProvidersAvailableCheck(["reasoning"]), decision(),
     ctx(classes_down=("reasoning",)), False, False),
    ("consensus ok", ConsensusCheck(0.5, 2), decision(), ctx(), True, False),
    ("consensus nobody voted", ConsensusCheck(0.5, 1),
     decision(Direction.FLAT, confidence=0.0, agreement=0, voters=0, contributions=(),
              strategy_dir=Direction.LONG), ctx(), False, False),
    ("consensus opposes strategy", ConsensusCheck(0.5, 1),
     decision(Direction.SHORT, strategy_dir=Direction.LONG), ctx(), False, True),
    ("consensus providers conflict", ConsensusCheck(0.1, 1, conflict_margin=0.3),
     decision(confidence=0.4, agreement=1, contributions=(("a", 0.6), ("b", -0.35))), ctx(),
     False, True),
    ("consensus low confidence escalates", ConsensusCheck(0.6, 1, approval_floor=0.3),
     decision(confidence=0.4), ctx(), False, True),
    ("consensus too low to escalate", ConsensusCheck(0.6, 1, approval_floor=0.5),
     decision(confidence=0.4), ctx(), False, False),
    ("consensus either rule", ConsensusCheck(0.9, 1, rule="either"), decision(confidence=0.4),
     ctx(), True, False),
    ("consensus agreement rule", ConsensusCheck(0.1, 3, rule="agreement"), decision(), ctx(),
     False, False),
]


@pytest.mark.parametrize(("check", "dec", "context", "passes", "escalates"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_limit(check: object, dec: Decision, context: AccountState, passes: bool,
                    escalates: bool) -> None:
    result = check.check(dec, context)  # type: ignore[attr-defined]
    assert result.passed is passes, result.reason
    assert result.escalate is escalates
    assert result.reason


@freeze_time("2023-03-01 17:30:00")
def test_trading_hours_with_the_wall_clock() -> None:
    now = datetime.now(UTC)
    assert not TradingHoursCheck(["07:00-16:00"]).check(decision(), ctx(now=now)).passed
    assert TradingHoursCheck(["17:00-18:00"]).check(decision(), ctx(now=now)).passed


def test_a_raising_check_fails_closed_and_others_still_run() -> None:
    class Broken:
        name = "broken"

        def check(self, d: Decision, a: AccountState) -> object:
            raise RuntimeError("boom")

    verdict = Guardrails([Broken(), MaxPositionCheck(1.0)]).check(decision(), ctx())  # type: ignore[list-item]
    assert not verdict.approved
    assert [c.name for c in verdict.checks] == ["broken", "max_position"]
    assert "RuntimeError: boom" in verdict.reasons[0]
    assert not verdict.needs_approval


# ------------------------------------------------------------------ triggers


def test_daily_drawdown_halts_and_resets_each_day() -> None:
    m = DailyDrawdownMonitor(5.0)
    assert m.observe(NOW, 10_000) is None
    assert m.observe(NOW + timedelta(hours=1), 9_600) is None
    t = m.observe(NOW + timedelta(hours=2), 9_500)
    assert t is not None and t.state is TradingState.HALTED and t.name == "daily_drawdown"
    assert m.observe(NOW + timedelta(days=1), 9_400) is None  # new day, new baseline


def test_broker_error_rate_window() -> None:
    m = ErrorRateMonitor("broker_errors", 3, timedelta(minutes=5))
    assert m.error(NOW) is None
    assert m.error(NOW + timedelta(minutes=1)) is None
    assert m.error(NOW + timedelta(minutes=7)) is None  # first two fell out of the window
    assert m.error(NOW + timedelta(minutes=8)) is None
    t = m.error(NOW + timedelta(minutes=9))
    assert t is not None and t.state is TradingState.HALTED


def test_stale_feed_providers_down_and_reconciliation_triggers() -> None:
    m = StaleFeedMonitor(3, 900)
    assert m.observe(NOW, NOW - timedelta(minutes=30)) is None
    stale = m.observe(NOW, NOW - timedelta(minutes=46))
    assert stale is not None and stale.state is TradingState.REDUCING
    assert providers_down_trigger(("deterministic",), ("reasoning",)) is None
    down = providers_down_trigger(("reasoning",), ("reasoning",))
    assert down is not None and down.state is TradingState.REDUCING
    assert reconciliation_trigger(True, "") is None
    rec = reconciliation_trigger(False, "EURUSD journal 0.1 vs broker 0.3")
    assert rec is not None and rec.state is TradingState.HALTED


def test_regression_monitor_triggers() -> None:
    m = RegressionMonitor(drawdown_pct=10, veto_rate=0.8, veto_window=5, error_count=3,
                          error_window=10)
    m.reset(10_000)
    assert m.equity(9_500) is None
    t = m.equity(8_900)
    assert t is not None and t.rollback and t.name == "drawdown_since_activation"
    m.reset(10_000)
    for vetoed in (True, True, False, True):
        assert m.decision(vetoed) is None
    t = m.decision(True)
    assert t is not None and t.name == "veto_spike"
    m.reset(10_000)
    assert m.cycle(True) is None and m.cycle(False) is None and m.cycle(True) is None
    t = m.cycle(True)
    assert t is not None and t.name == "error_spike"


# ------------------------------------------------------------------ trading state


@dataclass
class _View:
    state: str
    operator: str | None = None
    reason: str | None = None
    since: datetime | None = None
    trigger: str | None = None


class MemoryStateStore:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def trading_state(self, scope: str = "global", *, fresh: bool = False) -> _View:
        if not self.events:
            return _View("ACTIVE")
        state, op, reason, trigger = self.events[-1]
        return _View(state, op, reason, NOW, trigger)

    def record_trading_state(self, state: str, operator: str, reason: str,
                             trigger: str = "manual", scope: str = "global") -> None:
        self.events.append((state, operator, reason, trigger))


def test_system_triggers_never_relax_and_operators_must_say_why() -> None:
    store = MemoryStateStore()
    assert set_state(store, TradingState.HALTED, operator="system", reason="dd", trigger="dd")
    assert not set_state(store, TradingState.REDUCING, operator="system", reason="x",
                         trigger="stale_bars")
    assert current_state(store) is TradingState.HALTED
    with pytest.raises(ValueError):
        set_state(store, TradingState.ACTIVE, operator="", reason="ok")
    with pytest.raises(ValueError):
        set_state(store, TradingState.ACTIVE, operator="ann", reason=" ")
    assert set_state(store, TradingState.ACTIVE, operator="ann", reason="checked the broker")


actions = st.one_of(
    st.tuples(st.just("state"), st.sampled_from(list(TradingState)),
              st.sampled_from(["manual", "daily_drawdown", "stale_bars"])),
    st.tuples(st.just("decide"), st.sampled_from([Direction.LONG, Direction.SHORT]),
              st.floats(-1.0, 1.0).map(lambda v: round(v, 2)),
              st.sampled_from([0.05, 0.1, 0.5, 1.0])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(actions, min_size=1, max_size=40))
def test_no_order_passes_while_halted_nor_increases_while_reducing(
        seq: list[tuple[object, ...]]) -> None:
    store = MemoryStateStore()
    guard = Guardrails([TradingStateCheck(store), MaxPositionCheck(100.0),
                        ConsensusCheck(0.0, 0, rule="either")])
    for step in seq:
        if step[0] == "state":
            _, state, trigger = step
            set_state(store, state, operator="op" if trigger == "manual" else "system",  # type: ignore[arg-type]
                      reason="r", trigger=str(trigger))
            continue
        _, direction, position, volume = step
        held = a_position(symbol="EURUSD", volume=float(position), avg_price=1.1)  # type: ignore[arg-type]
        account = ctx(positions={"EURUSD": held},
                      order_volume=float(volume))  # type: ignore[arg-type]
        dec = decision(direction)  # type: ignore[arg-type]
        verdict = guard.check(dec, account)
        state = current_state(store)
        if state is TradingState.HALTED:
            assert not verdict.approved
            assert not verdict.needs_approval
        if state is TradingState.REDUCING and verdict.approved:
            after = float(position) + dec.direction.sign * float(volume)  # type: ignore[arg-type]
            assert abs(after) <= abs(float(position)) + 1e-12  # type: ignore[arg-type]
            assert float(position) * after >= 0  # type: ignore[arg-type]


def _market_at(close: float) -> MarketSnapshot:
    bar = a_bar(symbol="EURUSD", timeframe="M15", time=NOW - timedelta(minutes=15),
                open=close, high=close, low=close, close=close, volume=1)
    return a_snapshot(symbol="EURUSD", timeframe="M15", index=10, bar=bar)


@pytest.mark.parametrize(("direction", "close", "passes", "words"), [
    # Long: entry 1.1000, stop 1.0980, target 1.1040 (decision() draws the target at 2R).
    (Direction.LONG, 1.1000, True, "on their sides"),
    (Direction.LONG, 1.0990, True, "on their sides"),     # moved, still between the exits
    (Direction.LONG, 1.0980, False, "at or below the stop"),   # MT5: SL must be below Bid
    (Direction.LONG, 1.0950, False, "at or below the stop"),   # gapped through it
    (Direction.LONG, 1.1045, False, "at or above the target"),  # TP must be above Bid
    # Short: entry 1.1000, stop 1.1020, target 1.0960.
    (Direction.SHORT, 1.1000, True, "on their sides"),
    (Direction.SHORT, 1.1020, False, "at or above the stop"),
    (Direction.SHORT, 1.0950, False, "at or below the target"),
])
def test_exits_must_still_be_on_their_sides_of_the_market(
        direction: Direction, close: float, passes: bool, words: str) -> None:
    """An entry that goes out after its bar (an approval decided later) is judged against
    the market then: MT5 refuses a buy whose SL is not below the Bid (TRADE_RETCODE_
    INVALID_STOPS), Binance a conditional that would trigger at once (-2021)."""
    stop = 1.0980 if direction is Direction.LONG else 1.1020
    dec = decision(direction, entry=1.1000, stop=stop)
    result = ExitsVersusMarketCheck().check(dec, ctx(snapshot=_market_at(close)))
    assert result.passed is passes, result.reason
    assert words in result.reason
    assert not result.escalate  # a person cannot approve a market that moved past the stop


def test_exits_are_judged_on_the_strategy_side_not_the_ensemble_vote() -> None:
    """A conflict (ensemble short, strategy long) is queued as the strategy's long with
    the stop below: the geometry is the proposal's."""
    dec = decision(Direction.SHORT, entry=1.1000, stop=1.0980, strategy_dir=Direction.LONG)
    assert ExitsVersusMarketCheck().check(dec, ctx(snapshot=_market_at(1.1000))).passed
    assert not ExitsVersusMarketCheck().check(dec, ctx(snapshot=_market_at(1.0975))).passed
