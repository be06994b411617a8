"""A journal in a known state for the status view and `dta status` tests: trading
halted, a round trip yesterday and an open position today, a working order, a fresh and a
stale stream, unparseable rows, two pending approvals (wall and replay clock), incidents in
each status, a provider out of rotation. Written through the journal's own repositories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain import OrderSide, OrderState
from executor.journal.store import Journal
from support.builders import a_bar, a_fill, an_intent, an_order

ACCOUNT = "paper-1"  # config/dta.example.toml
NOW = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2024, 3, 5, tzinfo=UTC)
YESTERDAY = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def _orders_and_fills(j: Journal) -> None:
    """Yesterday a round trip (+50.00); today 0.2 lots bought at 1.1000, half sold at
    1.1020 (+20.00, fee 1.00): 0.1 lots stay open. One order still working."""
    first = an_intent(account=ACCOUNT, bar_time=YESTERDAY)
    today = an_intent(account=ACCOUNT, bar_time=MIDNIGHT + timedelta(hours=8), volume=0.2)
    working = an_intent(account=ACCOUNT, bar_time=MIDNIGHT + timedelta(hours=11),
                        side=OrderSide.SELL)
    for intent in (first, today):
        j.orders.insert_order(an_order(intent=intent, state=OrderState.FILLED,
                                       filled_volume=intent.volume))
    j.orders.insert_order(an_order(intent=working, state=OrderState.ACCEPTED))
    fills = [
        (a_fill(client_order_id=first.client_order_id, fill_id="f1", time=YESTERDAY,
                price=1.1000, volume=0.1), "entry", 0.0),
        (a_fill(client_order_id=first.client_order_id, fill_id="f2", side=OrderSide.SELL,
                time=YESTERDAY + timedelta(hours=2), price=1.1050, volume=0.1), "close",
         50.0),
        (a_fill(client_order_id=today.client_order_id, fill_id="f3",
                time=MIDNIGHT + timedelta(hours=8, minutes=15), price=1.1000, volume=0.2),
         "entry", 0.0),
        (a_fill(client_order_id=today.client_order_id, fill_id="f4", side=OrderSide.SELL,
                time=MIDNIGHT + timedelta(hours=9), price=1.1020, volume=0.1, fee=1.0),
         "close", 20.0),
    ]
    for fill, kind, pnl in fills:
        j.orders.record_fill(fill, kind, pnl)


def write_status_scene(url: str) -> None:
    """The scene at ``url`` (a fresh journal); figures as of ``NOW``."""
    j = Journal.open(url)
    try:
        last = MIDNIGHT + timedelta(hours=11, minutes=30)  # closes 11:45, 15 min before NOW
        j.runs.record_bar(a_bar(time=last - timedelta(minutes=15), close=1.1010))
        j.runs.record_bar(a_bar(time=last, close=1.1030))
        j.runs.record_bar(a_bar(symbol="GBPUSD", time=MIDNIGHT + timedelta(hours=10),
                                close=1.2600))  # closed 10:15: stale at noon
        j.runs.record_rejection(None, "EURUSD", "M15", "unparseable_row", "line 7: 'x'")
        j.runs.record_rejection(None, "EURUSD", "M15", "unparseable_row", "line 9: ''")
        _orders_and_fills(j)
        j.approvals.create_approval(
            decision_id=1, account=ACCOUNT, symbol="EURUSD", direction="long",
            intent={"clock": "wall", "timeframe": "M15"}, why="conflict",
            created_at=NOW - timedelta(minutes=1), expires_at=NOW + timedelta(minutes=4))
        j.approvals.create_approval(
            decision_id=2, account=ACCOUNT, symbol="EURUSD", direction="short",
            intent={"clock": "replay", "timeframe": "M15"}, why="low confidence",
            created_at=last + timedelta(minutes=15),
            expires_at=last + timedelta(minutes=45))
        j.commit(durable=True)
        resolved = j.incidents.open_incident("warning", "stale_bars", "old")
        j.incidents.set_incident_status(resolved, "resolved", "ann", "feed back")
        acked = j.incidents.open_incident("high", "auto_rollback", "rolled back v2")
        j.incidents.set_incident_status(acked, "acknowledged", "ann", "looking")
        j.incidents.open_incident("critical", "fill_surplus", "more filled than sent")
        j.trading_state.record_trading_state("HALTED", "ann", "news at 14:30")
        j.provider_calls.record_provider_event("momentum", "disable", "bob", "flaky")
    finally:
        j.close()
