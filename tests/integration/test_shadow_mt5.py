"""Shadow mode beside an EA on the fake MT5 terminal, through our real bridge and client:
the EA's scripted deals are read by magic number, paired with our virtual intents, and the
report shows the expected agreement."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes import mt5_fake as M
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge
from support.builders import a_proposal
from support.daemon_helpers import EXAMPLE, settings_for
from typer.testing import CliRunner

from domain import Direction, MarketSnapshot, Proposal
from executor.journal.store import Journal
from executor.wiring import build_daemon
from runbooks.cli import app
from strategies.logic import StrategyContext
from strategies.registry import STRATEGIES


class LongOnLastBar:
    name = "test_long_last_bar"

    def __init__(self, **_params: object) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        if not ctx.position.is_flat:
            return ()
        c = snapshot.bar.close
        closes = [b.close for b in snapshot.bars[-20:]]
        if c < sum(closes) / len(closes):  # with the momentum provider's view
            return (a_proposal(strategy=self.name, symbol=snapshot.symbol,
                               timeframe=snapshot.timeframe, bar_time=snapshot.bar.time,
                               direction=Direction.SHORT, entry=c, stop=c + 0.0020,
                               target=c - 0.0040, reason="test", tags=("choch_bearish",)),)
        return (a_proposal(strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
                           bar_time=snapshot.bar.time, direction=Direction.LONG, entry=c,
                           stop=c - 0.0020, target=c + 0.0040, reason="test",
                           tags=("choch_bullish",)),)


@pytest.fixture
def strategy() -> object:
    STRATEGIES[LongOnLastBar.name] = LongOnLastBar
    yield LongOnLastBar
    STRATEGIES.pop(LongOnLastBar.name, None)


def test_shadow_on_mt5_pairs_the_eas_deals(tmp_path: Path, strategy: object) -> None:
    fake = FakeMetaTrader5()
    fake.add_symbol("GBPUSD")
    fake.set_tick("GBPUSD", 1.26000, 1.26010)
    now = datetime.now(UTC)
    fake.generate_rates("EURUSD", M.TIMEFRAME_M15, 300, now_utc=now.timestamp())
    bridge = start_bridge(fake)
    try:
        mt5 = client_settings(fake, bridge.port).model_dump()
        url = f"sqlite:///{tmp_path / 'shadow.sqlite'}"
        settings = settings_for(
            url, mode="shadow", mt5_password=fake.account_password,
            mt5_bridge_secret=SECRET.decode(),
            strategy={"name": LongOnLastBar.name, "params": {}},
            ensemble={"providers": [{"name": "momentum", "kind": "momentum",
                                     "params": {"period": 20}}]},
            guardrails={"stale_after_bars": 1.5, "max_spread": None, "min_stop_atr": None,
                        "consensus": {"rule": "either", "min_agreement": 0,
                                      "min_confidence": 0.0, "conflict_margin": 1.0}},
            shadow={"ea_magic": 424242, "pairing_window_minutes": 30},
            broker={"kind": "mt5", "symbols": ["EURUSD"], "timeframe": "M15", "mt5": mt5})
        journal = Journal.open(url)
        journal.clearances.record_clearance(account="paper-1", strategy=LongOnLastBar.name,
                                            action="promote", mode="shadow", person="desk",
                                            note="t")
        daemon = build_daemon(settings, journal)
        executor = daemon.executor
        executor.start()
        sends_before = fake.calls.count("order_send")
        executor.run_cycle(datetime.now(UTC))
        [ours] = journal.orders.all("paper-1")
        # The EA then trades EURUSD our way, and sells GBPUSD (nothing of ours there);
        # another EA (magic 555) is not the one we shadow.
        fake.add_ea_position("EURUSD", M.ORDER_TYPE_BUY if ours.intent.side.value == "buy"
                             else M.ORDER_TYPE_SELL, 0.1, magic=424242, comment="SMS retest")
        fake.add_ea_position("GBPUSD", M.ORDER_TYPE_SELL, 0.1, magic=424242)
        fake.add_ea_position("EURUSD", M.ORDER_TYPE_SELL, 0.1, magic=555)
        executor.run_cycle(datetime.now(UTC))  # the next cycle reads the EA's deals
        summary = executor.stop()
        assert fake.calls.count("order_send") == sends_before  # nothing was sent
        journal.close()
    finally:
        bridge.close()
    assert summary["ea_deals"] == 2
    assert sum(summary["orders"].values()) == 1  # our one virtual intent, on the last bar
    assert ours.broker_order_id is not None and ours.broker_order_id.startswith("shadow-")
    r = CliRunner().invoke(app, ["shadow", "report", "--json", "--config", str(EXAMPLE),
                                 "--journal-url", url])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)["summary"]
    assert (report["our_entries"], report["ea_entries"], report["matched"]) == (1, 2, 1)
    assert report["direction_agreement"] == 1.0
    assert report["structure_agreement"] == 1.0  # "SMS" vs our choch tag
    # The EA traded after our decision on the last closed bar, within the 30-minute window.
    assert 0 <= report["timing_s"]["mean"] <= 30 * 60
