"""When the daemon must stop: a journal error in a hook before the cycle (issue 15, defect
13), and SIGTERM in the middle of a catch-up of hundreds of bars (defect 20).

systemd's stop timeout (TimeoutStopSec, 90 s by default) ends in SIGKILL: a daemon that
finishes a whole catch-up after SIGTERM is killed mid-cycle instead of stopping cleanly."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes.binance_fake import FakeBinance
from support.daemon_helpers import live_daemon, registered

from domain import MarketSnapshot, Proposal
from domain.errors import JournalError
from strategies.logic import StrategyContext


class CountingStrategy:
    """Proposes nothing; calls ``on_nth`` at its ``n``-th bar (the test's SIGTERM)."""

    name = "test_counting"
    n = 10
    on_nth: Callable[[], None] = staticmethod(lambda: None)
    seen = 0

    def __init__(self, **_params: object) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        cls = type(self)
        cls.seen += 1
        if cls.seen == cls.n:
            cls.on_nth()
        return ()


@pytest.fixture
def counting() -> Iterator[type[CountingStrategy]]:
    CountingStrategy.seen = 0
    yield from registered(CountingStrategy)


def test_sigterm_during_catch_up_stops_between_bars(
        tmp_path: Path, counting: type[CountingStrategy]) -> None:
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with FakeBinance() as fake, live_daemon(url, fake, CountingStrategy.name) as daemon:
        executor = daemon.executor
        counting.on_nth = staticmethod(executor.stop_requested.set)  # as dta run's handler
        handled = executor.run_cycle(datetime.now(UTC))
        executor.stop("stopped")
        journaled = daemon.journal.queries.bar_counts()
    assert handled == counting.n  # the bar in progress finished, not one more
    assert counting.seen == counting.n
    assert [v["count"] for v in journaled["processed"].values()] == [counting.n], journaled


def test_a_journal_error_in_a_hook_before_the_cycle_stops_the_daemon(
        tmp_path: Path, counting: type[CountingStrategy]) -> None:
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"

    def hook(_now: datetime) -> None:
        raise JournalError("journal write failed: OperationalError: disk I/O error")

    with FakeBinance() as fake:
        with live_daemon(url, fake, CountingStrategy.name) as daemon:
            executor = daemon.executor
            executor.before_cycle.insert(0, hook)
            with pytest.raises(JournalError):
                executor.run_cycle(datetime.now(UTC))
        assert fake.orders == []
    assert isinstance(executor.fatal_error, JournalError)
    assert executor.stop_requested.is_set()
    assert counting.seen == 0  # no bar was handled after the failure
