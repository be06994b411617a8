"""Two paper accounts on one journal: each restores only its own fills (issue 15, defect
10). A second account used to start with the first one's positions and PnL."""

from __future__ import annotations

from pathlib import Path

from support.daemon_helpers import replay, settings_for
from support.samples import write_sample_head

from executor.brokers.paper import PaperBroker
from executor.journal.store import Journal
from executor.wiring import build_daemon


def test_a_second_paper_account_starts_from_its_own_fills(journal_url: str,
                                                          tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 3000)
    first = replay(journal_url, data, account="paper-A")
    assert first["fills"] > 0 and first["pnl"]["realized"] != 0.0

    settings = settings_for(journal_url, account="paper-B")
    journal = Journal.open(journal_url)
    try:
        daemon = build_daemon(settings, journal, data=data)
        daemon.executor.start()
        broker = daemon.executor.broker
        assert isinstance(broker, PaperBroker)
        assert broker.realized_pnl == 0.0
        assert broker.equity() == settings.paper.initial_balance
        assert all(p.is_flat for p in broker.positions().values())
        daemon.executor.stop("stopped")
    finally:
        journal.close()

    # and paper-A, restarted, still has its own
    settings_a = settings_for(journal_url, account="paper-A")
    journal = Journal.open(journal_url)
    try:
        daemon = build_daemon(settings_a, journal, data=data)
        daemon.executor.start()
        broker = daemon.executor.broker
        assert isinstance(broker, PaperBroker)
        assert round(broker.realized_pnl, 2) == first["pnl"]["realized"]
        daemon.executor.stop("stopped")
    finally:
        journal.close()
