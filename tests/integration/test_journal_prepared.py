"""The journal's prepared hot-path statements write exactly what SQLAlchemy Core writes
(same SQL dialect, same type processors), read back the same values, join the session's
transaction, and turn driver errors into JournalError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from support.builders import an_intent, an_order

from domain import (
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from domain.errors import JournalError
from executor.journal.store import Journal
from executor.journal.tables import APPROVALS, ORDER_EVENTS, PROPOSALS

T0 = datetime(2024, 3, 1, 12, 15, 0, 123456, tzinfo=UTC)


def _proposal_values(n: int) -> dict[str, Any]:
    return dict(run_id=None, strategy="s", symbol="EURUSD", timeframe="M15",
                bar_time=T0 + timedelta(minutes=15 * n), direction="long", entry=1.1 + n,
                stop=1.0, target=1.3, reason=f"why {n}", tags=["a", "b"],
                snapshot={"trend": "up", "levels": [1.0, 2.5], "n": n, "none": None})


def test_prepared_insert_equals_core_insert(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    try:
        core_id = journal.uow.conn().execute(insert(PROPOSALS), _proposal_values(1)
                                             ).inserted_primary_key[0]
        fast_id = journal.uow.insert(PROPOSALS, _proposal_values(1))
        journal.commit()
        assert fast_id == core_id + 1
        rows = journal.uow.conn().execute(
            select(PROPOSALS).where(PROPOSALS.c.id.in_([core_id, fast_id]))
            .order_by(PROPOSALS.c.id)).all()
        core, fast = (dict(r._mapping) for r in rows)
        assert {**core, "id": 0} == {**fast, "id": 0}
        assert fast["bar_time"] == T0 + timedelta(minutes=15)  # aware UTC, microseconds kept
        if journal.dialect == "sqlite":  # the stored text, not only the parsed value
            raw = journal.uow.conn().execute(text(
                "SELECT bar_time, snapshot FROM proposals ORDER BY id")).all()
            assert raw[0] == raw[1]
    finally:
        journal.close()


def test_prepared_reads_process_results(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    try:
        intent = an_intent(client_order_id=client_order_id("acct", "EURUSD", T0, "entry"),
                           account="acct", symbol="EURUSD", side=OrderSide.BUY, volume=0.1,
                           order_type=OrderType.MARKET, bar_time=T0)
        assert journal.orders.order_state(intent.client_order_id) is None
        order = an_order(intent=intent)
        journal.orders.insert_order(order, detail="created")
        sent = order.transition(OrderState.SUBMITTING)
        journal.orders.set_order_state(order.state, sent, "sending")
        assert journal.orders.order_state(intent.client_order_id) is OrderState.SUBMITTING
        got = journal.orders.get_order(intent.client_order_id)
        assert got is not None and got.intent == intent and got.state is OrderState.SUBMITTING
        events = journal.uow.conn().execute(select(ORDER_EVENTS.c.from_state,
                                                   ORDER_EVENTS.c.to_state)
                                         .order_by(ORDER_EVENTS.c.id)).all()
        assert [tuple(e) for e in events] == [(None, "new"), ("new", "submitting")]
        journal.uow.insert(APPROVALS, dict(
            decision_id=1, account="acct", symbol="EURUSD", direction="long",
            intent={"side": "buy", "volume": 0.1}, why="conflict", created_at=T0,
            expires_at=T0 + timedelta(minutes=5), status="pending"))
        [a] = journal.approvals.all("pending")
        assert a.intent == {"side": "buy", "volume": 0.1} and a.expires_at.tzinfo is not None
    finally:
        journal.close()


def test_prepared_writes_roll_back_with_the_session(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    try:
        journal.uow.insert(PROPOSALS, _proposal_values(1))
        journal.rollback()
        journal.uow.insert(PROPOSALS, _proposal_values(2))
        journal.commit()
        reasons = [r.reason for r in journal.uow.conn().execute(select(PROPOSALS.c.reason))]
        assert reasons == ["why 2"]
    finally:
        journal.close()


def test_trading_state_reads_what_another_process_committed(journal_url: str) -> None:
    daemon_journal, operator_journal = Journal.open(journal_url), Journal.open(journal_url)
    try:
        assert daemon_journal.approvals.all() == []  # the daemon's session is in use
        assert daemon_journal.trading_state._read_state("global").state == "ACTIVE"
        operator_journal.trading_state.record_trading_state("HALTED", "alice", "news")
        # Not the cached one: a fresh read.
        state = daemon_journal.trading_state._read_state("global")
        assert state.state == "HALTED" and state.operator == "alice" and state.since is not None
        assert state.since.tzinfo is not None
        daemon_journal.commit()
    finally:
        daemon_journal.close()
        operator_journal.close()


def test_driver_errors_become_journal_errors(tmp_path: Any) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.sqlite'}")
    try:
        journal.uow.dbapi().execute("PRAGMA query_only = 1")
        with pytest.raises(JournalError, match=r"readonly|read-only|query_only"):
            journal.uow.insert(PROPOSALS, _proposal_values(1))
    finally:
        journal.uow.dbapi().execute("PRAGMA query_only = 0")
        journal.close()


def test_a_value_the_column_refuses_is_a_journal_error_and_rolls_back(tmp_path: Any) -> None:
    """Not a bare ValueError escaping a cycle with the transaction half written: the same
    JournalError a full disk gives, and the commit rolls the transaction back."""
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.sqlite'}")
    try:
        journal.uow.insert(PROPOSALS, _proposal_values(1))
        naive = {**_proposal_values(2), "bar_time": T0.replace(tzinfo=None)}
        with pytest.raises(JournalError, match="naive datetime"):
            journal.uow.insert(PROPOSALS, naive)
        journal.rollback()
        journal.uow.insert(PROPOSALS, _proposal_values(3))
        journal.commit()
        assert [r.reason for r in journal.uow.conn().execute(select(PROPOSALS.c.reason))] == [
            "why 3"]
    finally:
        journal.close()
