"""``min_stop_points`` in live mode, with the point from the venue (issue 15, defect 4).

The live executor used to get no point size, and the check passed whenever the point was
unknown: the limit was silently off exactly where money moves. Binance's exchangeInfo gives
the price tick (PRICE_FILTER tickSize, 0.01 for BTCUSDT on the fake), which ccxt exposes as
the market's price precision; the daemon asks the broker for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.binance_fake import FakeBinance
from support.daemon_helpers import FUNDED, a_rising_minute, live_daemon, live_settings, registered
from support.doubles import AlwaysLong


@pytest.fixture
def always_long() -> Iterator[type[AlwaysLong]]:
    yield from registered(AlwaysLong)


def _first_cycle(tmp_path: Path, min_points: float) -> tuple[dict[str, int], float | None]:
    url = f"sqlite:///{tmp_path / f'live-{min_points:g}.sqlite'}"
    with FakeBinance(balances=FUNDED) as fake:
        settings = live_settings(url, fake, AlwaysLong.name)
        settings = settings.model_copy(update={"guardrails": settings.guardrails.model_copy(
            update={"min_stop_points": min_points})})
        with live_daemon(url, fake, AlwaysLong.name, settings=settings) as daemon:
            ex = daemon.executor
            ex.run_cycle(a_rising_minute(fake))  # momentum says long: spot only buys
            vetoes = dict(ex.stats.vetoes)
            point = ex.points.get("BTC/USDT")
            ex.stop("stopped")
    return vetoes, point


def test_min_stop_points_uses_the_venue_tick(tmp_path: Path,
                                            always_long: type[AlwaysLong]) -> None:
    # The strategy's stop is 1 % of ~30,000 away: ~30,000 ticks of 0.01.
    vetoes, point = _first_cycle(tmp_path, 5.0)
    assert point == pytest.approx(0.01)
    assert "min_stop_distance" not in vetoes
    vetoes, _ = _first_cycle(tmp_path, 10_000_000.0)  # a limit no stop here can meet
    assert vetoes.get("min_stop_distance", 0) >= 1, vetoes
