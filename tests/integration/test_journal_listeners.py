"""The journal tells its listeners of committed rows only: a request queued in a batch
that rolls back is never announced, and a trading-state change another process commits is
heard at this process's next read of the state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from support.builders import a_fill, an_intent, an_order

from executor.journal.store import Journal

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _queue(journal: Journal) -> int:
    return journal.approvals.create_approval(
        decision_id=1, account="paper-1", symbol="EURUSD", direction="long", intent={},
        why="conflict", created_at=T, expires_at=T + timedelta(minutes=15))


def test_approvals_and_fills_are_heard_once_committed(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    heard: list[Any] = []
    journal.approvals.listeners.append(heard.append)
    journal.orders.fill_listeners.append(heard.append)
    try:
        _queue(journal)
        assert heard == []  # not committed yet: a link to it would not work
        journal.rollback()
        journal.commit()
        assert heard == []  # rolled back: never announced
        approval = _queue(journal)
        journal.orders.insert_order(an_order(intent=an_intent(client_order_id="dta-test")))
        journal.orders.record_fill(a_fill(), "entry", 0.0)
        journal.commit()
    finally:
        journal.close()
    assert [getattr(h, "id", None) or h.fill_id for h in heard] == [approval, "fill-1"]


def test_a_state_change_made_elsewhere_is_heard_at_the_next_read(journal_url: str) -> None:
    daemon, operator = Journal.open(journal_url), Journal.open(journal_url)
    heard: list[Any] = []
    daemon.trading_state.listeners.append(heard.append)
    try:
        daemon.trading_state.trading_state()  # ACTIVE, no event yet: nothing to tell
        operator.trading_state.record_trading_state("HALTED", "ann", "broker outage")
        daemon.trading_state.trading_state(fresh=True)
        daemon.trading_state.trading_state(fresh=True)  # told once
        daemon.trading_state.record_trading_state("REDUCING", "system", "drawdown",
                                                  trigger="regression")
        daemon.trading_state.trading_state(fresh=True)  # its own: already told
    finally:
        operator.close()
        daemon.close()
    assert [(r.state, r.operator, r.reason) for r in heard] == [
        ("HALTED", "ann", "broker outage"), ("REDUCING", "system", "drawdown")]
