"""A journal that stops accepting writes halts trading: nothing is sent unjournaled, the
alert goes out of band, and `dta run` exits 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import write_sample_head
from daemon_helpers import settings_for

from executor.daemon import SimulatedClock
from executor.errors import JournalError
from executor.journal.store import Journal
from executor.wiring import build_daemon
from strategies.domain import Order


def test_read_only_journal_mid_run_stops_trading_without_unjournaled_orders(
        tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 6000)
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    journal = Journal.open(url)
    alerts: list[tuple[Any, ...]] = []
    journal.incident_listeners.append(lambda *a: alerts.append(a))
    daemon = build_daemon(settings_for(url), journal, data=data)
    executor = daemon.executor
    sent: list[str] = []
    real_submit = executor.broker.submit

    def counting_submit(order: Order) -> Order:
        sent.append(order.client_order_id)
        return real_submit(order)

    executor.broker.submit = counting_submit  # type: ignore[method-assign]
    executor.start()
    cycles = 0
    frozen_at: list[int] = []

    def next_close() -> Any:
        nonlocal cycles
        cycles += 1
        if cycles == 3000:  # the disk fills up / the file turns read-only
            journal.commit()
            journal._conn().exec_driver_sql("PRAGMA query_only = 1")
            frozen_at.append(len(sent))
        return daemon.feed.next_close_time()

    with pytest.raises(JournalError):
        executor.run_replay(SimulatedClock(), next_close)
    assert executor.fatal_error is not None and executor.stop_requested.is_set()
    assert alerts and alerts[-1][1:3] == ("critical", "halted:journal_unwritable")
    assert len(sent) == frozen_at[0]  # not one order sent after the journal froze
    journal.rollback()
    journal.close()

    reader = Journal.open(url)
    try:
        journaled = {o.client_order_id for o in reader.orders()}
    finally:
        reader.close()
    assert set(sent) <= journaled  # everything sent was journaled first
