"""``Journal.changes``: the marks the console's live updates compare move exactly when a
topic's rows change, also when another connection (the daemon's process) wrote them, on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from executor.journal.store import Journal


def test_each_write_moves_its_topic_mark_only(journal_url: str) -> None:
    console = Journal.open(journal_url)  # the console's journal
    daemon = Journal.open(journal_url)  # another writer
    try:
        before = console.changes.marks()
        assert before == console.changes.marks()  # reading moves nothing
        now = datetime.now(UTC)
        approval_id = daemon.approvals.create_approval(
            decision_id=1, account="a", symbol="EURUSD", direction="long", intent={},
            why="w", created_at=now, expires_at=now + timedelta(hours=1))
        daemon.commit()
        after = console.changes.marks()
        assert [t for t in after if after[t] != before[t]] == ["approvals"]
        daemon.approvals.set_approval_status(approval_id, "rejected", expected="pending",
                                             operator="ann", note="n", decided_at=now)
        status = console.changes.marks()
        assert [t for t in status if status[t] != after[t]] == ["approvals"]
        daemon.trading_state.record_trading_state("HALTED", "ann", "news")
        halted = console.changes.marks()
        assert [t for t in halted if halted[t] != status[t]] == ["state"]
        daemon.incidents.open_incident("high", "test", "m")
        daemon.commit()
        opened = console.changes.marks()
        assert [t for t in opened if opened[t] != halted[t]] == ["incidents"]
    finally:
        daemon.close()
        console.close()
