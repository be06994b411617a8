"""The automatic triggers the README promises, through the running daemon (issue 15,
defect 7): a live feed that falls silent (no error, no bars) and a required provider class
with nobody to answer for it each set REDUCING with an incident, once.

Binance's klines endpoint simply returns no newer candle when the market data stops (a
halted symbol, a stuck gateway): no error to count, only silence. The fake's clock is
frozen to model that while the daemon's wall clock moves on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes.binance_fake import FakeBinance
from support.daemon_helpers import live_daemon, registered, replay
from support.samples import write_sample_head

from domain import MarketSnapshot, Proposal
from executor.journal.store import Journal
from guardrails.state import TradingState, current_state
from strategies.logic import StrategyContext


class Quiet:
    name = "test_quiet"

    def __init__(self, **_params: object) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        return ()


@pytest.fixture
def quiet() -> Iterator[type[Quiet]]:
    yield from registered(Quiet)


def test_a_silent_live_feed_reduces_trading_with_one_incident(
        tmp_path: Path, quiet: type[Quiet]) -> None:
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    # live_settings: stale_after_bars = 1.5 on 1m bars (90 s)
    with FakeBinance() as fake, live_daemon(url, fake, Quiet.name) as daemon:
        ex, journal = daemon.executor, daemon.journal
        now = datetime.now(UTC)
        assert ex.run_cycle(now) > 0
        assert current_state(journal.trading_state) is TradingState.ACTIVE
        frozen = now.timestamp()
        fake.clock = lambda: frozen  # the venue's data stops; no error
        for minutes in (1, 3, 4):
            ex.run_cycle(now + timedelta(minutes=minutes, seconds=2))
        state = current_state(journal.trading_state)
        kinds = [i.kind for i in journal.incidents.all()]
        ex.stop("stopped")
    assert state is TradingState.REDUCING
    assert kinds.count("reducing:stale_bars") == 1, kinds


def test_a_required_provider_class_with_nobody_up_reduces_trading(journal_url: str,
                                                                   tmp_path: Path) -> None:
    """Every LLM provider disabled (or never configured) while the desk requires a
    reasoning vote: the deterministic providers alone must not keep trading at full."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 50)
    summary = replay(journal_url, data, stop_after=5,
                     guardrails={"required_provider_classes": ["reasoning"]})
    assert summary["trading_state"] == "REDUCING"
    j = Journal.open(journal_url)
    try:
        kinds = [i.kind for i in j.incidents.all()]
    finally:
        j.close()
    assert kinds.count("reducing:providers_down") == 1, kinds
