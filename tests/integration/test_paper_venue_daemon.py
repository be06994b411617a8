"""A paper account configured as a venue (``[paper] venue``), through the daemon as `dta run`
wires it: what the simulator reports is what the engine journals, and a restart rebuilds
it from the journal (issue 19, "Paper trades like the venue")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from support.daemon_helpers import AlwaysBuy, drive, registered_always_buy, settings_for
from support.samples import write_sample_head

from executor.brokers.paper import PaperBroker
from executor.engine.startup import journal_net_positions
from executor.feeds.files import load_bars
from executor.journal.models import FillRow
from executor.journal.store import Journal
from executor.settings import Settings
from executor.wiring import build_daemon


@pytest.fixture
def always_buy() -> Iterator[object]:
    yield from registered_always_buy()


def _run(url: str, data: Path, venue: str) -> tuple[Settings, list[FillRow], float]:
    """Replay ``data`` on a paper account of ``venue`` that buys once; its settings, its
    journaled fills and the journal's position in EURUSD."""
    settings = settings_for(url, account=f"paper-{venue}",
                            strategy={"name": AlwaysBuy.name, "params": {}},
                            paper={"venue": venue, "order_volume_lots": 0.1})
    journal = Journal.open(url)
    try:
        drive(build_daemon(settings, journal, data=data))
        fills = journal.orders.fills(account=settings.account)
        held = journal_net_positions(journal, settings.account)
    finally:
        journal.close()
    assert set(held) == {"EURUSD"}
    return settings, fills, held["EURUSD"]


def _restarted(url: str, data: Path, settings: Settings) -> PaperBroker:
    journal = Journal.open(url)
    try:
        daemon = build_daemon(settings, journal, data=data)
        daemon.executor.start()
        broker = daemon.executor.broker
        daemon.executor.stop("stopped")
    finally:
        journal.close()
    assert isinstance(broker, PaperBroker)
    return broker


def test_swap_funding_is_journaled_as_a_cost_that_moves_no_position(
        journal_url: str, tmp_path: Path, always_buy: object) -> None:
    """Binance: funding every 8 hours at 00:00, 08:00 and 16:00 UTC on a position open at
    that time, "Funding Amount = Nominal Value of Positions x Funding Rate" (a positive
    rate: the long pays). The engine journals each as a fill of no volume whose fee is the
    payment; the journal's position stays the simulator's, and a restart counts the costs."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 400)
    settings, fills, held = _run(journal_url, data, "swap")
    opened = next(f for f in fills if f.kind == "entry")  # held until its stop or target
    exits = [f.time for f in fills if f.client_order_id == opened.client_order_id
             and f.kind in ("stop_loss", "take_profit")]
    funding = [f for f in fills if f.kind == "funding"
               and f.client_order_id == opened.client_order_id]
    end = exits[0] if exits else load_bars(data).bars[-1].close_time
    due = [opened.time + timedelta(minutes=15 * i)
           for i in range(int((end - opened.time) / timedelta(minutes=15)) + 1)]
    assert [f.time for f in funding] == [t for t in due if t.hour % 8 == 0 and t.minute == 0
                                         and t <= end]
    assert len(funding) >= 10
    for f in funding:
        assert f.volume == 0.0 and f.client_order_id == opened.client_order_id
        assert f.fee == pytest.approx(opened.volume * f.price * 100_000 * 0.0001)
        assert f.fee > 0  # a long pays a positive rate
    assert opened.fee == pytest.approx(opened.volume * opened.price * 100_000 * 0.0005)

    broker = _restarted(journal_url, data, settings)
    assert held == pytest.approx(broker.position("EURUSD").volume)
    assert broker.fees_paid == pytest.approx(sum(f.fee for f in fills))
    assert broker.holds_shorts and broker.separate_protection


def test_spot_fees_in_the_base_asset_reach_the_journal(
        journal_url: str, tmp_path: Path, always_buy: object) -> None:
    """Binance spot charges a buy's fee in the coins bought: the journal's position is
    what the account holds, also after a restart."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 200)
    settings, fills, held = _run(journal_url, data, "spot")
    assert [f.kind for f in fills] == ["entry", "fee"]
    assert held == pytest.approx(0.1 * (1 - 0.001))
    broker = _restarted(journal_url, data, settings)
    assert broker.position("EURUSD").volume == pytest.approx(0.0999)
    assert broker.holds_shorts is False  # the guardrails' no_shorts reads it
