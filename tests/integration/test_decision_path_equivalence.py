"""The decision path's faster pieces do exactly what the slower ones they replaced did.

Each was swapped in for speed (benchmarks/README.md, fourth round); each test here holds
the new piece to the old behaviour it must keep: stored timestamps and JSON, the order
rows and events, the providers-down report, the throttle's window. The log context is
structlog's own ``bound_contextvars`` again (issue 17); its test stays as the contract
the decision path relies on.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from structlog.contextvars import bound_contextvars
from support.builders import a_bar, an_intent, an_order

from domain import (
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from ensemble.breaker import BreakerState
from ensemble.routing import Router
from executor.journal import jsontext
from executor.journal.store import Journal
from executor.journal.tables import ORDER_EVENTS, ORDERS, PROPOSALS
from executor.journal.types import UTCDateTime
from guardrails.base import AccountState
from guardrails.limits import THROTTLE_WINDOW, OrderThrottleCheck

T0 = datetime(2024, 3, 1, 12, 15, 0, 123456, tzinfo=UTC)

# --------------------------------------------------------------------------- timestamps

ZONES = [UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-9, minutes=-30)),
         ZoneInfo("Europe/Athens"), ZoneInfo("America/New_York"), ZoneInfo("UTC")]


def _slow(dialect: Any) -> Any:
    """SQLAlchemy's own chain: the decorator's bind param, then the DATETIME processor."""
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)


@settings(max_examples=400, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                           timezones=st.sampled_from(ZONES)))
def test_fast_timestamp_binding_stores_what_sqlalchemy_stores(moment: datetime) -> None:
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):
        fast = UTCDateTime().fast_bind_processor(dialect)
        assert fast(moment) == _slow(dialect)(moment), (dialect.name, moment)


@pytest.mark.parametrize("bad, error", [
    (datetime(2024, 1, 1), ValueError),  # naive: refused, as UTCDateTime refuses it
    ("2024-01-01 00:00:00", TypeError),
    (1704067200, TypeError),
])
def test_fast_timestamp_binding_refuses_what_it_must(bad: Any, error: type) -> None:
    fast = UTCDateTime().fast_bind_processor(sqlite.dialect())
    with pytest.raises(error):
        fast(bad)
    assert fast(None) is None


# --------------------------------------------------------------------------- JSON

JSONABLE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(value=JSONABLE)
def test_journal_json_reads_back_as_the_standard_library_wrote_it(value: Any) -> None:
    assert json.loads(jsontext.dumps(value)) == json.loads(json.dumps(value))


def test_journal_json_writes_subclasses_as_the_standard_library_does() -> None:
    from collections import OrderedDict
    from enum import IntEnum

    from domain import Direction

    class Level(IntEnum):
        HIGH = 3

    value = {"tags": [Direction.LONG], "level": Level.HIGH, Direction.SHORT: 1,
             "ordered": OrderedDict(b=1, a=2), "pair": (1, 2)}
    assert json.loads(jsontext.dumps(value)) == json.loads(json.dumps(value))
    assert jsontext.dumps(value).startswith('{"tags":["long"]')  # orjson's, not the fallback


def test_journal_json_falls_back_to_the_standard_library() -> None:
    half = json.loads('"half an emoji: \\ud83d"')  # a lone surrogate: orjson refuses it
    assert jsontext.dumps({"rationale": half}) == json.dumps({"rationale": half})
    assert jsontext.dumps(2**70) == json.dumps(2**70)
    assert json.loads(jsontext.dumps({1: "a", 2.5: "b"})) == {"1": "a", "2.5": "b"}
    for refused in (T0, object(), {"at": T0}):  # as before: a journal bug, not a value
        with pytest.raises(TypeError):
            jsontext.dumps(refused)
    # NaN becomes null, valid JSON (PostgreSQL's json type refuses the bare NaN token)
    assert json.loads(jsontext.dumps({"x": math.nan, "y": math.inf})) == {"x": None,
                                                                        "y": None}


def test_the_journal_engine_writes_its_json_columns_with_it(journal_url: str) -> None:
    """ORM writes, Core writes and the prepared hot path all go through the engine's
    serializer: one format in every JSON column, read back as written."""
    journal = Journal.open(journal_url)
    try:
        assert journal.uow.engine.dialect._json_serializer is jsontext.dumps
        snapshot = {"trend": "bullish", "levels": [1.08512, 2.5], "n": 3, "none": None,
                    "text": "caf\u00e9 \u20ac"}
        journal.uow.insert(PROPOSALS, dict(
            run_id=None, strategy="s", symbol="EURUSD", timeframe="M15", bar_time=T0,
            direction="long", entry=1.1, stop=1.0, target=1.3, reason="r", tags=["a"],
            snapshot=snapshot))
        journal.commit()
        [row] = journal.uow.conn().execute(select(PROPOSALS.c.snapshot)).all()
        assert row[0] == snapshot
        if journal.dialect == "sqlite":  # the stored text itself
            [raw] = journal.uow.conn().execute(text("SELECT snapshot FROM proposals")).all()
            assert raw[0] == jsontext.dumps(snapshot)
    finally:
        journal.close()


# --------------------------------------------------------------------------- order rows


def _intent(k: int) -> OrderIntent:
    t = T0 + timedelta(minutes=15 * k)
    return an_intent(client_order_id=client_order_id("acct", "EURUSD", t, f"entry:{k}"),
                     account="acct", symbol="EURUSD", side=OrderSide.BUY, volume=0.1,
                     order_type=OrderType.MARKET, bar_time=t, stop_loss=1.0, take_profit=1.2,
                     params_hash="h", decision_id=k)


def _rows(journal: Journal, coid: str) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    order = dict(journal.uow.conn().execute(
        select(ORDERS).where(ORDERS.c.client_order_id == coid)).one()._mapping)
    events = [tuple(r) for r in journal.uow.conn().execute(
        select(ORDER_EVENTS.c.from_state, ORDER_EVENTS.c.to_state, ORDER_EVENTS.c.detail)
        .where(ORDER_EVENTS.c.client_order_id == coid).order_by(ORDER_EVENTS.c.id))]
    return order, events


def test_insert_sending_writes_what_insert_then_update_wrote(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    try:
        old, new = an_order(intent=_intent(1)), an_order(intent=_intent(2))
        journal.orders.insert_order(old, detail="created", commit=False)
        journal.orders.set_order_state(old.state, old.transition(OrderState.SUBMITTING),
                                       "sending to paper", commit=False)
        journal.orders.insert_sending(new, new.transition(OrderState.SUBMITTING),
                                      "sending to paper", commit=True)
        (row_a, ev_a), (row_b, ev_b) = (_rows(journal, o.client_order_id) for o in (old, new))
        ignore = {"client_order_id", "bar_time", "decision_id", "created_at", "updated_at"}
        assert {k: v for k, v in row_a.items() if k not in ignore} == {
            k: v for k, v in row_b.items() if k not in ignore}
        assert row_b["state"] == "submitting" and row_b["decision_id"] == 2
        assert ev_a == ev_b == [(None, "new", "created"),
                                ("new", "submitting", "sending to paper")]
        assert journal.orders.order_state(new.client_order_id) is OrderState.SUBMITTING
    finally:
        journal.close()


# --------------------------------------------------------------------------- log context


def test_log_context_binds_for_the_block_and_restores_after() -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(symbol="GBPUSD", run=3)
    with bound_contextvars(decision_id=7, symbol="EURUSD"):
        assert structlog.contextvars.get_contextvars() == {
            "symbol": "EURUSD", "run": 3, "decision_id": 7}
        with bound_contextvars(client_order_id="c1"):
            assert structlog.contextvars.get_contextvars()["client_order_id"] == "c1"
        assert "client_order_id" not in structlog.contextvars.get_contextvars()
    assert structlog.contextvars.get_contextvars() == {"symbol": "GBPUSD", "run": 3}
    with pytest.raises(RuntimeError), bound_contextvars(decision_id=8):
        raise RuntimeError("the block failed")
    assert structlog.contextvars.get_contextvars() == {"symbol": "GBPUSD", "run": 3}
    structlog.contextvars.clear_contextvars()


# --------------------------------------------------------------------------- providers down


class _Breaker:
    def __init__(self, state: BreakerState) -> None:
        self.state = state


class _Member:
    stages = ("research",)

    def __init__(self, name: str, cls: str, state: BreakerState) -> None:
        self.name, self.provider_class, self.breaker = name, cls, _Breaker(state)


@settings(max_examples=300, deadline=None)
@given(members=st.lists(st.tuples(st.sampled_from(["reasoning", "fast", "local"]),
                                  st.sampled_from(list(BreakerState))),
                        min_size=1, max_size=6))
def test_classes_down_is_what_the_health_report_says(
        members: list[tuple[str, BreakerState]]) -> None:
    router = Router((), [_Member(f"p{i}", c, s)  # type: ignore[misc]
                             for i, (c, s) in enumerate(members)])
    assert router.classes_down() == router.health().classes_down


# --------------------------------------------------------------------------- throttle window


def test_the_daemon_keeps_only_order_times_the_throttle_can_count(tmp_path: Path) -> None:
    from support.daemon_helpers import settings_for
    from support.samples import write_sample_head

    from executor.wiring import build_daemon

    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    daemon = build_daemon(settings_for(url), Journal.open(url), data=data)
    ex = daemon.executor
    ex.start()  # the decider, which keeps the order times, is assembled at start
    times = [T0 + timedelta(seconds=s) for s in (0, 10, 30, 59, 61, 100, 119)]
    ex.decider.order_times.extend(times)
    now = T0 + timedelta(seconds=120)
    kept = ex.decider.recent_order_times(now)
    assert kept == tuple(t for t in times if t > now - THROTTLE_WINDOW)
    assert list(ex.decider.order_times) == list(kept)  # the rest is gone for good
    check = OrderThrottleCheck(2)
    full = AccountState(now=now, recent_order_times=tuple(times))
    pruned = AccountState(now=now, recent_order_times=kept)
    decision: Any = None  # the throttle does not read the decision
    assert check.check(decision, full) == check.check(decision, pruned)
    ex.stop()
    daemon.journal.close()


# --------------------------------------------------------------------------- day boundaries


class _DrawdownAsBefore:
    """The daily drawdown monitor as it was: the day recomputed from every reading."""

    def __init__(self, halt_pct: float) -> None:
        self.halt_pct, self.day, self.start = halt_pct, None, 0.0

    def observe(self, now: datetime, equity: float) -> bool:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.day != day:
            self.day, self.start = day, equity
        return self.start > 0 and (self.start - equity) / self.start * 100 >= self.halt_pct


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(
    st.integers(-3 * 86_400, 3 * 86_400).map(lambda s: timedelta(seconds=s)),
    st.floats(9_000, 11_000)), min_size=1, max_size=40))
def test_the_daily_drawdown_day_is_the_utc_day_of_each_reading(
        steps: list[tuple[timedelta, float]]) -> None:
    from guardrails.monitors import DailyDrawdownMonitor

    new, old = DailyDrawdownMonitor(3.0), _DrawdownAsBefore(3.0)
    midnight = datetime(2024, 3, 1, tzinfo=UTC)
    for offset, equity in steps:  # back and forth across midnights, as a clock may go
        moment = midnight + offset
        assert (new.observe(moment, equity) is not None) == old.observe(moment, equity)
        assert new.day == old.day


# ---------------------------------------------------------------- connection between cycles


def test_a_commit_releases_the_connection_and_locks_nothing(tmp_path: Path) -> None:
    """After a cycle's closing commit, and after a durable one (before a broker call), the
    journal holds no connection and no transaction: another process can still write.
    (It once kept its SQLite connection between cycles; issue 17 retired that.)"""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    journal = Journal.open(url)
    try:
        journal.orders.insert_order(an_order(intent=_intent(1)), detail="created", commit=False)
        journal.commit()
        assert journal.uow._dbapi_conn is None
        other = sqlite3.connect(tmp_path / "j.sqlite", timeout=0.1)  # fails fast if locked
        other.execute("INSERT INTO incidents (at, severity, kind, message, status) "
                      "VALUES ('2024-01-01 00:00:00.000000', 'low', 'k', 'm', 'open')")
        other.commit()
        other.close()
        journal.orders.insert_order(an_order(intent=_intent(2)), detail="created", commit=False)
        journal.commit(durable=True)
        assert journal.uow._dbapi_conn is None
        assert {o.client_order_id for o in journal.orders.all("acct")} == {
            _intent(1).client_order_id, _intent(2).client_order_id}
    finally:
        journal.close()


# --------------------------------------------------------------------------- bar rows


def test_buffered_bar_rows_are_what_a_core_insert_writes(journal_url: str) -> None:
    """Bars are buffered as bound tuples and written by ``Prepared.write_tuples``: the rows
    equal a Core insert of the same values (an int price stored as REAL all the same), in
    the statement's own order or rearranged to it."""
    from sqlalchemy import insert

    from domain import Bar
    from executor.journal.tables import BAR_KEYS, BARS

    journal = Journal.open(journal_url)
    try:
        bar: Bar = a_bar(symbol="EURUSD", timeframe="M15", time=T0, open=1.08512, high=1.0861,
                         low=1, close=1.0855, volume=120.0, spread=0.0002)
        journal.runs.record_bar(bar, gap_bars=2)
        journal.commit()
        core = dict(zip(BAR_KEYS, (None, "GBPUSD", "M15", T0, 1.08512, 1.0861, 1, 1.0855,
                                    120.0, 0.0002, 2), strict=True))
        journal.uow.conn().execute(insert(BARS), core)
        bound = journal.uow.bind_time(T0 + timedelta(minutes=15))
        shuffled = tuple(reversed(BAR_KEYS))
        row = dict(zip(BAR_KEYS, (None, "USDJPY", "M15", bound, 1.08512, 1.0861, 1, 1.0855,
                                   120.0, 0.0002, 2), strict=True))
        journal.uow.writer(BARS, BAR_KEYS).write_tuples(
            journal.uow.dbapi(), shuffled, [tuple(row[k] for k in shuffled)])
        journal.commit()
        rows = {r.symbol: dict(r._mapping) for r in journal.uow.conn().execute(select(BARS))}
        assert {k: v for k, v in rows["EURUSD"].items() if k not in ("id", "symbol")} == {
            k: v for k, v in rows["GBPUSD"].items() if k not in ("id", "symbol")}
        assert rows["USDJPY"]["time"] == T0 + timedelta(minutes=15)
        assert rows["USDJPY"]["low"] == 1.0 and rows["EURUSD"]["time"] == T0
        if journal.dialect == "sqlite":
            raw = journal.uow.conn().execute(text(
                "SELECT symbol, time, typeof(low) FROM bars ORDER BY symbol")).all()
            assert {s: (t, k) for s, t, k in raw} == {
                "EURUSD": ("2024-03-01 12:15:00.123456", "real"),
                "GBPUSD": ("2024-03-01 12:15:00.123456", "real"),
                "USDJPY": ("2024-03-01 12:30:00.123456", "real")}
        with pytest.raises(ValueError, match="do not fit"):
            journal.uow.writer(BARS, BAR_KEYS).write_tuples(journal.uow.dbapi(), ("symbol",), [])
    finally:
        journal.close()


@settings(max_examples=200, deadline=None)
@given(window=st.integers(1, 12), limit=st.integers(1, 6),
       bars=st.lists(st.booleans(), max_size=60))
def test_the_error_spike_counts_the_errors_in_its_window(window: int, limit: int,
                                                         bars: list[bool]) -> None:
    from guardrails.monitors import RegressionMonitor

    m = RegressionMonitor(error_count=limit, error_window=window)
    seen: list[bool] = []
    for had_error in bars:
        seen.append(had_error)
        fired = m.cycle(had_error)
        in_window = sum(seen[-window:])
        assert (fired is not None) == (in_window >= limit)
        if fired is not None:
            assert fired.reason.startswith(f"{in_window} errors in the last")
    m.reset(None)
    assert m.cycle(False) is None or limit == 0
